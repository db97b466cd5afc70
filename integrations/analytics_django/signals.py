"""Signal receivers: settings changes (tests) and ``IDENTIFY_ON_LOGIN``."""

import logging
from typing import Any, Dict

from django.contrib.auth.signals import user_logged_in
from django.core.signals import setting_changed

import analytics_core
from analytics_core.context import current_request_context

from .configure import configure
from .options import clear_caches, get_options
from .request_context import DjangoRequestContext, user_id_of
from .settings import get_config

__all__ = ["connect", "identify_on_login", "reload_settings"]

logger = logging.getLogger("segment")


def reload_settings(setting: str, **kwargs: Any) -> None:
    """On a change of ``ANALYTICS`` (``override_settings``, pytest-django's ``settings``):
    forget the cached config and rebuild the client from the new one."""
    if setting == "ANALYTICS":
        get_config.cache_clear()
        clear_caches()
        configure()
    elif setting in ("STATIC_URL", "MEDIA_URL", "ROOT_URLCONF"):
        clear_caches()  # the default page-view exclusions depend on them


def login_traits(user: Any) -> Dict[str, str]:
    """The user's username and e-mail address, those it has."""
    traits = {}
    get_username = getattr(user, "get_username", None)
    username = get_username() if callable(get_username) else getattr(user, "username", None)
    if isinstance(username, str) and username:
        traits["username"] = username
    email_field = getattr(user, "get_email_field_name", lambda: "email")()
    email = getattr(user, email_field, None)
    if isinstance(email, str) and email:
        traits["email"] = email
    return traits


def identify_on_login(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_in`` receiver: identify the user who just logged in (if configured)."""
    if not get_config()["IDENTIFY_ON_LOGIN"]:
        return
    try:
        user_id = _logged_in_user_id(request, user)
        if user_id is None:
            return
        # Inside the request the identify also carries the browser's anonymous id: that pair
        # is what lets Segment merge what the visitor did before logging in into the user's
        # history.
        analytics_core.identify(user_id=user_id, traits=login_traits(user))
    except Exception:  # analytics must never make a login fail
        logger.exception("analytics_django: identify on login failed")


def _logged_in_user_id(request: Any, user: Any) -> Any:
    """The id the user who just logged in is known by: the ``USER_ID`` setting's answer for
    the request (``login()`` has just set ``request.user``), else the user's primary key."""
    context = current_request_context()
    if (
        isinstance(context, DjangoRequestContext)
        and context.request is request
        and get_options().user_id is not None
    ):
        return context.user_id
    return user_id_of(user)


def connect() -> None:
    """Connect the receivers (idempotent: each has a dispatch_uid)."""
    setting_changed.connect(reload_settings, dispatch_uid="analytics_django.reload_settings")
    user_logged_in.connect(identify_on_login, dispatch_uid="analytics_django.identify_on_login")
