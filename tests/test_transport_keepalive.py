"""The keep-alive HTTP/1.1 path of the transport, against real servers on 127.0.0.1.

``ScriptedServer`` is a raw socket server whose answers each test plans (including broken,
chunked, HTTP/1.0, interim and closed-connection answers), and which records every request
with the connection it came on. End-to-end cases run against the real collector.
"""

import base64
import collections
import contextlib
import datetime as dt
import email.utils
import gzip
import os
import socket
import ssl
import sys
import threading
import time
from typing import Callable, List, Optional

import pytest
import requests
import responses

import analytics_core
from analytics_core import APIError
from analytics_core import transport as transport_module
from analytics_core.collector import Collector
from analytics_core.collector.access import write_key_fingerprint as fingerprint
from analytics_core.keepalive import KeepAliveSession, _network_error
from analytics_core.transport import RETRY_AFTER_CAP, RetryPolicy, Transport
from analytics_core.version import VERSION

# These tests are about delivery: their messages really go out (the pytest plugin
# captures every other test's).
pytestmark = pytest.mark.analytics_send

KEY = "wk_keepalive_secret"
BODY = b'{"batch":[{"type":"track","event":"E","userId":"u"}],"writeKey":"' + KEY.encode() + b'"}'


# -- a scripted server ------------------------------------------------------------------------


class Reply:
    """One planned answer. ``raw`` is sent verbatim instead of a built answer; ``close`` closes
    the connection after answering (without saying so); ``drop`` closes it without answering."""

    def __init__(
        self,
        status: int = 200,
        body: bytes = b'{"success": true}',
        headers: Optional[List[tuple]] = None,
        *,
        raw: Optional[bytes] = None,
        close: bool = False,
        drop: bool = False,
        delay: float = 0.0,
        early: bool = False,
        then_idle: Optional[bytes] = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else [("Content-Type", "application/json")]
        self.raw = raw
        self.close = close
        self.drop = drop
        self.delay = delay
        self.early = early  # answer after the head, close without reading the body
        self.then_idle = then_idle  # sent a little after the answer; then nothing is read

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        lines = [f"HTTP/1.1 {self.status} Scripted"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


Seen = collections.namedtuple("Seen", "connection method target headers body")


class ScriptedServer:
    """A threaded raw HTTP/1.1 server: answers from ``replies`` in order, then ``reply_for``
    (a function of the request), then 200. ``tls`` is ``(certfile, keyfile)``."""

    def __init__(
        self,
        replies: Optional[List[Reply]] = None,
        reply_for: Optional[Callable[[Seen], Reply]] = None,
        tls: Optional[tuple] = None,
    ) -> None:
        self.replies = collections.deque(replies or [])
        self.reply_for = reply_for
        self.requests: List[Seen] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.context = None
        if tls is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*tls)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.open: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
                self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            while True:
                line = reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split()
                headers = {}
                while True:
                    field = reader.readline()
                    if field in (b"\r\n", b""):
                        break
                    name, _, value = field.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                with self.lock:
                    early = self.replies and self.replies[0].early
                    reply = self.replies.popleft() if early else None
                if early:
                    with self.lock:
                        self.requests.append(Seen(number, method, target, headers, b""))
                    conn.sendall(reply.encode())
                    return  # unread body: the close resets the connection
                body = reader.read(int(headers.get("content-length", "0")))
                seen = Seen(number, method, target, headers, body)
                with self.lock:
                    self.requests.append(seen)
                    reply = self.replies.popleft() if self.replies else None
                if reply is None:
                    reply = self.reply_for(seen) if self.reply_for else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    return
                conn.sendall(reply.encode())
                if reply.then_idle is not None:
                    time.sleep(0.2)
                    conn.sendall(reply.then_idle)
                    time.sleep(2)  # read nothing more; then close
                    return
                if reply.close:
                    return
        except (OSError, ValueError):
            return  # a client that went away, or a failed TLS handshake
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for conn in self.open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def serve():
    servers = []

    def start(*replies: Reply, **kwargs) -> ScriptedServer:
        server = ScriptedServer(list(replies), **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def fast_retry(max_retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, base=0.01, cap=0.05)


def transport_for(url: str, max_retries: int = 3, **kwargs) -> Transport:
    transport = Transport(KEY, url, retry=fast_retry(max_retries), **kwargs)
    assert isinstance(transport._session(), KeepAliveSession)
    return transport


class RecordingEvent(threading.Event):
    """A stop event that records each retry wait and never sleeps."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: List[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


class Tokens:
    """A stand-in OAuth token provider: token-1, token-2, ..."""

    def __init__(self, prefix: str = "token") -> None:
        self.prefix = prefix
        self.issued = 0
        self.invalidated = 0

    def get_token(self) -> str:
        self.issued += 1
        return f"{self.prefix}-{self.issued}"

    def invalidate(self) -> None:
        self.invalidated += 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- choosing the path --------------------------------------------------------------------------


def test_a_thread_without_proxies_posts_over_a_keep_alive_session(serve, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = serve()
    transport = Transport(KEY, server.url)
    session = transport._session()
    assert isinstance(session, KeepAliveSession)
    assert transport._session() is session
    transport.send(BODY)
    assert len(server.requests) == 1


def test_an_explicit_proxy_keeps_requests(serve):
    server = serve()
    transport = Transport(KEY, server.url, proxies={"http": "http://proxy.example.test:3128"})
    assert isinstance(transport._session(), requests.Session)


def test_credentials_in_the_url_keep_requests():
    assert isinstance(Transport(KEY, "http://user:pw@127.0.0.1:1")._session(), requests.Session)


def test_a_hooked_requests_is_used_while_the_hook_is_active(serve):
    server = serve()
    transport = transport_for(server.url)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, server.url + "/v1/batch", json={})
        assert isinstance(transport._session(), requests.Session)
        transport.send(BODY)
        assert len(mock.calls) == 1
    assert server.requests == []  # the mock answered
    assert isinstance(transport._session(), KeepAliveSession)
    transport.send(BODY)
    assert len(server.requests) == 1


# -- what goes on the wire ----------------------------------------------------------------------


def test_request_line_headers_and_body(serve):
    server = serve()
    transport = transport_for(server.url + "/prefix/")
    transport.send(BODY)
    (seen,) = server.requests
    assert seen.method == "POST"
    assert seen.target == "/prefix/v1/batch"
    assert seen.body == BODY
    assert seen.headers == {
        "host": f"127.0.0.1:{server.port}",
        "content-type": "application/json",
        "user-agent": f"analytics-core/{VERSION}",
        "accept-encoding": "identity",
        "authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
        "content-length": str(len(BODY)),
    }


@pytest.mark.parametrize(
    "one_call",
    [
        pytest.param(
            True,
            id="zlib.compress",
            marks=pytest.mark.skipif(sys.version_info < (3, 11), reason="wbits from 3.11 on"),
        ),
        pytest.param(False, id="compressobj"),
    ],
)
def test_gzip_body_and_content_encoding(serve, monkeypatch, one_call):
    # zlib.compress() takes wbits from Python 3.11 on; before, a compressobj does the same.
    monkeypatch.setattr(transport_module, "_ONE_CALL_GZIP", one_call)
    server = serve()
    big = BODY[:-1] + b',"pad":"' + b"x" * 5000 + b'"}'
    transport_for(server.url, gzip=True).send(big)
    (seen,) = server.requests
    assert seen.headers["content-encoding"] == "gzip"
    assert seen.headers["content-type"] == "application/json"
    assert len(seen.body) < len(big) // 4
    assert gzip.decompress(seen.body) == big


def test_head_and_body_leave_in_one_write(serve, monkeypatch):
    writes = []
    real_connect = socket.create_connection

    class Recording:
        def __init__(self, sock):
            self._sock = sock

        def sendall(self, data):
            writes.append(bytes(data))
            return self._sock.sendall(data)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    monkeypatch.setattr(
        socket, "create_connection", lambda *a, **k: Recording(real_connect(*a, **k))
    )
    server = serve()
    transport = transport_for(server.url)
    for _ in range(3):
        transport.send(BODY)
    assert len(writes) == 3
    for data in writes:
        assert data.startswith(b"POST /v1/batch HTTP/1.1\r\n")
        assert data.endswith(b"\r\n\r\n" + BODY)
    assert server.connections == 1


def test_one_connection_is_kept_alive_across_posts(serve):
    server = serve()
    transport = transport_for(server.url)
    for _ in range(5):
        transport.send(BODY)
    assert server.connections == 1
    assert {seen.connection for seen in server.requests} == {1}
    session = transport._session()
    assert session.connections == 1
    # Nagle's algorithm off: the end of a body never waits for the ACK of its start.
    assert session._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_each_thread_has_its_own_connection(serve):
    server = serve()
    transport = transport_for(server.url)
    transport.send(BODY)
    done = []
    thread = threading.Thread(target=lambda: done.append(transport.send(BODY)))
    thread.start()
    thread.join(10)
    assert done == [None]
    transport.send(BODY)
    assert server.connections == 2
    assert [seen.connection for seen in server.requests] == [1, 2, 1]


def test_bearer_token_and_one_refresh_after_401(serve):
    server = serve(Reply(401, b'{"code": "unauthorized", "message": "expired"}'), Reply())
    tokens = Tokens()
    transport = transport_for(server.url, token_provider=tokens)
    transport.stop_event = RecordingEvent()
    transport.send(BODY)
    assert [seen.headers["authorization"] for seen in server.requests] == [
        "Bearer token-1",
        "Bearer token-2",
    ]
    assert tokens.invalidated == 1
    assert transport.stop_event.waits == [0.0]


def test_a_second_403_with_a_fresh_token_is_final(serve):
    refused = Reply(403, b'{"code": "forbidden", "message": "no"}')
    server = serve(refused, refused, Reply())
    tokens = Tokens()
    transport = transport_for(server.url, max_retries=5, token_provider=tokens)
    transport.stop_event = RecordingEvent()
    with pytest.raises(APIError) as caught:
        transport.send(BODY)
    assert caught.value.status == 403 and caught.value.code == "forbidden"
    assert len(server.requests) == 2
    assert tokens.invalidated == 1


def test_a_token_with_a_line_break_never_reaches_the_wire(serve):
    server = serve()
    transport = transport_for(server.url, max_retries=0, token_provider=Tokens("a\r\nX-Evil: 1"))
    with pytest.raises(requests.exceptions.InvalidHeader):
        transport.send(BODY)
    assert server.requests == []


# -- answers and retries ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retryable_statuses_are_retried(serve, status):
    server = serve(Reply(status, b"busy", [("Content-Type", "text/plain")]))
    retries = []
    transport_for(server.url).send(BODY, on_retry=lambda n, e: retries.append((n, e)))
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body == BODY
    assert [(n, e.status) for n, e in retries] == [(1, status)]
    assert server.connections == 1  # an error answer keeps the connection


def test_retry_after_seconds_date_and_cap(serve):
    soon = email.utils.format_datetime(
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30), usegmt=True
    )
    server = serve(
        Reply(503, b"", [("Retry-After", "7")]),
        Reply(429, b"", [("Retry-After", soon)]),
        Reply(429, b"", [("Retry-After", "86400")]),
        Reply(503, b"", [("Retry-After", "whenever")]),
    )
    transport = transport_for(server.url, max_retries=5)
    transport.stop_event = RecordingEvent()
    transport.send(BODY)
    seven, date, capped, backoff = transport.stop_event.waits
    assert seven == 7.0
    assert 25 <= date <= 30
    assert capped == RETRY_AFTER_CAP
    assert 0.025 <= backoff <= 0.05  # attempt 4: ceiling min(0.05, 0.01 * 2**3), half to all
    assert len(server.requests) == 5


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
def test_other_4xx_are_final(serve, status):
    server = serve(Reply(status, b'{"code": "nope", "message": "refused"}'))
    with pytest.raises(APIError) as caught:
        transport_for(server.url).send(BODY)
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        status,
        "nope",
        "refused",
    )
    assert len(server.requests) == 1


def test_api_error_from_a_text_body_and_from_an_empty_one(serve):
    server = serve(
        Reply(413, b"Request Entity Too Large", [("Content-Type", "text/plain")]),
        Reply(404, b"", []),
    )
    transport = transport_for(server.url)
    with pytest.raises(APIError) as text:
        transport.send(BODY)
    assert (text.value.code, text.value.message) == ("request-failed", "Request Entity Too Large")
    with pytest.raises(APIError) as empty:
        transport.send(BODY)
    assert (empty.value.status, empty.value.message) == (404, "Scripted")  # the reason phrase


def test_max_retries_then_the_last_error(serve):
    server = serve(reply_for=lambda seen: Reply(500, b'{"code": "down", "message": "down"}'))
    with pytest.raises(APIError) as caught:
        transport_for(server.url, max_retries=2).send(BODY)
    assert caught.value.code == "down"
    assert len(server.requests) == 3


def test_connection_refused_is_a_requests_connection_error_and_is_retried():
    transport = Transport(KEY, f"http://127.0.0.1:{free_port()}", retry=fast_retry(2))
    retries = []
    with pytest.raises(requests.ConnectionError) as caught:
        transport.send(BODY, on_retry=lambda n, e: retries.append(n))
    assert retries == [1, 2]
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert KEY not in str(caught.value)


def test_a_slow_answer_is_a_read_timeout_and_the_retry_uses_a_new_connection(serve):
    server = serve(Reply(delay=1.0), Reply())
    transport = transport_for(server.url, timeout=0.2)
    errors = []
    transport.send(BODY, on_retry=lambda n, e: errors.append(e))
    assert len(errors) == 1
    assert isinstance(errors[0], requests.exceptions.ReadTimeout)
    assert isinstance(errors[0], requests.Timeout)
    assert [seen.connection for seen in server.requests] == [1, 2]


def test_timeouts_map_to_connect_and_read_timeouts():
    assert isinstance(_network_error(socket.timeout("x"), "w", True), requests.ConnectTimeout)
    assert isinstance(_network_error(TimeoutError("x"), "w", False), requests.ReadTimeout)
    assert isinstance(_network_error(ssl.SSLError("x"), "w", False), requests.exceptions.SSLError)
    assert type(_network_error(BrokenPipeError(), "w", False)) is requests.ConnectionError


def test_deadline_and_stop_event(serve):
    server = serve(reply_for=lambda seen: Reply(503, b"", [("Retry-After", "60")]))
    transport = transport_for(server.url, max_retries=10)
    with pytest.raises(APIError):
        transport.send(BODY, deadline=time.monotonic() + 5)
    assert len(server.requests) == 1  # gave up instead of waiting past the deadline

    waiting, outcome = threading.Event(), {}

    def run():
        try:
            transport.send(BODY, on_retry=lambda n, e: waiting.set())
        except APIError as error:
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert waiting.wait(5)
    transport.stop_event.set()
    worker.join(5)
    assert not worker.is_alive()
    assert outcome["error"].status == 503
    assert len(server.requests) == 2


# -- connections the server closes --------------------------------------------------------------


def test_an_idle_connection_closed_by_the_server_is_reopened_without_a_retry(serve):
    server = serve(Reply(close=True), Reply(close=True), Reply())
    transport = transport_for(server.url)
    retries = []
    for _ in range(3):
        transport.send(BODY, on_retry=lambda n, e: retries.append(e))
    assert retries == []
    assert [seen.connection for seen in server.requests] == [1, 2, 3]  # each sent once
    assert transport._session().connections == 3


def test_a_connection_dropped_after_the_request_is_sent_once_more_only(serve):
    # The server read the request and closed without answering: on a reused connection that
    # looks like an idle close, so the request goes once more (a duplicate at worst) ...
    server = serve(Reply(), Reply(drop=True), Reply(drop=True), Reply())
    transport = transport_for(server.url)
    transport.send(BODY)
    errors = []
    transport.send(BODY, on_retry=lambda n, e: errors.append(e))
    # ... and the new connection failing the same way is an ordinary, counted retry.
    assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)
    assert [seen.connection for seen in server.requests] == [1, 1, 2, 3]


def test_a_connection_closed_mid_answer_is_an_error_not_a_silent_resend(serve):
    server = serve(Reply(), Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Le", close=True), Reply())
    transport = transport_for(server.url)
    transport.send(BODY)
    errors = []
    transport.send(BODY, on_retry=lambda n, e: errors.append(e))
    assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)
    assert len(server.requests) == 3


def test_an_answer_sent_before_the_body_was_read_is_still_read(serve):
    # A 413 as soon as the head arrived, then a close that resets the connection: an 8 MB body
    # is more than loopback buffers hold (4 MB to send, 128 KB unread), so the write fails,
    # but the answer is there to read (urllib3 reads it too), and a 413 is final.
    server = serve(Reply(413, b'{"code": "too-large", "message": "no"}', early=True))
    retries = []
    with pytest.raises(APIError) as caught:
        transport_for(server.url).send(b"x" * 8_000_000, on_retry=lambda n, e: retries.append(e))
    assert (caught.value.status, caught.value.code) == (413, "too-large")
    assert retries == []
    assert len(server.requests) == 1


def test_a_408_said_on_an_idle_connection_is_its_close_not_an_answer(serve):
    timeout = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    server = serve(Reply(then_idle=timeout), Reply())
    transport = transport_for(server.url)
    transport.send(BODY)
    time.sleep(0.5)  # the 408 arrives while the connection is idle
    retries = []
    transport.send(BODY, on_retry=lambda n, e: retries.append(e))
    assert retries == []
    assert [seen.connection for seen in server.requests] == [1, 2]
    assert transport._session().connections == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}",  # ends at the close
    ],
)
def test_answers_that_end_the_connection(serve, raw):
    server = serve(Reply(raw=raw, close=True), Reply())
    transport = transport_for(server.url)
    retries = []
    transport.send(BODY, on_retry=lambda n, e: retries.append(e))
    transport.send(BODY, on_retry=lambda n, e: retries.append(e))
    assert retries == []
    assert [seen.connection for seen in server.requests] == [1, 2]


def test_http10_keep_alive_answer_keeps_the_connection(serve):
    raw = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}"
    server = serve(Reply(raw=raw), Reply())
    transport = transport_for(server.url)
    transport.send(BODY)
    transport.send(BODY)
    assert server.connections == 1


def test_chunked_error_body_with_trailer_and_reuse(serve):
    raw = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n"
        b'10;ext=1\r\n{"code": "bad", \r\n'
        b'16\r\n"message": "chunked!"}\r\n'
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    server = serve(Reply(raw=raw))
    transport = transport_for(server.url)
    with pytest.raises(APIError) as caught:
        transport.send(BODY)
    assert (caught.value.code, caught.value.message) == ("bad", "chunked!")
    transport.send(BODY)  # the framing was read exactly: the same connection goes on
    assert server.connections == 1


def test_interim_100_continue_is_skipped(serve):
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    server = serve(Reply(raw=raw))
    transport = transport_for(server.url)
    transport.send(BODY)
    transport.send(BODY)
    assert server.connections == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"SPDY/9 200\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
def test_broken_answers_are_network_errors_and_retried(serve, raw):
    server = serve(Reply(raw=raw, close=True), Reply())
    errors = []
    transport_for(server.url).send(BODY, on_retry=lambda n, e: errors.append(e))
    assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)
    assert [seen.connection for seen in server.requests] == [1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_reset_in_a_forked_child_uses_new_connections_and_leaves_the_parents(serve):
    server = serve()
    transport = transport_for(server.url)
    transport.send(BODY)
    parent = transport._session()
    pid = os.fork()
    if pid == 0:  # the child: a fresh session, its own connection
        code = 1
        try:
            transport.reset()
            transport.send(BODY)
            child = transport._session()
            code = 0 if child is not parent and child.connections == 1 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    transport.send(BODY)  # the parent's connection is still open and still its own
    assert parent.connections == 1
    assert server.connections == 2
    assert [seen.connection for seen in server.requests] == [1, 2, 1]


def test_reset_forgets_sessions_and_the_stop_flag(serve):
    server = serve()
    transport = transport_for(server.url)
    transport.send(BODY)
    before = transport._session()
    transport.stop_event.set()
    transport.reset()
    assert not transport.stop_event.is_set()
    assert transport._session() is not before
    transport.send(BODY)
    assert server.connections == 2


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A test CA and a certificate for ``localhost`` (only) that it signed, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.timezone.utc)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("analytics-core test CA"))
        .issuer_name(name("analytics-core test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {kind: str(path) for kind, path in paths.items()}


@pytest.fixture
def no_ca_settings(monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _tls_server(serve, tls_files, *replies):
    return serve(*replies, tls=(tls_files["cert"], tls_files["key"]))


def test_tls_with_the_ca_from_requests_ca_bundle(serve, tls_files, no_ca_settings):
    no_ca_settings.setenv("REQUESTS_CA_BUNDLE", tls_files["ca"])
    server = _tls_server(serve, tls_files, Reply(close=True), Reply())
    transport = transport_for(f"https://localhost:{server.port}")
    assert transport._session().verify == tls_files["ca"]
    retries = []
    for _ in range(3):  # the server closes the first connection: reopened, not retried
        transport.send(BODY, on_retry=lambda n, e: retries.append(e))
    assert retries == []
    assert [seen.body for seen in server.requests] == [BODY] * 3
    assert [seen.connection for seen in server.requests] == [1, 2, 2]
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"


def test_tls_with_the_ca_from_ssl_cert_file(serve, tls_files, no_ca_settings):
    no_ca_settings.setenv("SSL_CERT_FILE", tls_files["ca"])
    server = _tls_server(serve, tls_files)
    transport_for(f"https://localhost:{server.port}").send(BODY)
    assert len(server.requests) == 1


def test_tls_refuses_an_unknown_ca(serve, tls_files, no_ca_settings):
    server = _tls_server(serve, tls_files)
    transport = transport_for(f"https://localhost:{server.port}", max_retries=0)
    with pytest.raises(requests.exceptions.SSLError) as caught:
        transport.send(BODY)  # certifi's bundle, as requests uses, does not know the test CA
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert server.requests == []


def test_tls_refuses_a_certificate_for_another_name(serve, tls_files, no_ca_settings):
    no_ca_settings.setenv("REQUESTS_CA_BUNDLE", tls_files["ca"])
    server = _tls_server(serve, tls_files)
    transport = transport_for(server.url, max_retries=0)  # 127.0.0.1: not in the certificate
    with pytest.raises(requests.exceptions.SSLError):
        transport.send(BODY)
    assert server.requests == []


# -- end to end with the collector ----------------------------------------------------------------


def test_client_delivers_through_the_keep_alive_path_with_collector_faults():
    with Collector(faults=True) as collector:
        collector.faults.replace([{"status": 500, "times": 1}, {"status": 429, "retry_after": "0"}])
        client = analytics_core.Client(KEY, host=collector.url, sync_mode=True)
        client.transport.retry = fast_retry()
        assert isinstance(client.transport._session(), KeepAliveSession)
        ok, message = client.track("u-1", "Keep-Alive", {"n": 1})
        assert ok is True
        for index in range(5):
            assert client.track("u-1", "Again", {"n": index})[0] is True
        stats = collector.stats()
        assert stats["requests"] == 8 and stats["messages"] == 6
        (stored,) = collector.events(event="Keep-Alive")
        assert stored["messageId"] == message["messageId"]
        assert stored["_write_key_fingerprint"] == fingerprint(KEY)
        assert client.transport._session().connections == 1
        client.shutdown()


def test_background_uploader_gzip_to_the_collector():
    with Collector() as collector:
        client = analytics_core.Client(KEY, host=collector.url, gzip=True, upload_size=50)
        for index in range(500):
            client.track("u-2", "Zipped", {"i": index, "pad": "z" * 200})
        assert client.flush(timeout=30)
        assert collector.stats()["messages"] == 500
        assert collector.stats()["rejected"] == 0
        assert collector.stats()["batches"] == 10
        client.shutdown()


def test_the_collector_restarting_between_posts_is_survived():
    collector = Collector().start()
    port = collector.port
    transport = transport_for(collector.url)
    transport.send(BODY)
    collector.stop()
    collector = Collector(port=port).start()  # same address, new process state
    try:
        retries = []
        transport.send(BODY, on_retry=lambda n, e: retries.append(e))
        assert retries == []  # the old connection is dead: reopened, not retried
        assert collector.stats()["messages"] == 1
        assert transport._session().connections == 2
    finally:
        collector.stop()


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain; charset=utf-8", "Zoë ✓"),
        ("text/plain", "Zoë ✓".encode().decode("iso-8859-1")),  # requests' default for text/*
        ("application/problem", "Zoë ✓"),  # UTF-8 otherwise
        ("text/plain; charset=no-such-codec", "Zoë ✓"),
    ],
)
def test_error_text_is_decoded_as_requests_decodes_it(serve, content_type, expected):
    server = serve(Reply(418, "Zoë ✓".encode(), [("Content-Type", content_type)]))
    with pytest.raises(APIError) as caught:
        transport_for(server.url).send(BODY)
    assert caught.value.message == expected
