"""Flask-Login, when it is installed: the logged-in user's id, and ``identify()`` on login."""

import logging
from typing import Any, Dict, Optional

from flask import current_app, has_request_context, request

from analytics_core.context import current_request_context

from .state import state_of

try:
    import flask_login
except ImportError:  # an optional dependency: without it there is no logged-in user to read
    flask_login = None

__all__ = ["available", "connect_identify_on_login", "current_user_id", "user_traits"]

logger = logging.getLogger("segment")

_TRAITS = ("email", "name")


def available() -> bool:
    """Whether Flask-Login is installed."""
    return flask_login is not None


def current_user_id(owner: Any) -> Optional[str]:
    """The id of the user Flask-Login has logged in for request ``owner``, or None.

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
        user_id = user.get_id()
    except Exception:
        logger.warning("analytics_flask: could not read the logged-in user's id", exc_info=True)
        return None
    return None if user_id is None else str(user_id)


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
        user_id = user.get_id()
        if user_id is None:
            return
        # The anonymous id the visitor had until now ties their earlier events to this user.
        context = current_request_context()
        anonymous_id = None if context is None else context.anonymous_id
        state.client.identify(
            user_id=str(user_id), traits=user_traits(user), anonymous_id=anonymous_id
        )
    except Exception:  # analytics must never turn a successful login into an error
        logger.exception("analytics_flask: identify on login failed")


def connect_identify_on_login() -> None:
    """Subscribe to Flask-Login's ``user_logged_in`` signal (idempotent)."""
    if flask_login is None:
        raise RuntimeError("Flask-Login is not installed")
    flask_login.user_logged_in.connect(_identify_on_login)
