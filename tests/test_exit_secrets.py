"""The exception ``on_error`` gets never carries the write key, on either path of the transport.

Before, through the ``requests`` path (a proxy), ``error.request`` was the prepared request:
its ``Authorization: Basic ...`` header and its body with ``writeKey``; and on both paths the
traceback's frames held the body and the transport. Now the error is walked everywhere an
error reporter could look (str, repr, args, attributes, the request and response objects, the
``__cause__`` / ``__context__`` chain, the tracebacks and their frames' locals) and the write
key is in none of it, in any of its forms.
"""

import base64
import json
import socket
import threading
import types

import pytest

from analytics_core import Client
from analytics_core.errors import APIError
from analytics_core.keepalive import ResponseTooLarge

pytestmark = pytest.mark.analytics_send

KEY = "wk_SECRET_never_in_errors_42"
SECRETS = [
    KEY,
    base64.b64encode(f"{KEY}:".encode()).decode(),
    base64.b64encode(f"{KEY}:".encode()).decode().rstrip("="),
]


def leaks(root):
    """Paths under ``root`` where a secret shows (``[]``: none)."""
    found = []
    seen = set()

    def visit(value, path, depth):
        if depth > 12 or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, (str, bytes, bytearray, memoryview)):
            text = value if isinstance(value, str) else bytes(value).decode("latin-1")
            if any(secret in text for secret in SECRETS):
                found.append(path)
            return
        if value is None or isinstance(
            value,
            (int, float, type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType),
        ):
            return
        if isinstance(value, BaseException):
            visit(str(value), f"{path}.<str>", depth + 1)
            visit(repr(value), f"{path}.<repr>", depth + 1)
            visit(value.args, f"{path}.args", depth + 1)
            visit(value.__cause__, f"{path}.__cause__", depth + 1)
            visit(value.__context__, f"{path}.__context__", depth + 1)
            visit(value.__traceback__, f"{path}.__traceback__", depth + 1)
        if isinstance(value, types.TracebackType):
            visit(value.tb_frame, f"{path}.tb_frame", depth + 1)
            visit(value.tb_next, f"{path}.tb_next", depth + 1)
            return
        if isinstance(value, types.FrameType):
            visit(dict(value.f_locals), f"{path}.f_locals", depth + 1)
            return
        if isinstance(value, dict) or (hasattr(value, "items") and hasattr(value, "keys")):
            try:
                items = list(value.items())
            except Exception:
                items = []
            for key, item in items:
                visit(key, f"{path}[key]", depth + 1)
                visit(item, f"{path}[{key!r}]", depth + 1)
            if isinstance(value, dict):
                return
        if isinstance(value, (list, tuple, set, frozenset)):
            for index, item in enumerate(value):
                visit(item, f"{path}[{index}]", depth + 1)
            return
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            for name, item in attributes.items():
                visit(item, f"{path}.{name}", depth + 1)
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if name != "__weakref__" and hasattr(value, name):
                    visit(getattr(value, name), f"{path}.{name}", depth + 1)

    visit(root, "error", 0)
    return found


class EchoServer:
    """A raw HTTP server: ``echo`` answers 400 with the request's Authorization header and
    body as its error code and message (a proxy's error page might); ``hang`` never answers."""

    def __init__(self, mode):
        self.mode = mode
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, body = data.partition(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            while len(body) < int(headers.get("content-length", 0)):
                body += conn.recv(65536)
            if self.mode == "hang":
                return  # held open, never answered
            answer = json.dumps(
                {"code": headers.get("authorization", ""), "message": body.decode("latin-1")}
            ).encode()
            conn.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
            )
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for conn in self.held:
            conn.close()


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def target(request):
    """(client options, expected error type) for one failure, on one path."""
    path, failure = request.param
    server = None
    if failure == "refused":
        where = closed_port_url()
    else:
        server = EchoServer(failure)
        where = server.url
    if path == "direct":
        options = {"host": where}
    else:  # the requests path: `where` is the proxy
        options = {"host": "http://api.invalid", "proxies": {"http": where}}
    yield path, failure, options
    if server is not None:
        server.close()


CASES = [
    (path, failure) for path in ("direct", "requests") for failure in ("refused", "hang", "echo")
]


def errors_from(options, sync_mode):
    errors = []
    client = Client(
        KEY,
        max_retries=0,
        timeout=0.5,
        sync_mode=sync_mode,
        on_error=lambda error, items: errors.append(error),
        **options,
    )
    client.track("u", "E", {"note": "the body carries writeKey"})
    client.flush(timeout=10)
    client.shutdown(timeout=2)
    return client, errors


@pytest.mark.parametrize("target", CASES, indirect=True, ids=["-".join(case) for case in CASES])
@pytest.mark.parametrize("sync_mode", [False, True], ids=["background", "sync"])
def test_the_write_key_is_nowhere_in_the_error(target, sync_mode):
    path, failure, options = target
    client, errors = errors_from(options, sync_mode)
    if path == "requests":
        assert type(client.transport._session()).__name__ == "Session"
    (error,) = errors
    if failure == "echo":
        assert isinstance(error, APIError) and error.status == 400
        assert "[redacted]" in error.code  # the server did echo the header back
    else:
        assert not isinstance(error, APIError)
    assert leaks(error) == []
    assert getattr(error, "request", None) is None
    assert getattr(error, "response", None) is None


def test_the_walker_finds_what_it_is_looking_for():
    # Without the fixes it found error.request.headers['Authorization'] and error.request.body.
    import requests

    prepared = requests.Request(
        "POST",
        "http://x/v1/batch",
        headers={"Authorization": "Basic " + SECRETS[1]},
        data=json.dumps({"writeKey": KEY}),
    ).prepare()
    error = requests.ConnectionError("refused", request=prepared)
    assert "error.request.headers['Authorization']" in leaks(error)
    assert "error.request.body" in leaks(error)
    try:
        body = KEY  # noqa: F841 - a frame's local, as in the transport
        raise ResponseTooLarge("too large")
    except ResponseTooLarge as caught:
        assert any("f_locals" in path for path in leaks(caught))
