"""Turning an ASGI ``http`` or ``websocket`` scope into the analytics context of its messages."""

import logging
import re
import threading
from contextvars import ContextVar
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from analytics_core.context import RequestContext, add_request_context_lookup
from analytics_core.web import (
    DEFAULT_FORWARDED_HEADER,
    headers_from_asgi,
    request_fields,
    warn_if_the_server_rewrote_the_peer,
)

from .asgi_types import Scope
from .users import UserIdFromScope, normalize_user_id

__all__ = [
    "ScopeRequestContext",
    "context_for_scope",
    "context_in",
    "current_scope_context",
    "end_request",
    "scope_path",
    "start_request",
]

logger = logging.getLogger("segment")


# A Host header is the client's to write: only a plausible host[:port] goes into page.url.
_HOST = re.compile(r"^(?:[A-Za-z0-9._~\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


class ScopeRequestContext(RequestContext):
    """A :class:`~analytics_core.context.RequestContext` whose default user id is read from the
    scope each time a message is built, not once when the request starts.

    The middleware is usually the outermost one, so Starlette's ``AuthenticationMiddleware``
    (or the app's own code) sets ``scope["user"]`` only after the context was made current; it
    writes into the same scope dict, so reading it later sees the user. Assigning ``user_id``
    (``current_request_context().user_id = ...``) overrides the scope for this request.
    """

    __slots__ = ("_user_id", "_scope", "_user_id_from_scope")

    def __init__(
        self,
        scope: Scope,
        client: Any,
        trusted_proxies: int,
        user_id_from_scope: UserIdFromScope,
        forwarded_header: str = DEFAULT_FORWARDED_HEADER,
    ) -> None:
        self._scope = scope
        self._user_id_from_scope = user_id_from_scope
        self._user_id: Optional[str] = None
        # Every request builds one, most of which send nothing: the base's fields are set
        # without assigning user_id through this class's property (see RequestContext._start).
        self._start(client, partial(_fields, scope, trusted_proxies, forwarded_header))

    @property  # type: ignore[override]
    def user_id(self) -> Optional[str]:
        """The id assigned to this context, else the one ``user_id_from_scope`` finds."""
        if self._user_id is not None:
            return self._user_id
        try:
            return normalize_user_id(self._user_id_from_scope(self._scope))
        except Exception:  # the app's resolver must not break its own analytics calls
            logger.exception("analytics_asgi: user_id_from_scope raised; no user id")
            return None

    @user_id.setter
    def user_id(self, value: Optional[str]) -> None:
        self._user_id = value


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else ""


def _peer(scope: Scope) -> Optional[str]:
    client = scope.get("client")
    if not client:  # None for a unix socket, an in-process test transport, ...
        return None
    host = client[0]
    return host if isinstance(host, str) else None


def _host(scope: Scope, headers: Mapping[str, str], scheme: str) -> Optional[str]:
    header = headers.get("host", "").strip()
    if header:
        return header if _HOST.match(header) else None
    # HTTP/1.0 without Host: the address the server listens on is what the client reached.
    server = scope.get("server")
    if not server or len(server) < 2 or server[1] is None:  # (path, None): a unix socket
        return None
    host, port = server[0], server[1]
    if ":" in host:
        host = f"[{host}]"
    return host if _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"


def scope_path(scope: Scope) -> str:
    """The path as the browser's ``location.pathname`` has it (mount point included)."""
    path = _text(scope.get("path")) or "/"
    root_path = _text(scope.get("root_path"))
    # The browser's location.pathname includes the mount point. Current servers put it in
    # "path" already (as the ASGI spec asks); older ones gave it only in "root_path".
    if root_path and not path.startswith(root_path):
        path = root_path.rstrip("/") + path
    return path


def _fields(
    scope: Scope, trusted_proxies: int, forwarded_header: str
) -> Tuple[Dict[str, Any], Optional[str]]:
    websocket = scope["type"] == "websocket"
    scheme = _text(scope.get("scheme")) or ("ws" if websocket else "http")
    headers = headers_from_asgi(scope.get("headers") or ())
    peer = _peer(scope)
    if trusted_proxies == 0:
        warn_if_the_server_rewrote_the_peer(
            peer, headers.get("x-forwarded-for"), "SegmentMiddleware's trusted_proxies"
        )
    return request_fields(
        # The socket peer; forwarding headers count only across trusted_proxies hops.
        peer=peer,
        scheme=scheme,
        host=_host(scope, headers, scheme),
        path=scope_path(scope),
        query_string=_text(scope.get("query_string")),
        headers=headers,
        trusted_proxies=trusted_proxies,
        forwarded_header=forwarded_header,
    )


def context_for_scope(
    scope: Scope,
    *,
    trusted_proxies: int,
    client: Any,
    user_id_from_scope: UserIdFromScope,
    forwarded_header: str = DEFAULT_FORWARDED_HEADER,
) -> ScopeRequestContext:
    """The context of the request (or websocket connection) described by ``scope``, whose
    module-level analytics calls go to ``client`` (None: analytics_core's default client); read
    from the scope when the first message needs it."""
    return ScopeRequestContext(scope, client, trusted_proxies, user_id_from_scope, forwarded_header)


# The request being served on this task or thread, as the middleware's "request slot": a list
# [scope, middleware, context], whose context is None until a message (or the app) first asks
# for it, then the request's ScopeRequestContext (False if it could not be made). A list is
# made by one C instruction and needs no Python __init__; most requests send nothing and never
# make the context at all.
RequestSlot = List[Any]

_current_request: "ContextVar[Optional[RequestSlot]]" = ContextVar(
    "analytics_asgi_request", default=None
)

start_request: "Callable[[RequestSlot], Any]" = _current_request.set
"""Make a request slot current; returns the token :func:`end_request` takes (``ContextVar.set``
itself: the middleware calls it on every request)."""

end_request: "Callable[[Any], None]" = _current_request.reset
"""Restore what was current before :func:`start_request` (``ContextVar.reset`` itself)."""

# Two threads of one request (a sync endpoint in the threadpool, the event loop) may ask at
# the same moment: they must agree on one context.
_making = threading.Lock()


def context_in(slot: RequestSlot) -> Optional[ScopeRequestContext]:
    """The context of the request in ``slot``, made the first time it is asked for, the same one
    afterwards, from every thread; None if it cannot be made (logged once: the request is still
    served, its messages go without a context).

    ``slot[1]``, the middleware, gives ``client``, ``trusted_proxies``, ``user_id_from_scope``
    and ``forwarded_header``."""
    context = slot[2]
    if context is None:
        with _making:
            context = slot[2]
            if context is None:
                context = slot[2] = _made(slot[0], slot[1])
    return context or None


def _made(scope: Scope, middleware: Any) -> "ScopeRequestContext | bool":
    try:
        return ScopeRequestContext(
            scope,
            middleware.client,
            middleware.trusted_proxies,
            middleware.user_id_from_scope,
            middleware.forwarded_header,
        )
    except Exception:  # a request we cannot describe still gets the app's own answer
        logger.exception("analytics_asgi: could not build the request's context")
        return False


def current_scope_context() -> Optional[ScopeRequestContext]:
    """The analytics context of the ASGI request this task or thread serves, if any.

    The lookup ``analytics_core.current_request_context()`` asks when no integration set a
    context of its own: the middleware makes only a request slot current, so a request that
    sends nothing never pays for reading its scope. The slot is in a ContextVar, so the app's
    tasks, its threadpool and its background tasks see it too."""
    slot = _current_request.get()
    return None if slot is None else context_in(slot)


add_request_context_lookup(current_scope_context, outermost=True)
