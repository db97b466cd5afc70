"""Checking the middleware's options once, and choosing the client its requests use."""

import inspect
import logging
import numbers
from typing import Any, Dict, Optional, Tuple

from analytics_core import Client, ValidationError

__all__ = ["CLIENT_OPTIONS", "check_middleware_options", "choose_client"]

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


def check_middleware_options(trusted_proxies: Any, pageviews: Any, user_id_from_scope: Any) -> None:
    """Raise :class:`~analytics_core.ValidationError` naming the first bad option."""
    if (
        isinstance(trusted_proxies, bool)
        or not isinstance(trusted_proxies, numbers.Integral)
        or trusted_proxies < 0
    ):
        raise _fail(f"trusted_proxies must be an integer >= 0, got {trusted_proxies!r}")
    if not isinstance(pageviews, bool):
        raise _fail(f"pageviews must be True or False, got {pageviews!r}")
    if user_id_from_scope is not None and not callable(user_id_from_scope):
        raise _fail(f"user_id_from_scope must be callable, got {user_id_from_scope!r}")


def choose_client(client: Optional[Client], options: Dict[str, Any]) -> Optional[Client]:
    """The client the middleware's requests use; None means analytics_core's default client.

    ``options`` maps each of :data:`CLIENT_OPTIONS` to the value given, None when not given
    (then Client's own default applies). With ``client`` no option may be given; with neither
    a client nor any option, the module-level client (``analytics_core.write_key = ...``) is
    used; otherwise a Client is built from the options.
    """
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
    if not given:
        return None
    for name, value in given.items():
        expected = _TYPES.get(name)
        if expected is not None and not isinstance(value, expected):
            raise _fail(f"{name} must be a {expected.__name__}, got {value!r}")
    try:
        return Client(**given)
    except ValidationError as error:  # its message names the option; say who passed it
        raise _fail(str(error)) from None
