"""The ``settings.ANALYTICS`` dict: its defaults, its schema, and the cached merged view of it.

``get_config()`` merges ``CONFIG_DEFAULTS`` with the project's ``ANALYTICS`` dict once and caches
the result; the cache is cleared on Django's ``setting_changed`` signal (see ``signals.py``), so
``override_settings(ANALYTICS=...)`` and pytest-django's ``settings`` fixture work in tests.
"""

import functools
import inspect
import numbers
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Tuple

from django.conf import settings

from analytics_core import Client
from analytics_core.client import is_seconds
from analytics_core.web import normalize_forwarded_header
from analytics_core.web.anonymous_cookie import check_cookie_domain
from analytics_core.web.pageviews import compile_exclude

__all__ = ["CLIENT_OPTIONS", "CONFIG_DEFAULTS", "config_errors", "get_config", "user_config"]

CLIENT_OPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "WRITE_KEY": "write_key",
        "HOST": "host",
        "DEBUG": "debug",
        "SEND": "send",
        "SYNC_MODE": "sync_mode",
        "GZIP": "gzip",
        "MAX_QUEUE_SIZE": "max_queue_size",
        "UPLOAD_SIZE": "upload_size",
        "UPLOAD_INTERVAL": "upload_interval",
        "TIMEOUT": "timeout",
        "MAX_RETRIES": "max_retries",
        "ON_ERROR": "on_error",
        "THREAD": "thread",
        "PROXIES": "proxies",
        "SHUTDOWN_TIMEOUT": "shutdown_timeout",
        "ON_FULL": "on_full",
        "ON_FULL_TIMEOUT": "on_full_timeout",
        "MAX_TOTAL_BACKOFF_DURATION": "max_total_backoff_duration",
        "MAX_RATE_LIMIT_DURATION": "max_rate_limit_duration",
        "PERSIST": "persist",
        "OAUTH_CLIENT_ID": "oauth_client_id",
        "OAUTH_CLIENT_KEY": "oauth_client_key",
        "OAUTH_KEY_ID": "oauth_key_id",
        "OAUTH_AUTH_SERVER": "oauth_auth_server",
        "OAUTH_SCOPE": "oauth_scope",
    }
)
"""Setting key -> the ``analytics_core.Client`` keyword it is passed as."""


def _client_defaults() -> Dict[str, Any]:
    # The client's defaults are written once, in Client's signature; repeating them here would
    # let the two drift apart.
    parameters = inspect.signature(Client.__init__).parameters
    return {key: parameters[keyword].default for key, keyword in CLIENT_OPTIONS.items()}


CONFIG_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        **_client_defaults(),
        # Forwarding headers are trusted across this many proxy hops (0: the socket peer is the
        # client, so a client cannot spoof its IP).
        "TRUSTED_PROXIES": 0,
        # The one header those proxies write: X-Forwarded-For, or Forwarded (RFC 7239), or
        # another that holds a list of addresses (X-Real-IP, CF-Connecting-IP, ...).
        "FORWARDED_HEADER": "X-Forwarded-For",
        # The request's user id: a callable (or its dotted path) taking the request; None reads
        # request.user's primary key.
        "USER_ID": None,
        # Hand an anonymous id minted for a visitor without one to the browser as analytics.js's
        # ajs_anonymous_id cookie (False: the id lives for that request only).
        "ANONYMOUS_ID_COOKIE": True,
        # That cookie's Domain attribute (".example.com" shares it with subdomains); None: none.
        "ANONYMOUS_ID_COOKIE_DOMAIN": None,
        # A page() call for every page a browser loads (see analytics_core.web.pageviews).
        "PAGEVIEWS": False,
        # Paths that never make a page view; None: analytics_core.web.pageviews.DEFAULT_EXCLUDE plus
        # STATIC_URL, MEDIA_URL and where the Django and Wagtail admins are mounted.
        "PAGEVIEWS_EXCLUDE": None,
        # An identify() call on django.contrib.auth's user_logged_in signal.
        "IDENTIFY_ON_LOGIN": False,
        # Deliver a request's events before its response goes out. None: only under runserver,
        # whose autoreloader SIGKILLs the serving process when it is stopped with SIGTERM.
        "FLUSH_EACH_REQUEST": None,
        # Insert the middleware at the top of settings.MIDDLEWARE when the app is ready.
        "AUTO_MIDDLEWARE": True,
    }
)
"""Every key ``settings.ANALYTICS`` understands, with its default (the client's own defaults
are those of ``analytics_core.Client``, listed in the README)."""


def user_config() -> Any:
    """``settings.ANALYTICS`` as the project wrote it (``{}`` when it is not set)."""
    value = getattr(settings, "ANALYTICS", None)
    return {} if value is None else value


@functools.cache
def get_config() -> Mapping[str, Any]:
    """The defaults overlaid with ``settings.ANALYTICS`` (read-only, cached until it changes).

    A value that is not a dict is ignored here and reported by the system checks.
    """
    config = dict(CONFIG_DEFAULTS)
    value = user_config()
    if isinstance(value, Mapping):
        config.update(value)
    return MappingProxyType(config)


# -- schema -------------------------------------------------------------------------------------


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _is_non_negative_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _is_seconds(value: Any) -> bool:
    return is_seconds(value)  # the client's own check: finite (no NaN, no infinity), >= 0


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_error_handler(value: Any) -> bool:
    return value is None or callable(value) or isinstance(value, str)


def _is_proxies(value: Any) -> bool:
    return value is None or (
        isinstance(value, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )


def _is_on_full(value: Any) -> bool:
    return value in ("drop", "block")


def _is_optional_bool(value: Any) -> bool:
    return value is None or isinstance(value, bool)


def _is_callable_or_path(value: Any) -> bool:
    return value is None or callable(value) or (isinstance(value, str) and bool(value))


def _is_header_name(value: Any) -> bool:
    try:
        normalize_forwarded_header(value)
    except ValueError:
        return False
    return True


def _is_cookie_domain(value: Any) -> bool:
    try:
        check_cookie_domain(value, "ANONYMOUS_ID_COOKIE_DOMAIN")
    except ValueError:
        return False
    return True


def _is_exclude(value: Any) -> bool:
    try:
        compile_exclude(value, "PAGEVIEWS_EXCLUDE")
    except ValueError:
        return False
    return True


_BOOL = (_is_bool, "a bool (True or False)")
_COUNT = (_is_count, "an integer >= 1")
_SECONDS = (_is_seconds, "a finite number of seconds >= 0")
_OPTIONAL_STR = (_is_optional_str, "a string or None")

SCHEMA: Mapping[str, Tuple[Callable[[Any], bool], str]] = MappingProxyType(
    {
        "WRITE_KEY": _OPTIONAL_STR,
        "HOST": _OPTIONAL_STR,
        "DEBUG": _BOOL,
        "SEND": _BOOL,
        "SYNC_MODE": _BOOL,
        "GZIP": _BOOL,
        "MAX_QUEUE_SIZE": _COUNT,
        "UPLOAD_SIZE": _COUNT,
        "UPLOAD_INTERVAL": _SECONDS,
        "TIMEOUT": _SECONDS,
        "MAX_RETRIES": (_is_non_negative_int, "an integer >= 0"),
        "ON_ERROR": (_is_error_handler, "a callable, a dotted path to one, or None"),
        "THREAD": _COUNT,
        "PROXIES": (_is_proxies, "a dict of scheme -> proxy URL, or None"),
        "SHUTDOWN_TIMEOUT": _SECONDS,
        "ON_FULL": (_is_on_full, "'drop' or 'block'"),
        "ON_FULL_TIMEOUT": _SECONDS,
        "MAX_TOTAL_BACKOFF_DURATION": _SECONDS,
        "MAX_RATE_LIMIT_DURATION": _SECONDS,
        "PERSIST": _OPTIONAL_STR,
        "OAUTH_CLIENT_ID": _OPTIONAL_STR,
        "OAUTH_CLIENT_KEY": _OPTIONAL_STR,
        "OAUTH_KEY_ID": _OPTIONAL_STR,
        "OAUTH_AUTH_SERVER": (_is_str, "a non-empty string (a URL)"),
        "OAUTH_SCOPE": (_is_str, "a non-empty string"),
        "TRUSTED_PROXIES": (_is_non_negative_int, "an integer >= 0"),
        "FORWARDED_HEADER": (_is_header_name, "a header name such as 'X-Forwarded-For'"),
        "USER_ID": (_is_callable_or_path, "a callable taking the request, a dotted path, or None"),
        "ANONYMOUS_ID_COOKIE": _BOOL,
        "ANONYMOUS_ID_COOKIE_DOMAIN": (_is_cookie_domain, "a domain ('.example.com') or None"),
        "PAGEVIEWS": _BOOL,
        "PAGEVIEWS_EXCLUDE": (
            _is_exclude,
            "a list of path prefixes ('/static/') and compiled regexes, or None",
        ),
        "IDENTIFY_ON_LOGIN": _BOOL,
        "FLUSH_EACH_REQUEST": (_is_optional_bool, "True, False or None"),
        "AUTO_MIDDLEWARE": _BOOL,
    }
)
"""Key -> (validator, the expected type in words), for the system checks and the client."""


def config_errors(value: Any) -> List[Tuple[str, str, Any]]:
    """``(key, expected, got)`` for every key of ``value`` (a user's ``ANALYTICS``) whose value
    has the wrong type; ``("ANALYTICS", "a dict", value)`` if it is not a dict at all."""
    if not isinstance(value, Mapping):
        return [("ANALYTICS", "a dict", value)]
    errors = []
    for key, item in value.items():
        rule = SCHEMA.get(key)
        if rule is not None and not rule[0](item):
            errors.append((key, rule[1], item))
    return errors
