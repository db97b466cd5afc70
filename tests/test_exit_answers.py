"""What is read of an answer is bounded (MAX_ANSWER_BYTES); an oversize answer is a failed try.

The servers here are raw sockets on 127.0.0.1 that stream their answers as the client reads
(a 300 MB body is never held by the server either). Before: a 300 MB answer to one small batch
raised the sending process's peak memory from 30 MB to 931 MB (keep-alive path) and to 634 MB
(requests path), and the batch counted as delivered.

An oversize answer is retried like a network error: whatever sent it (a proxy's or a load
balancer's error page, a captive portal) is no proof the batch reached the API, each try costs
at most the limit, and duplicates are harmless (messages keep their ``messageId``).
"""

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from analytics_core import Client
from analytics_core.errors import OAuthError
from analytics_core.keepalive import MAX_ANSWER_BYTES, KeepAliveSession, ResponseTooLarge
from analytics_core.transport import RetryPolicy, Transport

from .support.servers import ROOT, python_env

pytestmark = pytest.mark.analytics_send

KEY = "wk_answers"
BODY = b'{"batch":[{"type":"track","event":"E","userId":"u"}],"writeKey":"wk_answers"}'
BIG = 300 * 1024 * 1024


def content_length_answer(size, status=200):
    head = (
        f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    return head.encode(), size


def chunked_answer(size):
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", size


def to_close_answer(size):
    return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", size


class StreamingServer:
    """Answers every request with ``head`` then ``size`` bytes of body (chunked when the head
    says so), written a megabyte at a time while the client reads; ``stall`` sends the head
    only. Counts the requests it read."""

    def __init__(self, answer, stall=False):
        self.head, self.size = answer
        self.stall = stall
        self.requests = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        chunked = b"chunked" in self.head
        try:
            conn.settimeout(30)
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests += 1
                conn.sendall(self.head)
                if self.stall:
                    time.sleep(30)
                    return
                block = b" " * (1 << 20)
                left = self.size
                while left > 0:
                    piece = block[: min(left, len(block))]
                    conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                    left -= len(piece)
                if chunked:
                    conn.sendall(b"0\r\n\r\n")
                if b"close" in self.head:
                    return
        except OSError:
            pass  # the client stopped reading and closed: expected
        finally:
            conn.close()

    def close(self):
        self.listener.close()


@pytest.fixture
def serve():
    servers = []

    def start(answer, **options):
        server = StreamingServer(answer, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def transport_for(url, retries=0, **options):
    transport = Transport(KEY, url, retry=RetryPolicy(max_retries=retries, base=0.01), **options)
    transport.stop_event = threading.Event()
    return transport


# -- the keep-alive path ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [content_length_answer(BIG), chunked_answer(BIG), to_close_answer(BIG)],
    ids=["content-length", "chunked", "read-to-close"],
)
def test_an_oversize_answer_fails_the_try(serve, answer):
    server = serve(answer)
    transport = transport_for(server.url)
    started = time.monotonic()
    with pytest.raises(ResponseTooLarge, match=f"over {MAX_ANSWER_BYTES} bytes") as raised:
        transport.send(BODY)
    assert time.monotonic() - started < 5  # 300 MB were not read
    assert raised.value.status == 200
    assert isinstance(raised.value, requests.ConnectionError)
    session = transport._session()
    assert isinstance(session, KeepAliveSession) and session._sock is None  # not reused


def test_a_declared_oversize_body_is_not_waited_for(serve):
    server = serve(content_length_answer(BIG), stall=True)
    transport = transport_for(server.url, timeout=10)
    started = time.monotonic()
    with pytest.raises(ResponseTooLarge):
        transport.send(BODY)
    assert time.monotonic() - started < 2


def test_an_oversize_answer_is_retried_like_a_network_error(serve):
    server = serve(content_length_answer(BIG))
    transport = transport_for(server.url, retries=2)
    with pytest.raises(ResponseTooLarge):
        transport.send(BODY)
    assert server.requests == 3


@pytest.mark.parametrize(
    "answer",
    [content_length_answer(MAX_ANSWER_BYTES), chunked_answer(MAX_ANSWER_BYTES)],
    ids=["content-length", "chunked"],
)
def test_an_answer_at_the_limit_is_read(serve, answer):
    server = serve(answer)
    transport = transport_for(server.url)
    response = transport.post_once(BODY)
    assert response.status_code == 200 and len(response.content) == MAX_ANSWER_BYTES


def test_the_client_reports_the_batch(serve):
    server = serve(content_length_answer(BIG))
    reports = []
    client = Client(
        KEY,
        host=server.url,
        max_retries=1,
        on_error=lambda error, items: reports.append((error, items)),
    )
    client.track("u", "Answered too much")
    assert client.flush(timeout=10) is True
    ((error, items),) = reports
    assert isinstance(error, ResponseTooLarge)
    assert [item["event"] for item in items] == ["Answered too much"]
    assert client.stats()["failed"] == 1 and client.stats()["delivered"] == 0
    assert server.requests == 2
    client.shutdown()


# -- the requests path (through a proxy: the server answers as one) ---------------------------


@pytest.mark.parametrize(
    "answer",
    [content_length_answer(BIG), chunked_answer(BIG), to_close_answer(BIG)],
    ids=["content-length", "chunked", "read-to-close"],
)
def test_through_requests_too(serve, answer):
    proxy = serve(answer)
    transport = transport_for("http://api.invalid", proxies={"http": proxy.url})
    assert isinstance(transport._session(), requests.Session)
    started = time.monotonic()
    with pytest.raises(ResponseTooLarge) as raised:
        transport.send(BODY)
    assert time.monotonic() - started < 5
    assert raised.value.status == 200
    assert raised.value.request is None


def test_through_requests_an_answer_at_the_limit_is_read(serve):
    proxy = serve(content_length_answer(MAX_ANSWER_BYTES))
    transport = transport_for("http://api.invalid", proxies={"http": proxy.url})
    response = transport.post_once(BODY)
    assert response.status_code == 200 and len(response.content) == MAX_ANSWER_BYTES
    response = transport.post_once(BODY)  # read fully, the pooled connection is used again
    assert response.status_code == 200


def test_an_oauth_token_answer_is_bounded_too(serve):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from analytics_core.oauth import OAuthTokenManager

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    server = serve(content_length_answer(BIG))
    manager = OAuthTokenManager("id", pem, "kid", auth_server=server.url, max_retries=1)
    manager._session.trust_env = False
    with pytest.raises(OAuthError, match="ResponseTooLarge") as raised:
        manager.get_token()
    assert raised.value.code == "network-error"
    assert server.requests == 2


# -- peak memory of a real process ------------------------------------------------------------

_CHILD = """
import resource, sys
import analytics_core
if {via_requests}:
    options = dict(host="http://api.invalid", proxies={{"http": {url!r}}})
else:
    options = dict(host={url!r})
errors = []
client = analytics_core.Client("key", max_retries=2, on_error=lambda e, items: errors.append(e),
                               **options)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
client.track("u", "E")
assert client.flush(timeout=30)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grew_kb": after - before, "errors": [type(e).__name__ for e in errors]}}))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in kilobytes")
@pytest.mark.parametrize("via_requests", [False, True], ids=["keep-alive", "requests"])
def test_peak_memory_stays_flat(serve, via_requests):
    server = serve(content_length_answer(BIG))
    code = "import json\n" + textwrap.dedent(
        _CHILD.format(url=server.url, via_requests=via_requests)
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(),
        cwd=str(ROOT),
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["errors"] == ["ResponseTooLarge"]
    assert outcome["grew_kb"] < 20 * 1024  # was about 900 MB (keep-alive), 600 MB (requests)
    assert server.requests == 3  # tried 1 + max_retries times
