"""The ``ANALYTICS_*`` keys of ``app.config``: their defaults, their types, and reading them.

A value of the wrong type for a known key is reported at ``init_app`` by :class:`ConfigError`,
naming the key, rather than by a surprise on the first event. An unknown ``ANALYTICS_*`` key
only gets a warning with the closest known name: it may be a typo, but it may as well be the
app's own setting (``ANALYTICS_GOOGLE_ID``), and an app must not fail to start for it. A
missing write key only warns too (see the extension).
"""

import difflib
import inspect
import logging
import numbers
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Tuple

from werkzeug.utils import import_string

from analytics_core import Client, ValidationError
from analytics_core.client import is_seconds
from analytics_core.web import normalize_forwarded_header
from analytics_core.web.anonymous_cookie import check_cookie_domain
from analytics_core.web.pageviews import compile_exclude

__all__ = [
    "CLIENT_OPTIONS",
    "CONFIG_DEFAULTS",
    "PREFIX",
    "ConfigError",
    "client_options",
    "override_keys",
    "read",
]

PREFIX = "ANALYTICS_"

CLIENT_OPTIONS: Tuple[str, ...] = (
    "write_key",
    "host",
    "debug",
    "send",
    "sync_mode",
    "gzip",
    "max_queue_size",
    "upload_size",
    "upload_interval",
    "timeout",
    "max_retries",
    "on_error",
    "thread",
    "proxies",
    "log_handler",
    "shutdown_timeout",
    "on_full",
    "on_full_timeout",
    "max_total_backoff_duration",
    "max_rate_limit_duration",
    "persist",
    "oauth_client_id",
    "oauth_client_key",
    "oauth_key_id",
    "oauth_auth_server",
    "oauth_scope",
)
"""The ``analytics_core.Client`` keywords; each is read from ``ANALYTICS_<KEYWORD>``."""

logger = logging.getLogger("segment")

_OAUTH_KEYS = ("ANALYTICS_OAUTH_CLIENT_ID", "ANALYTICS_OAUTH_CLIENT_KEY", "ANALYTICS_OAUTH_KEY_ID")
# Values never echoed in an error message: they are credentials.
_SECRET_KEYS = frozenset({"ANALYTICS_WRITE_KEY", "ANALYTICS_OAUTH_CLIENT_KEY"})


class ConfigError(ValidationError):
    """An ``ANALYTICS_*`` setting is unknown or has the wrong type; the message names the key."""


def _client_defaults() -> Dict[str, Any]:
    # The client's defaults are written once, in Client's signature; copying them here would let
    # the two drift apart.
    parameters = inspect.signature(Client.__init__).parameters
    return {PREFIX + name.upper(): parameters[name].default for name in CLIENT_OPTIONS}


CONFIG_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        **_client_defaults(),
        # Forwarding headers are trusted across this many proxy hops. 0: the socket peer is the
        # client, so a client cannot choose the IP its events carry.
        "ANALYTICS_TRUSTED_PROXIES": 0,
        # The one header those proxies write: X-Forwarded-For, or Forwarded (RFC 7239), or
        # another that holds a list of addresses (X-Real-IP, CF-Connecting-IP, ...).
        "ANALYTICS_FORWARDED_HEADER": "X-Forwarded-For",
        # The request's user id: a callable (or its dotted path) taking the request. None: the
        # Flask-Login user's stable id (its `id` attribute, else get_id()).
        "ANALYTICS_USER_ID": None,
        # Hand an anonymous id minted for a visitor without one to the browser as analytics.js's
        # ajs_anonymous_id cookie (False: the id lives for that request only).
        "ANALYTICS_ANONYMOUS_ID_COOKIE": True,
        # That cookie's Domain attribute (".example.com" shares it with subdomains); None: none.
        "ANALYTICS_ANONYMOUS_ID_COOKIE_DOMAIN": None,
        # A page() call for every page a browser loads (see analytics_core.web.pageviews).
        "ANALYTICS_PAGEVIEWS": False,
        # Paths that never make a page view; None: analytics_core.web.pageviews.DEFAULT_EXCLUDE plus
        # the app's static_url_path.
        "ANALYTICS_PAGEVIEWS_EXCLUDE": None,
        # An identify() call on Flask-Login's user_logged_in signal.
        "ANALYTICS_IDENTIFY_ON_LOGIN": False,
        # Deliver a request's events before its response goes out. None: only under the Werkzeug
        # development server, whose stop (SIGTERM) gives the client no chance to deliver at exit.
        "ANALYTICS_FLUSH_EACH_REQUEST": None,
    }
)
"""Every ``ANALYTICS_*`` key the extension understands, with its default."""


# -- the type of each key ----------------------------------------------------------------------


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_optional_bool(value: Any) -> bool:
    return value is None or isinstance(value, bool)


def _is_int(minimum: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return (
            isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
        )

    return check


def _is_seconds(value: Any) -> bool:
    return is_seconds(value)  # the client's own check: finite (no NaN, no infinity), >= 0


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_error_handler(value: Any) -> bool:
    return value is None or callable(value) or (isinstance(value, str) and bool(value))


def _is_proxies(value: Any) -> bool:
    return value is None or (
        isinstance(value, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )


def _is_handler(value: Any) -> bool:
    return value is None or isinstance(value, logging.Handler)


def _is_on_full(value: Any) -> bool:
    return value in ("drop", "block")


def _is_callable_or_path(value: Any) -> bool:
    return value is None or callable(value) or (isinstance(value, str) and bool(value))


def _accepted_by(check: Callable[[Any], Any]) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        try:
            check(value)
        except (TypeError, ValueError):
            return False
        return True

    return accepts


_BOOL = (_is_bool, "True or False")
_COUNT = (_is_int(1), "an integer >= 1")
_SECONDS = (_is_seconds, "a finite number of seconds >= 0")
_OPTIONAL_STR = (_is_optional_str, "a string or None")

_SCHEMA: Mapping[str, Tuple[Callable[[Any], bool], str]] = MappingProxyType(
    {
        "ANALYTICS_WRITE_KEY": _OPTIONAL_STR,
        "ANALYTICS_HOST": _OPTIONAL_STR,
        "ANALYTICS_DEBUG": _BOOL,
        "ANALYTICS_SEND": _BOOL,
        "ANALYTICS_SYNC_MODE": _BOOL,
        "ANALYTICS_GZIP": _BOOL,
        "ANALYTICS_MAX_QUEUE_SIZE": _COUNT,
        "ANALYTICS_UPLOAD_SIZE": _COUNT,
        "ANALYTICS_UPLOAD_INTERVAL": _SECONDS,
        "ANALYTICS_TIMEOUT": _SECONDS,
        "ANALYTICS_MAX_RETRIES": (_is_int(0), "an integer >= 0"),
        "ANALYTICS_ON_ERROR": (_is_error_handler, "a callable, a dotted path to one, or None"),
        "ANALYTICS_THREAD": _COUNT,
        "ANALYTICS_PROXIES": (_is_proxies, "a dict of scheme -> proxy URL, or None"),
        "ANALYTICS_LOG_HANDLER": (_is_handler, "a logging.Handler or None"),
        "ANALYTICS_SHUTDOWN_TIMEOUT": _SECONDS,
        "ANALYTICS_ON_FULL": (_is_on_full, "'drop' or 'block'"),
        "ANALYTICS_ON_FULL_TIMEOUT": _SECONDS,
        "ANALYTICS_MAX_TOTAL_BACKOFF_DURATION": _SECONDS,
        "ANALYTICS_MAX_RATE_LIMIT_DURATION": _SECONDS,
        "ANALYTICS_PERSIST": _OPTIONAL_STR,
        "ANALYTICS_OAUTH_CLIENT_ID": _OPTIONAL_STR,
        "ANALYTICS_OAUTH_CLIENT_KEY": _OPTIONAL_STR,
        "ANALYTICS_OAUTH_KEY_ID": _OPTIONAL_STR,
        "ANALYTICS_OAUTH_AUTH_SERVER": (_is_str, "a non-empty string (a URL)"),
        "ANALYTICS_OAUTH_SCOPE": (_is_str, "a non-empty string"),
        "ANALYTICS_TRUSTED_PROXIES": (_is_int(0), "an integer >= 0"),
        "ANALYTICS_FORWARDED_HEADER": (
            _accepted_by(normalize_forwarded_header),
            "a header name such as 'X-Forwarded-For'",
        ),
        "ANALYTICS_USER_ID": (
            _is_callable_or_path,
            "a callable taking the request, a dotted path to one, or None",
        ),
        "ANALYTICS_ANONYMOUS_ID_COOKIE": _BOOL,
        "ANALYTICS_ANONYMOUS_ID_COOKIE_DOMAIN": (
            _accepted_by(lambda value: check_cookie_domain(value, "")),
            "a domain such as '.example.com', or None",
        ),
        "ANALYTICS_PAGEVIEWS": _BOOL,
        "ANALYTICS_PAGEVIEWS_EXCLUDE": (
            _accepted_by(lambda value: compile_exclude(value, "")),
            "a list of path prefixes ('/static/') and compiled regexes, or None",
        ),
        "ANALYTICS_IDENTIFY_ON_LOGIN": _BOOL,
        "ANALYTICS_FLUSH_EACH_REQUEST": (_is_optional_bool, "True, False or None"),
    }
)
assert set(_SCHEMA) == set(CONFIG_DEFAULTS), "every key needs a default and a type"


# -- reading -----------------------------------------------------------------------------------


def _unknown_text(key: str, where: str, known: List[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"{where} has an unknown key {key!r}{hint} "
        "(analytics_flask.CONFIG_DEFAULTS lists the known ones)"
    )


def _unknown(key: str, where: str, known: List[str]) -> ConfigError:
    return ConfigError(_unknown_text(key, where, known))


def override_keys(overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """``Analytics(write_key=...)`` keywords as ``ANALYTICS_*`` keys; an unknown one raises."""
    keys = {}
    for name, value in overrides.items():
        key = PREFIX + name.upper()
        if name != name.lower() or key not in CONFIG_DEFAULTS:
            options = [known[len(PREFIX) :].lower() for known in CONFIG_DEFAULTS]
            raise _unknown(name, "Analytics()", options)
        keys[key] = value
    return keys


def _shown(key: str, value: Any) -> str:
    return type(value).__name__ if key in _SECRET_KEYS else repr(value)


def read(app_config: Mapping[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The defaults, overlaid with ``app_config``'s ``ANALYTICS_*`` keys, overlaid with
    ``overrides`` (already ``ANALYTICS_*`` keys); checked, and ``ON_ERROR`` imported if it is a
    dotted path. Raises :class:`ConfigError` naming the first bad key."""
    config = dict(CONFIG_DEFAULTS)
    for key, value in app_config.items():
        if isinstance(key, str) and key.startswith(PREFIX):
            if key not in CONFIG_DEFAULTS:
                # Perhaps a typo, perhaps the app's own setting: say so, and start anyway.
                logger.warning(
                    "analytics_flask: %s; it is ignored",
                    _unknown_text(key, "app.config", list(CONFIG_DEFAULTS)),
                )
                continue
            config[key] = value
    config.update(overrides)
    for key, value in config.items():
        check, expected = _SCHEMA[key]
        if not check(value):
            raise ConfigError(f"{key} must be {expected}, got {_shown(key, value)}")
    for key in ("ANALYTICS_ON_ERROR", "ANALYTICS_USER_ID"):
        config[key] = _imported(key, config[key])
    config["ANALYTICS_FORWARDED_HEADER"] = normalize_forwarded_header(
        config["ANALYTICS_FORWARDED_HEADER"]
    )
    oauth = [key for key in _OAUTH_KEYS if config[key]]
    if oauth and len(oauth) != len(_OAUTH_KEYS):
        missing = [key for key in _OAUTH_KEYS if key not in oauth]
        raise ConfigError(f"OAuth needs all of {', '.join(_OAUTH_KEYS)}; missing {missing}")
    return config


def _imported(key: str, value: Any) -> Any:
    """``value``, imported if it is a dotted path; it must be callable."""
    if not isinstance(value, str):
        return value
    try:
        imported = import_string(value)
    except ImportError as error:
        raise ConfigError(f"{key}: cannot import {value!r}: {error}") from None
    if not callable(imported):
        raise ConfigError(f"{key}: {value!r} is not callable")
    return imported


def client_options(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``analytics_core.Client`` keyword arguments in a :func:`read` result."""
    return {name: config[PREFIX + name.upper()] for name in CLIENT_OPTIONS}
