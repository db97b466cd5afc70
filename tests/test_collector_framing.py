"""The collector reads HTTP/1.1 as RFC 9112 frames it, and bounds each connection's work.

Raw sockets against a real collector process: each test sends what a hostile or broken client
sends and checks what comes back on the wire (the status, the JSON ``{code, message}``, that the
connection is closed when the framing is lost) and what the collector did (a request smuggled
behind a refused one never runs). Limits (deadline, connection cap) get their own process with
small values, so the tests stay fast.
"""

import gzip
import json
import socket
import subprocess
import sys
import time
from typing import Dict, Optional, Tuple

import pytest

from analytics_core.collector import Collector

from .support.collector_process import CollectorProcess

HOST = b"Host: 127.0.0.1\r\n"
# Texts that would say how the collector works inside, which no answer may contain.
INTERNALS = ("Traceback", "Error(", "Exception", 'File "', "object at 0x", "RecursionError")


def _port(process: CollectorProcess) -> int:
    return int(process.url.rsplit(":", 1)[1])


def _connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _read_answer(
    sock: socket.socket, buffer: bytes = b""
) -> Tuple[int, Dict[str, str], bytes, bytes]:
    """One answer off ``sock``: ``(status, headers, body, bytes left over)``."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"the connection closed before an answer: {buffer!r}")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            break
        rest += data
    return int(lines[0].split()[1]), headers, rest[:length], rest[length:]


def _is_closed(sock: socket.socket, wait: float = 3.0) -> bool:
    """True when the server has closed the connection (end of stream or reset) within ``wait``."""
    sock.settimeout(wait)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def _exchange(port: int, data: bytes) -> Tuple[int, Dict[str, str], dict, bool]:
    """Send ``data`` on a new connection; return the answer and whether the server closed."""
    with _connect(port) as sock:
        sock.sendall(data)
        status, headers, body, _ = _read_answer(sock)
        # A server that says it closes does so at once; one that keeps the connection is not
        # waited for long (a close would come right after the answer too).
        closed = _is_closed(sock, 3.0 if headers.get("connection") == "close" else 0.2)
    return status, headers, json.loads(body), closed


def _assert_error(payload: dict, code: str) -> None:
    assert set(payload) == {"code", "message"}, payload
    assert payload["code"] == code, payload
    assert payload["message"] and not any(text in payload["message"] for text in INTERNALS)


def _post(path: bytes, body: bytes, *extra: bytes) -> bytes:
    head = b"POST " + path + b" HTTP/1.1\r\n" + HOST + b"".join(extra)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _batch(*events: str) -> bytes:
    messages = [{"type": "track", "event": e, "userId": "u", "messageId": e} for e in events]
    return json.dumps({"batch": messages, "writeKey": "K"}).encode()


DELETE = b"DELETE /v1/events HTTP/1.1\r\n" + HOST + b"Content-Length: 0\r\n\r\n"


def _store_one(collector: CollectorProcess) -> None:
    """One stored event: a smuggled DELETE that ran would remove it."""
    status, _, _, _ = _exchange(_port(collector), _post(b"/v1/batch", _batch("kept")))
    assert status == 200
    assert [e["event"] for e in collector.events()] == ["kept"]


# -- the header section ------------------------------------------------------------------------


def test_obsolete_line_folding_is_refused_and_closes(collector):
    # Before: the folded line was joined to the previous field, and did not count as a field.
    request = (
        b"POST /v1/batch HTTP/1.1\r\n" + HOST + b"Authorization: Basic\r\n S0VZOg==\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    status, headers, payload, closed = _exchange(_port(collector), request)
    assert status == 400 and headers["connection"] == "close" and closed
    _assert_error(payload, "bad-request")
    assert "folding" in payload["message"]


def test_a_huge_head_of_folded_lines_is_refused_at_once(collector):
    # Before: megabytes of folded lines were taken, each re-copying the value (seconds of CPU).
    started = time.monotonic()
    answer: Optional[bytes] = None  # None: the collector closed the connection on the sender
    with _connect(_port(collector)) as sock:
        try:
            sock.sendall(b"GET /v1/stats HTTP/1.1\r\n" + HOST + b"X-A: a\r\n")
            for _ in range(2048):  # 2 MB
                sock.sendall(b" " + b"a" * 1021 + b"\r\n")
            sock.sendall(b"\r\n")
            answer = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            pass
    # Refused at the first folded line: the 400 arrived, or the close cut the sending short.
    assert answer is None or answer.startswith(b"HTTP/1.1 400 "), answer
    assert time.monotonic() - started < 5
    assert collector.stats()["requests"] == 0  # and the collector is still there


@pytest.mark.parametrize(
    "fields",
    [
        [b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(80)],  # 80 KB in 80 fields
        [b"X-F%d: v\r\n" % i for i in range(101)],  # one field too many
    ],
    ids=["over-64-KB", "over-100-fields"],
)
def test_the_header_section_is_bounded(collector, fields):
    request = b"GET /v1/stats HTTP/1.1\r\n" + HOST + b"".join(fields) + b"\r\n"
    status, headers, payload, closed = _exchange(_port(collector), request)
    assert status == 431 and headers["connection"] == "close" and closed
    _assert_error(payload, "headers-too-large")


@pytest.mark.parametrize(
    "line",
    [b"X-A: a\rb\r\n", b"X-A: a\x00b\r\n", b"Bad Name: 1\r\n", b"X-A 1\r\n", b": v\r\n"],
    ids=["bare-cr", "nul", "space-in-name", "no-colon", "empty-name"],
)
def test_a_malformed_field_line_is_refused_and_closes(collector, line):
    status, _, payload, closed = _exchange(
        _port(collector), b"GET /v1/stats HTTP/1.1\r\n" + HOST + line + b"\r\n"
    )
    assert status == 400 and closed
    _assert_error(payload, "bad-request")


def test_a_head_cut_short_is_not_served(collector):
    # The stream ends before the blank line: the DELETE is incomplete, so it does not run.
    _store_one(collector)
    with _connect(_port(collector)) as sock:
        sock.sendall(b"DELETE /v1/events HTTP/1.1\r\n" + HOST)
        sock.shutdown(socket.SHUT_WR)
        status, _, body, _ = _read_answer(sock)
    assert status == 400
    _assert_error(json.loads(body), "bad-request")
    assert len(collector.events()) == 1


# -- Content-Length and Transfer-Encoding ------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"+2", b"1_0", b"0x2", b"2 2", b"-2", b"2, 3", b"\xb2", b"", b"1" + b"0" * 19],
    ids=[
        "sign",
        "underscore",
        "hex",
        "space",
        "negative",
        "list",
        "superscript",
        "empty",
        "20-digits",
    ],
)
def test_content_length_is_digits_only(collector, value):
    request = b"POST /v1/batch HTTP/1.1\r\n" + HOST + b"Content-Length: " + value + b"\r\n\r\n{}"
    status, headers, payload, closed = _exchange(_port(collector), request + DELETE)
    assert status == 400 and headers["connection"] == "close" and closed
    _assert_error(payload, "invalid-content-length")


def test_repeated_equal_content_lengths_are_one(collector):
    body = _batch("twice")
    request = (
        b"POST /v1/batch HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\nContent-Length: %d, %d"
        b"\r\nConnection: close\r\n\r\n" % (len(body), len(body), len(body)) + body
    )
    status, _, payload, _ = _exchange(_port(collector), request)
    assert (status, payload) == (200, {"success": True})


def test_transfer_encoding_with_content_length_is_refused_and_closes(collector):
    # Before: accepted (chunked won), and the connection stayed open for what followed.
    _store_one(collector)
    body = _batch("smuggler")
    request = (
        b"POST /v1/batch HTTP/1.1\r\n" + HOST + b"Content-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    status, headers, payload, closed = _exchange(_port(collector), request + DELETE)
    assert status == 400 and headers["connection"] == "close" and closed
    _assert_error(payload, "conflicting-framing")
    assert [e["event"] for e in collector.events()] == ["kept"]


@pytest.mark.parametrize(
    "fields, status, code",
    [
        ([b"gzip, chunked"], 501, "unsupported-transfer-encoding"),
        ([b"gzip", b"chunked"], 501, "unsupported-transfer-encoding"),
        ([b"chunked", b"gzip"], 400, "invalid-transfer-encoding"),
        ([b"chunked, gzip"], 400, "invalid-transfer-encoding"),
        ([b"chunked", b"chunked"], 400, "invalid-transfer-encoding"),
        ([b"identity"], 400, "invalid-transfer-encoding"),
        ([b"chunked;x=1"], 400, "invalid-transfer-encoding"),
        ([b""], 400, "invalid-transfer-encoding"),
    ],
    ids=[
        "list",
        "two-fields",
        "chunked-first",
        "list-chunked-first",
        "twice",
        "identity",
        "parameter",
        "empty",
    ],
)
def test_only_chunked_alone_is_a_transfer_encoding(collector, fields, status, code):
    # Before: only the first Transfer-Encoding field was read.
    _store_one(collector)
    te = b"".join(b"Transfer-Encoding: " + field + b"\r\n" for field in fields)
    request = b"POST /v1/batch HTTP/1.1\r\n" + HOST + te + b"\r\n2\r\n{}\r\n0\r\n\r\n"
    answered, headers, payload, closed = _exchange(_port(collector), request + DELETE)
    assert answered == status and headers["connection"] == "close" and closed
    _assert_error(payload, code)
    assert len(collector.events()) == 1


def test_http10_cannot_use_transfer_encoding(collector):
    request = b"POST /v1/batch HTTP/1.0\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    status, _, payload, closed = _exchange(_port(collector), request)
    assert status == 400 and closed
    _assert_error(payload, "invalid-transfer-encoding")


# -- chunked bodies ----------------------------------------------------------------------------


def _chunked(body: bytes, size_line: Optional[bytes] = None, after: bytes = b"\r\n") -> bytes:
    """A chunked POST /v1/batch of one chunk; ``size_line`` and ``after`` (the data's CRLF)
    can be replaced. The last chunk ends it, with no trailers."""
    size = size_line if size_line is not None else b"%x" % len(body)
    return (
        b"POST /v1/batch HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + (size + b"\r\n" + body + after + b"0\r\n\r\n")
    )


def _batch_of_256_bytes() -> bytes:
    body = _batch("chunk")
    return body[:-1] + b" " * (256 - len(body)) + b"}"  # 0x100 bytes: sizes can be literal


@pytest.mark.parametrize(
    "size_line",
    [b"0x100", b"+100", b"-100", b"1_00", b" 100", b"100 ", b"100\t", b"00000000000000100"],
    ids=[
        "0x",
        "plus",
        "minus",
        "underscore",
        "leading-space",
        "trailing-space",
        "tab",
        "17-digits",
    ],
)
def test_chunk_sizes_are_hex_digits_only(collector, size_line):
    # Before: int(line, 16) took "0x100", "+100" and "1_00" (and " 100", "100 ").
    request = _chunked(_batch_of_256_bytes(), size_line)
    status, headers, payload, closed = _exchange(_port(collector), request)
    assert status == 400 and headers["connection"] == "close" and closed
    _assert_error(payload, "invalid-chunked-body")
    assert collector.events() == []


def test_a_chunk_size_line_must_end_with_crlf(collector):
    request = _chunked(_batch_of_256_bytes(), b"100").replace(b"100\r\n", b"100\n", 1)
    status, _, payload, closed = _exchange(_port(collector), request)
    assert status == 400 and closed
    _assert_error(payload, "invalid-chunked-body")


def test_chunk_sizes_in_hex_digits_are_read(collector):
    # Leading zeros up to 16 digits, and chunk extensions (skipped).
    for line in (b"100", b"0000000000000100", b"100;name=value", b"100 ;ext"):
        status, _, payload, _ = _exchange(_port(collector), _chunked(_batch_of_256_bytes(), line))
        assert (status, payload) == (200, {"success": True}), line
    assert len(collector.events()) == 4


def test_chunk_data_must_end_with_crlf(collector):
    # Before: whatever line followed the data was skipped, so junk rode along unnoticed.
    request = _chunked(_batch("junk"), after=b"XX\r\n")
    status, headers, payload, closed = _exchange(_port(collector), request)
    assert status == 400 and headers["connection"] == "close" and closed
    _assert_error(payload, "invalid-chunked-body")
    assert collector.events() == []


@pytest.mark.parametrize(
    "trailers, status, code",
    [
        (100, 431, "trailers-too-large"),
        (150, 431, "trailers-too-large"),
        (3, 400, "invalid-chunked-body"),
    ],
)
def test_a_request_after_unended_trailers_never_runs(collector, trailers, status, code):
    # Before: the collector read 100 trailer lines, then parsed the rest as a new request:
    # with no blank line after the 100, this DELETE ran.
    _store_one(collector)
    body = _batch("trailed")
    request = _chunked(body)[: -len(b"\r\n")] + b"X-T: 1\r\n" * trailers + DELETE
    answered, headers, payload, closed = _exchange(_port(collector), request)
    assert answered == status and headers["connection"] == "close" and closed
    _assert_error(payload, code)
    assert [e["event"] for e in collector.events()] == ["kept"]


def test_trailer_bytes_are_bounded(collector):
    body = _batch("trailed")
    request = _chunked(body)[: -len(b"\r\n")] + b"X-T: " + b"t" * 9000 + b"\r\n\r\n"
    status, _, payload, closed = _exchange(_port(collector), request)
    assert status == 431 and closed
    _assert_error(payload, "trailers-too-large")
    assert collector.events() == []


def test_trailers_within_bounds_are_read_and_the_connection_goes_on(collector):
    body = _batch("a", "b")
    first = _chunked(body)[: -len(b"\r\n")] + b"X-Checksum: 1\r\nX-Other: 2\r\n\r\n"
    second = b"GET /v1/stats HTTP/1.1\r\n" + HOST + b"\r\n"
    with _connect(_port(collector)) as sock:
        sock.sendall(first + second)  # pipelined: the second starts right after the trailers
        status, _, answer, rest = _read_answer(sock)
        assert (status, json.loads(answer)) == (200, {"success": True})
        status, _, answer, _ = _read_answer(sock, rest)
        assert status == 200 and json.loads(answer)["messages"] == 2


def test_a_body_of_too_many_chunks_is_refused(collector):
    chunks = b"1\r\n \r\n" * 10_001
    request = b"POST /v1/batch HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    status, _, payload, closed = _exchange(_port(collector), request + b"0\r\n\r\n")
    assert status == 400 and closed
    _assert_error(payload, "invalid-chunked-body")


# -- JSON the collector cannot keep --------------------------------------------------------


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    "path, body",
    [
        (b"/v1/batch", '{"batch": [{"type": "track", "event": "E", "userId": "u", "p": %s}]}'),
        (b"/v1/batch", '{"batch":[{"type":"track","event":"E","userId":"u","p":%s}]}'),
        (b"/v1/track", '{"type": "track", "event": "E", "userId": "u", "writeKey": "K", "p": %s}'),
    ],
    ids=["batch", "compact-batch", "track"],
)
@pytest.mark.parametrize("levels", [300, 1000, 100_000])
def test_json_nested_too_deeply_is_invalid_json(collector, path, body, levels):
    # Before: about 1000 levels raised RecursionError, answered 500 with its text.
    data = (body % _nested(levels)).encode()
    status, _, payload, _ = _exchange(
        _port(collector), _post(path, data, b"Authorization: Basic Szo=\r\n")
    )
    assert status == 400
    _assert_error(payload, "invalid-json")
    assert "deeper than 256 levels" in payload["message"]
    assert collector.events() == []


def test_what_analytics_core_sends_200_levels_deep_is_kept(collector):
    # analytics_core's encoder keeps values 200 levels deep: the collector must take them.
    body = '{"batch":[{"type":"track","event":"Deep","userId":"u","p":%s}],"writeKey":"K"}'
    data = (body % _nested(200)).encode()
    status, _, payload, _ = _exchange(_port(collector), _post(b"/v1/batch", data))
    assert (status, payload) == (200, {"success": True})
    (stored,) = collector.events()
    assert stored["event"] == "Deep"


NOT_JSON = [
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ("1e400", "1e400"),
    ("-1e999", "-1e999"),
]


@pytest.mark.parametrize("literal, named", NOT_JSON, ids=[n for n, _ in NOT_JSON])
@pytest.mark.parametrize(
    "path, template, gzipped",
    [
        (b"/v1/batch", '{"batch":[{"type":"track","event":"E","userId":"u","p":%s}]}', False),
        (
            b"/v1/batch",
            '{"batch": [{"type": "track", "event": "E", "userId": "u", "p": %s}]}',
            False,
        ),
        (b"/v1/batch", '{"batch":[{"type":"track","event":"E","userId":"u","p":%s}]}', True),
        (b"/v1/track", '{"type":"track","event":"E","userId":"u","properties":{"p":%s}}', False),
        (b"/v1/identify", '{"userId":"u","traits":{"score":%s}}', False),
        (b"/v1/identify", '{"userId":"u","traits":{"score":%s}}', True),
    ],
    ids=["compact-batch", "batch", "gzip-batch", "track", "identify", "gzip-identify"],
)
def test_nan_and_infinity_are_invalid_json(collector, literal, named, path, template, gzipped):
    # Before: stored as sent, which made GET /v1/events answer invalid JSON.
    body = (template % literal).encode()
    extra = [b"Authorization: Basic Szo=\r\n"]
    if gzipped:
        body = gzip.compress(body)
        extra.append(b"Content-Encoding: gzip\r\n")
    status, _, payload, closed = _exchange(_port(collector), _post(path, body, *extra))
    assert status == 400 and not closed  # the framing was fine: the connection may go on
    _assert_error(payload, "invalid-json")
    assert named in payload["message"]
    assert collector.events() == []


# -- the read API's numbers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "after_id=" + "1" + "0" * 30,
        "limit=" + "1" + "0" * 30,
        "after_id=9223372036854775808",
        "limit=-1",
        "after_id=-5",
        "limit=%2B5",
        "limit=1_0",
        "after_id=0x10",
        "limit=five",
    ],
)
def test_event_query_numbers_out_of_range_are_invalid_query(collector, query):
    # Before: 10**30 raised OverflowError in SQLite, answered 500 with its text.
    request = b"GET /v1/events?" + query.encode() + b" HTTP/1.1\r\n" + HOST + b"\r\n"
    status, _, payload, closed = _exchange(_port(collector), request)
    assert status == 400 and not closed
    _assert_error(payload, "invalid-query")


def test_event_query_numbers_at_their_bounds_are_served(collector):
    _store_one(collector)
    for query in (
        "after_id=0&limit=0",
        "after_id=9223372036854775807",
        "limit=9223372036854775807",
    ):
        request = b"GET /v1/events?" + query.encode() + b" HTTP/1.1\r\n" + HOST + b"\r\n"
        status, _, payload, _ = _exchange(_port(collector), request)
        assert status == 200 and isinstance(payload, list), (query, payload)


def test_an_internal_error_says_only_internal_error(monkeypatch):
    # Before: the 500 carried repr(exc), which names the collector's insides.
    with Collector() as server:

        def broken(**filters):
            raise RuntimeError("secret detail of /home/someone/events.db")

        monkeypatch.setattr(server.store, "events", broken)
        status, headers, payload, closed = _exchange(
            server.port, b"GET /v1/events HTTP/1.1\r\n" + HOST + b"\r\n"
        )
    assert status == 500 and headers["connection"] == "close" and closed
    assert payload == {"code": "internal-error", "message": "internal error"}


# -- time and connections ------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited():
    """A collector with a 1 s request deadline."""
    process = CollectorProcess(faults=False, extra_args=["--request-deadline", "1"])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def crowded():
    """A collector with room for 3 connections (and time enough for each request)."""
    process = CollectorProcess(
        faults=False, extra_args=["--max-connections", "3", "--request-deadline", "10"]
    )
    yield process
    process.stop()


@pytest.mark.parametrize(
    "start, drip, answered",
    [
        (b"GET /v1/stats HTTP/1.1\r\n" + HOST, b"X-Slow: 1\r\n", True),
        (b"POST /v1/batch HTTP/1.1\r\n" + HOST + b"Content-Length: 1000\r\n\r\n", b" ", True),
        (b"GET /v1/st", b"a", False),
    ],
    ids=["header-trickle", "body-trickle", "request-line-trickle"],
)
def test_a_request_must_arrive_within_its_deadline(limited, start, drip, answered):
    # Before: the 15 s timeout applied to each read, so a byte every few seconds held the
    # connection (and its thread) as long as the client liked.
    with _connect(_port(limited)) as sock:
        sock.settimeout(0.05)
        began = time.monotonic()
        sock.sendall(start)
        received = b""
        while time.monotonic() - began < 5:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                sock.sendall(drip)  # a byte every 50 ms: each read is quick, the request is not
                continue
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
        elapsed = time.monotonic() - began
    assert 0.9 < elapsed < 3, elapsed
    if answered:
        status, headers, body = _parse(received)
        assert status == 408 and headers["connection"] == "close"
        _assert_error(json.loads(body), "request-timeout")
    else:
        assert received == b""  # no request line yet: nothing to answer, just closed


def _parse(data: bytes) -> Tuple[int, Dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, body


def test_a_slow_request_within_its_deadline_is_served(limited):
    body = _batch("slow")
    with _connect(_port(limited)) as sock:
        sock.sendall(_post(b"/v1/batch", body)[: -len(body)])
        time.sleep(0.4)
        sock.sendall(body[:10])
        time.sleep(0.3)
        sock.sendall(body[10:])
        status, _, answer, _ = _read_answer(sock)
    assert (status, json.loads(answer)) == (200, {"success": True})


def _threads(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def test_a_full_collector_answers_503_and_closes(crowded):
    # Before: no cap; 300 connections trickling a header each kept 300 threads alive.
    port = _port(crowded)
    before = _threads(crowded.process.pid)
    busy = [_connect(port) for _ in range(3)]
    try:
        for sock in busy:  # each is inside a request (its head unfinished): none is idle
            sock.sendall(b"GET /v1/stats HTTP/1.1\r\n" + HOST)
        time.sleep(0.2)
        trickling = [_connect(port) for _ in range(30)]
        try:
            for sock in trickling:
                sock.sendall(b"GET /v1/st")
            status, headers, payload, closed = _exchange(
                port, b"GET /v1/stats HTTP/1.1\r\n" + HOST + b"\r\n"
            )
            after = _threads(crowded.process.pid)
        finally:
            for sock in trickling:
                sock.close()
        assert status == 503 and headers["connection"] == "close" and closed
        assert headers["retry-after"] == "1"
        _assert_error(payload, "too-many-connections")
        if before is not None and after is not None:
            assert after - before <= 3  # 33 more connections, at most 3 more threads
        for sock in busy:  # the busy ones are still served
            sock.sendall(b"\r\n")
            status, _, answer, _ = _read_answer(sock)
            assert status == 200 and "messages" in json.loads(answer)
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.2)  # their threads end
    status, _, _, _ = _exchange(port, b"GET /v1/stats HTTP/1.1\r\n" + HOST + b"\r\n")
    assert status == 200


def test_idle_connections_make_room_for_new_ones(crowded):
    port = _port(crowded)
    idle = [_connect(port) for _ in range(3)]
    try:
        for sock in idle:  # kept alive after one request, then waiting for the next
            sock.sendall(b"GET /v1/stats HTTP/1.1\r\n" + HOST + b"\r\n")
            assert _read_answer(sock)[0] == 200
        time.sleep(0.1)
        status, _, payload, _ = _exchange(port, b"GET /v1/stats HTTP/1.1\r\n" + HOST + b"\r\n")
        assert status == 200 and "messages" in payload
        # The one idle the longest was closed for it; the others still work.
        assert _is_closed(idle[0], wait=2)
        for sock in idle[1:]:
            sock.sendall(b"GET /v1/stats HTTP/1.1\r\n" + HOST + b"\r\n")
            assert _read_answer(sock)[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_limits_are_checked():
    with pytest.raises(ValueError):
        Collector(max_connections=0)
    with pytest.raises(ValueError):
        Collector(request_deadline=float("nan"))
    for flag, value in (("--max-connections", "0"), ("--request-deadline", "-1")):
        result = subprocess.run(
            [sys.executable, "-m", "analytics_core.collector", "--port", "0", flag, value],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2 and flag in result.stderr
