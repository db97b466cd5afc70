"""Checking the middleware's options once, and choosing the client its requests use."""

import importlib
import inspect
import logging
import numbers
from typing import Any, Callable, Dict, Optional, Tuple

from analytics_core import Client, ValidationError
from analytics_core.web import normalize_forwarded_header
from analytics_core.web.anonymous_cookie import check_cookie_domain
from analytics_core.web.pageviews import ExcludeRule, compile_exclude

__all__ = [
    "CLIENT_OPTIONS",
    "NOT_GIVEN",
    "check_middleware_options",
    "choose_client",
    "cookie_domain_option",
    "forwarded_header_option",
    "pageviews_exclude_option",
    "user_id_from_scope_option",
]

logger = logging.getLogger("segment")

# Every keyword analytics_core.Client takes, in its order: the middleware accepts them all.
CLIENT_OPTIONS: Tuple[str, ...] = tuple(
    name for name in inspect.signature(Client).parameters if name != "self"
)

# The types Client itself does not check (it checks write_key, on_error and the numbers).
_TYPES: Dict[str, type] = {
    "host": str,
    "debug": bool,
    "send": bool,
    "sync_mode": bool,
    "gzip": bool,
    "proxies": dict,
    "log_handler": logging.Handler,
    "oauth_client_id": str,
    "oauth_client_key": str,
    "oauth_key_id": str,
    "oauth_auth_server": str,
    "oauth_scope": str,
    "on_full": str,
    "persist": str,
}


def _fail(message: str) -> ValidationError:
    return ValidationError(f"SegmentMiddleware: {message}")


def check_middleware_options(
    trusted_proxies: Any, pageviews: Any, anonymous_id_cookie: Any
) -> None:
    """Raise :class:`~analytics_core.ValidationError` naming the first bad option."""
    if (
        isinstance(trusted_proxies, bool)
        or not isinstance(trusted_proxies, numbers.Integral)
        or trusted_proxies < 0
    ):
        raise _fail(f"trusted_proxies must be an integer >= 0, got {trusted_proxies!r}")
    if not isinstance(pageviews, bool):
        raise _fail(f"pageviews must be True or False, got {pageviews!r}")
    if not isinstance(anonymous_id_cookie, bool):
        raise _fail(f"anonymous_id_cookie must be True or False, got {anonymous_id_cookie!r}")


def user_id_from_scope_option(value: Any) -> Optional[Callable[[Any], Any]]:
    """``user_id_from_scope``: a callable, or the dotted path of one (``"app.auth.user_id"``)."""
    if value is None or callable(value):
        return value
    if isinstance(value, str) and "." in value:
        module_name, _, attribute = value.rpartition(".")
        try:
            imported = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise _fail(f"user_id_from_scope: cannot import {value!r}: {error}") from None
        if callable(imported):
            return imported
    raise _fail(f"user_id_from_scope must be a callable or its dotted path, got {value!r}")


def forwarded_header_option(value: Any) -> str:
    """``forwarded_header``, lower-cased; a bad header name raises, naming the option."""
    try:
        return normalize_forwarded_header(value)
    except (TypeError, ValueError) as error:
        raise _fail(f"forwarded_header: {error}") from None


def cookie_domain_option(value: Any) -> Optional[str]:
    """``anonymous_id_cookie_domain``: None or a domain name."""
    try:
        return check_cookie_domain(value, "anonymous_id_cookie_domain")
    except ValueError as error:
        raise _fail(str(error)) from None


def pageviews_exclude_option(value: Any) -> Tuple[ExcludeRule, ...]:
    """``pageviews_exclude``: None (the defaults) or path prefixes and compiled regexes."""
    try:
        return compile_exclude(value, "pageviews_exclude")
    except ValueError as error:
        raise _fail(str(error)) from None


class _NotGiven:
    """The default of the middleware's ``write_key``: left out, unlike ``write_key=None``."""

    def __repr__(self) -> str:
        return "<not given>"


NOT_GIVEN: Any = _NotGiven()


def choose_client(client: Optional[Client], options: Dict[str, Any]) -> Optional[Client]:
    """The client the middleware's requests use; None means analytics_core's default client.

    ``options`` maps each of :data:`CLIENT_OPTIONS` to the value given, None when not given
    (then Client's own default applies), except ``write_key``: :data:`NOT_GIVEN` when left out,
    None when given as None (``os.environ.get("SEGMENT_WRITE_KEY")`` on a machine without it).
    With ``client`` no option may be given; with neither a client nor any option, the
    module-level client (``analytics_core.write_key = ...``) is used; otherwise a Client is
    built from the options. Given without a key (None or empty), it sends nothing, with a
    warning, as Flask's and Django's integrations do: a development machine without the key
    must still serve its pages.
    """
    key_given = options.get("write_key", NOT_GIVEN) is not NOT_GIVEN
    options = {**options, "write_key": None if not key_given else options["write_key"]}
    unknown = set(options) - set(CLIENT_OPTIONS)
    if unknown:  # a programming error in this package, not the user's
        raise TypeError(f"not analytics_core.Client options: {', '.join(sorted(unknown))}")
    given = {name: value for name, value in options.items() if value is not None}
    if client is not None:
        if not isinstance(client, Client):
            raise _fail(f"client must be an analytics_core.Client, got {type(client).__name__}")
        if given:
            raise _fail(
                "pass either client= or client options, not both (got client= and "
                f"{', '.join(sorted(given))}); configure the client you pass instead"
            )
        return client
    if not given and not key_given:
        return None
    if not given.get("write_key") and given.get("send") is not False:
        logger.warning(
            "SegmentMiddleware: no write_key (it is %s); events will not be sent (pass "
            "send=False to silence this warning)",
            "empty" if given.get("write_key") == "" else "None" if key_given else "not given",
        )
        given["send"] = False
        given.pop("write_key", None)
    for name, value in given.items():
        expected = _TYPES.get(name)
        if expected is not None and not isinstance(value, expected):
            raise _fail(f"{name} must be a {expected.__name__}, got {value!r}")
    try:
        return Client(**given)
    except ValidationError as error:  # its message names the option; say who passed it
        raise _fail(str(error)) from None
