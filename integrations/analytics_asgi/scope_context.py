"""Turning an ASGI ``http`` or ``websocket`` scope into the analytics context of its messages."""

import logging
import re
from functools import partial
from typing import Any, Dict, Mapping, Optional, Tuple

from analytics_core.context import RequestContext
from analytics_core.web import (
    DEFAULT_FORWARDED_HEADER,
    headers_from_asgi,
    request_fields,
    warn_if_the_server_rewrote_the_peer,
)

from .asgi_types import Scope
from .users import UserIdFromScope, normalize_user_id

__all__ = ["ScopeRequestContext", "context_for_scope", "scope_path"]

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
            peer, headers.get("x-forwarded-for"), "SegmentMiddleware(trusted_proxies=...)"
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
