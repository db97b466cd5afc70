"""analytics_core: a fast, Segment-compatible analytics client.

Use it as Segment's analytics-python is used::

    import analytics_core as analytics
    analytics.write_key = "WRITE_KEY"
    analytics.track("user-1", "Signed Up", {"plan": "Enterprise"})
    analytics.flush()

The module-level settings below are read once, when the first call builds ``default_client``.

The modules of this package are the client's path, in order: ``client`` (the six calls) ->
``messages`` (a checked message; ``ids``, ``context`` for a request's context) -> ``encoding``
(its bytes, once) -> ``pipeline`` (the bounded queue and the uploader threads; ``spool`` with
``persist=``) -> ``transport`` (retries; ``keepalive`` the connection, ``requests_hooks`` a
test's patched requests, ``oauth`` tokens). ``lifecycle``, ``shutdown``, ``signals``,
``sigterm_watch`` and ``threads`` deliver at exit, on SIGTERM and across fork. Built around it:
``web`` (what the framework integrations share), ``tools`` (the command line, the demo, test
capture and the pytest plugin) and ``collector`` (the local collector). ``testing``, ``cli``,
``demo``, ``pageviews`` and ``pytest_plugin`` here are the public paths of modules that moved.
"""

import logging
from typing import Any, Dict, Optional

from .client import (
    DEFAULT_OAUTH_SCOPE,
    DEFAULT_OAUTH_SERVER,
    DEFAULT_ON_FULL_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    Client,
    ErrorHandler,
    Fields,
    IdValue,
    MessageIdValue,
    Result,
    Timestamp,
)
from .context import (
    context_set_by_integration,
    current_request_context,
    looked_up_request_context,
    request_context_lookups,
    set_user_id,
)
from .errors import (
    APIError,
    MessageTooLargeError,
    OAuthError,
    QueueFullError,
    SpoolError,
    UnknownArgumentError,
    ValidationError,
)
from .transport import DEFAULT_MAX_RATE_LIMIT, DEFAULT_MAX_TOTAL_BACKOFF
from .version import VERSION

__version__ = VERSION

logger = logging.getLogger("segment")

__all__ = [
    "VERSION",
    "__version__",
    "Client",
    "APIError",
    "OAuthError",
    "ValidationError",
    "UnknownArgumentError",
    "QueueFullError",
    "MessageTooLargeError",
    "default_client",
    "identify",
    "track",
    "page",
    "screen",
    "group",
    "alias",
    "flush",
    "join",
    "shutdown",
    "set_user_id",
]

# Module-level settings, the same names and defaults as Segment's analytics-python.
write_key: Optional[str] = None
host: Optional[str] = None
on_error: Optional[ErrorHandler] = None
debug = False
log_handler: Optional[logging.Handler] = None
send = True
sync_mode = False
max_queue_size = 10000
gzip = False
timeout: float = 15
max_retries = 10
proxies: Optional[Dict[str, str]] = None
upload_size = 100
upload_interval: float = 0.5
thread = 1
oauth_client_id: Optional[str] = None
oauth_client_key: Optional[str] = None
oauth_key_id: Optional[str] = None
oauth_auth_server = DEFAULT_OAUTH_SERVER
oauth_scope = DEFAULT_OAUTH_SCOPE
# analytics-python 2.4's bounds on retrying a batch (seconds): from its first failure, and of
# 429 answers in a row.
max_total_backoff_duration: float = DEFAULT_MAX_TOTAL_BACKOFF
max_rate_limit_duration: float = DEFAULT_MAX_RATE_LIMIT
# Ours, beyond analytics-python's: the bound of the delivery at exit (seconds, all clients
# together), what a full queue does ("drop" or "block" for up to on_full_timeout seconds), and
# the durable spool's path (None: memory only).
shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
on_full = "drop"
on_full_timeout: float = DEFAULT_ON_FULL_TIMEOUT
persist: Optional[str] = None

default_client: Optional[Client] = None
"""Built from the settings above on the first call; set it yourself to use your own Client."""


def _client() -> Client:
    # Inside a request handled by an integration that owns a client (Flask's Analytics(app),
    # the ASGI middleware), the module-level calls go to that client. (current_request_context(),
    # written out: every module-level call takes this path.)
    request = context_set_by_integration()
    if request is None and request_context_lookups:
        request = looked_up_request_context()
    if request is not None and request.client is not None:
        return request.client
    return _default()


def _default() -> Client:
    """``default_client``, built from the module-level settings the first time.

    When the settings cannot make a client (no ``write_key``, a bad value, a ``persist`` folder
    that does not exist), the error is raised, as analytics-python raises it, except inside a
    request or job an integration is handling: see :func:`_stand_in`."""
    global default_client
    if default_client is None:
        try:
            built = _built_from_settings()
        except (ValidationError, SpoolError) as error:
            if current_request_context() is None:
                raise
            return _stand_in(error)
        default_client = built
    return default_client


_stand_in_client: Optional[Client] = None
_reported_setting_errors: set = set()


def _stand_in(error: Exception) -> Client:
    """A client that sends nothing, for calls inside a request (or job) while the module-level
    settings cannot make a client: the visitor's request must not fail for the application's
    configuration (a missing ``SEGMENT_WRITE_KEY`` would answer every request that tracks with
    a 500, as would a spool folder missing on one machine). Each distinct error is logged once;
    calls outside requests still raise it, and the next call after the settings are fixed
    builds the real client."""
    global _stand_in_client
    text = str(error)
    if text not in _reported_setting_errors:
        _reported_setting_errors.add(text)
        logger.error(
            "analytics: the module-level settings cannot make a client (%s: %s); calls inside "
            "requests and jobs send nothing until they are fixed, calls outside raise this error",
            type(error).__name__,
            text,
        )
    if _stand_in_client is None:
        _stand_in_client = Client(send=False)
    return _stand_in_client


def _built_from_settings() -> Client:
    return Client(
        write_key,
        host=host,
        debug=debug,
        max_queue_size=max_queue_size,
        send=send,
        on_error=on_error,
        gzip=gzip,
        max_retries=max_retries,
        sync_mode=sync_mode,
        timeout=timeout,
        proxies=proxies,
        thread=thread,
        upload_size=upload_size,
        upload_interval=upload_interval,
        log_handler=log_handler,
        oauth_client_id=oauth_client_id,
        oauth_client_key=oauth_client_key,
        oauth_key_id=oauth_key_id,
        oauth_auth_server=oauth_auth_server,
        oauth_scope=oauth_scope,
        max_total_backoff_duration=max_total_backoff_duration,
        max_rate_limit_duration=max_rate_limit_duration,
        shutdown_timeout=shutdown_timeout,
        on_full=on_full,
        on_full_timeout=on_full_timeout,
        persist=persist,
    )


def identify(
    user_id: Optional[IdValue] = None,
    traits: Optional[Fields] = None,
    context: Optional[Fields] = None,
    timestamp: Optional[Timestamp] = None,
    anonymous_id: Optional[IdValue] = None,
    integrations: Optional[Fields] = None,
    message_id: Optional[MessageIdValue] = None,
    **unexpected: Any,
) -> Result:
    """Identify a user on the default client (see :meth:`Client.identify`)."""
    return _client().identify(
        user_id, traits, context, timestamp, anonymous_id, integrations, message_id, **unexpected
    )


def track(
    user_id: Optional[IdValue] = None,
    event: Optional[str] = None,
    properties: Optional[Fields] = None,
    context: Optional[Fields] = None,
    timestamp: Optional[Timestamp] = None,
    anonymous_id: Optional[IdValue] = None,
    integrations: Optional[Fields] = None,
    message_id: Optional[MessageIdValue] = None,
    **unexpected: Any,
) -> Result:
    """Track an event on the default client (see :meth:`Client.track`)."""
    return _client().track(
        user_id,
        event,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        **unexpected,
    )


def page(
    user_id: Optional[IdValue] = None,
    category: Optional[str] = None,
    name: Optional[str] = None,
    properties: Optional[Fields] = None,
    context: Optional[Fields] = None,
    timestamp: Optional[Timestamp] = None,
    anonymous_id: Optional[IdValue] = None,
    integrations: Optional[Fields] = None,
    message_id: Optional[MessageIdValue] = None,
    **unexpected: Any,
) -> Result:
    """Record a page view on the default client (see :meth:`Client.page`)."""
    return _client().page(
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        **unexpected,
    )


def screen(
    user_id: Optional[IdValue] = None,
    category: Optional[str] = None,
    name: Optional[str] = None,
    properties: Optional[Fields] = None,
    context: Optional[Fields] = None,
    timestamp: Optional[Timestamp] = None,
    anonymous_id: Optional[IdValue] = None,
    integrations: Optional[Fields] = None,
    message_id: Optional[MessageIdValue] = None,
    **unexpected: Any,
) -> Result:
    """Record a screen view on the default client (see :meth:`Client.screen`)."""
    return _client().screen(
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        **unexpected,
    )


def group(
    user_id: Optional[IdValue] = None,
    group_id: Optional[IdValue] = None,
    traits: Optional[Fields] = None,
    context: Optional[Fields] = None,
    timestamp: Optional[Timestamp] = None,
    anonymous_id: Optional[IdValue] = None,
    integrations: Optional[Fields] = None,
    message_id: Optional[MessageIdValue] = None,
    **unexpected: Any,
) -> Result:
    """Associate a user with a group on the default client (see :meth:`Client.group`)."""
    return _client().group(
        user_id,
        group_id,
        traits,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        **unexpected,
    )


def alias(
    previous_id: Optional[IdValue] = None,
    user_id: Optional[IdValue] = None,
    context: Optional[Fields] = None,
    timestamp: Optional[Timestamp] = None,
    integrations: Optional[Fields] = None,
    message_id: Optional[MessageIdValue] = None,
    **unexpected: Any,
) -> Result:
    """Alias one user id to another on the default client (see :meth:`Client.alias`)."""
    return _client().alias(
        previous_id, user_id, context, timestamp, integrations, message_id, **unexpected
    )


def _configured_client() -> Optional[Client]:
    """``default_client`` for ``flush``/``join``/``shutdown``. As in analytics-python they build
    it from the settings when there is none yet; with no ``write_key`` set (and ``send`` on)
    there is nothing to build and nothing to deliver."""
    if default_client is None and (write_key or not send):
        return _default()
    return default_client


def flush(timeout: Optional[float] = None) -> bool:
    """Block until the default client (or, inside a request, the integration's client)
    delivered everything queued."""
    request = current_request_context()
    if request is not None and request.client is not None:
        return request.client.flush(timeout)
    client = _configured_client()
    return True if client is None else client.flush(timeout)


def join(timeout: Optional[float] = None) -> bool:
    """Deliver what the default client queued and stop its uploader thread(s)."""
    client = _configured_client()
    return True if client is None else client.join(timeout)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Flush and stop the default client (an alias of :func:`join`)."""
    return join(timeout)
