"""Flask-Login, when it is installed: the logged-in user's id, and ``identify()`` on login."""

import logging
from functools import partial
from typing import Any, Dict, Optional

from flask import after_this_request, current_app, has_request_context, request

from analytics_core.context import current_request_context

from .state import state_of

try:
    import flask_login
except ImportError:  # an optional dependency: without it there is no logged-in user to read
    flask_login = None

__all__ = [
    "available",
    "connect_identify_on_login",
    "current_user_id",
    "stable_user_id",
    "user_traits",
]

logger = logging.getLogger("segment")

_TRAITS = ("email", "name")
_NO_ID = object()


def available() -> bool:
    """Whether Flask-Login is installed."""
    return flask_login is not None


def stable_user_id(user: Any) -> Optional[str]:
    """The id a user keeps for life: its ``id`` attribute when it has one, else ``get_id()``.

    ``get_id()`` is what Flask-Login stores in the session, and extensions make it a session
    token: Flask-Security returns ``fs_uniquifier``, which changes with every password change.
    As a Segment userId that would split one person into several users.
    """
    try:
        value = getattr(user, "id", _NO_ID)
    except Exception:  # a lazy-loading ORM attribute on a detached object, say
        return None
    if value is _NO_ID or isinstance(value, bool) or callable(value):
        value = user.get_id()
    if value is None:
        # A model with an id column that has none yet (a user registered and logged in before
        # the session was flushed): not get_id(), a session token; no id until it has one.
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def current_user_id(owner: Any) -> Optional[str]:
    """The stable id (:func:`stable_user_id`) of the user Flask-Login has logged in for
    request ``owner``, or None.

    None as well outside ``owner``'s request context (a streamed body without
    ``stream_with_context``, a copied context in another thread): another request's user must
    never be taken for this one's. The user is loaded only now, on the first message that
    needs it, and a failing user loader costs the message its user id, not the request.
    """
    if flask_login is None or not has_request_context():
        return None
    if request._get_current_object() is not owner:  # type: ignore[attr-defined]
        return None
    if getattr(current_app, "login_manager", None) is None:
        return None  # Flask-Login is installed, but this app does not use it
    try:
        user = flask_login.current_user._get_current_object()
        if user is None or not user.is_authenticated:
            return None
        return stable_user_id(user)
    except Exception:
        logger.warning("analytics_flask: could not read the logged-in user's id", exc_info=True)
        return None


def user_traits(user: Any) -> Dict[str, Any]:
    """The user's ``email`` and ``name``, for the traits of the identify call, where they are
    non-empty strings (a model may have neither, or have them as methods)."""
    traits = {}
    for name in _TRAITS:
        try:
            value = getattr(user, name, None)
        except Exception:  # a lazy-loading ORM attribute, say; a trait is not worth a failure
            continue
        if isinstance(value, str) and value:
            traits[name] = value
    return traits


def _identify_on_login(sender: Any, user: Any = None, **_extra: Any) -> None:
    # One receiver for every app: the sender is the app that logged the user in, and its own
    # state says whether it wants this and which client to use.
    state = state_of(sender)
    if state is None or not state.identify_on_login or user is None:
        return
    try:
        if _identify(state, user):
            return
        if has_request_context():
            # A user registered and logged in before the view committed has no id yet (it is
            # Flask-Security's register view): identify once the view is done.
            after_this_request(partial(_identify_after_the_view, state, user))
    except Exception:  # analytics must never turn a successful login into an error
        logger.exception("analytics_flask: identify on login failed")


def _identify(state: Any, user: Any) -> bool:
    """Identify ``user``; False when it has no id (yet)."""
    # login_user() has made this user current: the request's resolver (ANALYTICS_USER_ID)
    # answers for it; without one, the user's stable id.
    context = current_request_context()
    if state.user_id is not None and context is not None:
        user_id = context.user_id
    else:
        user_id = stable_user_id(user)
    if user_id is None:
        return False
    # Inside the request, the identify keeps the visitor's anonymous id (cookie or minted):
    # that pair ties their earlier events to this user.
    state.client.identify(user_id=user_id, traits=user_traits(user))
    return True


def _identify_after_the_view(state: Any, user: Any, response: Any) -> Any:
    try:
        if not _identify(state, user):
            logger.debug("analytics_flask: the user who logged in has no id; no identify")
    except Exception:  # analytics must never turn a successful login into an error
        logger.exception("analytics_flask: identify on login failed")
    return response


def connect_identify_on_login() -> None:
    """Subscribe to Flask-Login's ``user_logged_in`` signal (idempotent)."""
    if flask_login is None:
        raise RuntimeError("Flask-Login is not installed")
    flask_login.user_logged_in.connect(_identify_on_login)
