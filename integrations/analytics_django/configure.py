"""Building the project's client from ``settings.ANALYTICS`` and putting the middleware in place.

Misconfiguration never raises here: the app must start whatever its settings say. A client that
cannot be built from the settings is replaced by one that sends nothing, the reason is logged on
the ``segment`` logger, and ``manage.py check`` reports it (see ``checks.py``).
"""

import logging
import threading
from typing import Any, Dict, Mapping, Optional

from django.conf import settings
from django.utils.module_loading import import_string

import analytics_core
from analytics_core import Client

from .settings import CLIENT_OPTIONS, config_errors, get_config, user_config

__all__ = ["MIDDLEWARE_PATH", "build_client", "configure", "install_middleware", "last_error"]

logger = logging.getLogger("segment")

MIDDLEWARE_PATH = "analytics_django.middleware.AnalyticsMiddleware"

_lock = threading.Lock()
_installed: Optional[Client] = None  # the client this app last made analytics_core's default
_last_error: Optional[str] = None


def last_error() -> Optional[str]:
    """Why the last client could not be built from the settings (None if it could)."""
    return _last_error


def _client_options(config: Mapping[str, Any]) -> Dict[str, Any]:
    options = {keyword: config[key] for key, keyword in CLIENT_OPTIONS.items()}
    on_error = options["on_error"]
    if isinstance(on_error, str):
        options["on_error"] = import_string(on_error)
    return options


def build_client(config: Optional[Mapping[str, Any]] = None) -> Client:
    """A client configured from ``config`` (default: the current settings), or, when the
    settings are wrong, a client that sends nothing (the error is logged and remembered)."""
    global _last_error
    config = get_config() if config is None else config
    try:
        errors = config_errors(user_config())
        if errors:
            key, expected, got = errors[0]
            raise TypeError(f"ANALYTICS[{key!r}] must be {expected}, got {got!r}")
        client = Client(**_client_options(config))
    except Exception as error:  # start-up must survive any misconfiguration
        _last_error = f"{type(error).__name__}: {error}"
        logger.error(
            "analytics_django: settings.ANALYTICS is misconfigured (%s); nothing will be sent. "
            "Run `manage.py check` for details.",
            _last_error,
        )
        return Client(send=False)
    _last_error = None
    return client


def configure() -> Client:
    """Build the client from the current settings and make it ``analytics_core.default_client``.

    The client this app installed before is shut down (its queue delivered), unless the project
    replaced ``analytics_core.default_client`` with its own client meanwhile: that one is left
    alone and stays the default.
    """
    global _installed
    with _lock:
        previous = _installed
        current = analytics_core.default_client
        if current is not None and current is not previous:
            # The project installed a client of its own after us; it wins.
            return current
        client = build_client()
        analytics_core.default_client = client
        _installed = client
    if previous is not None and previous is not client:
        previous.shutdown()
    return client


def install_middleware() -> bool:
    """Put the middleware first in ``settings.MIDDLEWARE``; False if it was left as it is
    (already listed, ``AUTO_MIDDLEWARE`` off, or no usable ``MIDDLEWARE`` setting).

    Django builds the middleware chain in the handler's ``load_middleware()``, after every app is
    ready, so changing the setting from ``AppConfig.ready()`` is early enough.
    """
    if not get_config()["AUTO_MIDDLEWARE"]:
        return False
    middleware = getattr(settings, "MIDDLEWARE", None)
    if not isinstance(middleware, (list, tuple)) or MIDDLEWARE_PATH in middleware:
        return False
    # A new sequence of the same kind: the project's own list object is never mutated.
    settings.MIDDLEWARE = type(middleware)([MIDDLEWARE_PATH, *middleware])
    return True
