"""What the analytics_asgi tests share: a visitor's headers, driving raw ASGI, Starlette's
TestClient (on httpx2, which Starlette 1.x asks for), and the httpx2 (or httpx) module."""

import asyncio
import inspect
import json
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from starlette.testclient import TestClient as StarletteTestClient

try:
    import httpx2 as httpx
except ImportError:
    # httpx2 needs Python 3.11+; before that the dev extra installs httpx, whose
    # ASGITransport and AsyncClient the tests use the same way (and Starlette's TestClient too).
    import httpx

__all__ = [
    "Clients",
    "LifespanDriver",
    "TestClient",
    "ajs_cookie",
    "call_http",
    "http_scope",
    "httpx",
    "visitor_headers",
]

USER_AGENT = "asgi-tests/1.0"


def _with_peer(app: Any, peer: Tuple[str, int]) -> Any:
    """``app`` seeing ``peer`` as the socket peer (``scope["client"]``) of every connection."""

    async def peered(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": peer}
        await app(scope, receive, send)

    return peered


if "client" in inspect.signature(StarletteTestClient.__init__).parameters:
    TestClient = StarletteTestClient
else:

    class TestClient(StarletteTestClient):  # type: ignore[no-redef]
        """Starlette's TestClient with its ``client=(host, port)`` (the socket peer of every
        request), which Starlette only has since 0.44: before, the app is wrapped to see it."""

        def __init__(
            self, app: Any, *args: Any, client: Optional[Tuple[str, int]] = None, **kwargs: Any
        ) -> None:
            super().__init__(app if client is None else _with_peer(app, client), *args, **kwargs)


def ajs_cookie(anonymous_id: str) -> str:
    """The ``ajs_anonymous_id`` cookie as analytics.js writes it: JSON-quoted, URL-encoded."""
    return "ajs_anonymous_id=" + quote(json.dumps(anonymous_id))


def visitor_headers(anonymous_id: str, **extra: str) -> Dict[str, str]:
    """A browser's headers: a user agent and the analytics.js cookie, plus ``extra``."""
    headers = {"User-Agent": USER_AGENT, "Cookie": ajs_cookie(anonymous_id)}
    headers.update(extra)
    return headers


def http_scope(
    path: str = "/",
    *,
    headers: Optional[List[Tuple[bytes, bytes]]] = None,
    query_string: bytes = b"",
    client: Optional[Tuple[str, int]] = ("198.51.100.1", 40000),
    kind: str = "http",
    **extra: Any,
) -> Dict[str, Any]:
    """An ASGI scope as a server would build it, with raw byte headers."""
    scope = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "root_path": "",
        "query_string": query_string,
        "headers": headers if headers is not None else [(b"host", b"example.test")],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


async def call_http(app: Any, scope: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Run one HTTP request through ``app``; the messages it sent."""
    sent: List[Dict[str, Any]] = []
    requested = False

    async def receive() -> Dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the app works
        return {"type": "http.disconnect"}

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


class LifespanDriver:
    """Plays the server's side of the lifespan protocol against an app, step by step."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_app: asyncio.Queue[Dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[Dict[str, Any]] = asyncio.Queue()
        self.task: Optional[asyncio.Task] = None
        self.log: List[str] = []  # what happened, in order (the tests add their own entries)

    async def _send(self, message: Dict[str, Any]) -> None:
        self.log.append(message["type"])
        await self.from_app.put(message)

    def start(self) -> None:
        """Call the app with a lifespan scope (inside a running loop)."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.to_app.get, self._send))

    async def ask(self, kind: str, timeout: float = 10.0) -> Dict[str, Any]:
        """Send ``lifespan.<kind>`` and return the app's answer."""
        await self.to_app.put({"type": f"lifespan.{kind}"})
        return await asyncio.wait_for(self.from_app.get(), timeout)


class Clients:
    """analytics_core Clients pointed at the test collector, shut down when the test ends."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.made: List[Any] = []

    def make(self, write_key: str = "asgi-key", **options: Any) -> Any:
        """A Client for ``write_key`` sending to the collector (quickly, unless told)."""
        from analytics_core import Client

        options.setdefault("upload_interval", 0.05)
        client = Client(write_key, host=self.host, **options)
        self.made.append(client)
        return client

    def __enter__(self) -> "Clients":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for client in self.made:
            client.shutdown(timeout=2)
