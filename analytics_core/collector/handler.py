"""One HTTP request to the collector: routing, bounded body reading and JSON responses.

Every request is handled inside one try/except: a hostile client can get a 400, never kill
the server. The Tracking API's rules themselves live in :mod:`.protocol`.
"""

import contextlib
import json
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

from .debugger_page import PAGE as DEBUGGER_PAGE
from .faults import Fault
from .http11 import HeadError, http_date, read_headers, version_number
from .protocol import (
    MAX_BODY_BYTES,
    MESSAGE_TYPES,
    RequestError,
    bad_request,
    body_too_large,
    decode_body,
    parse_tracking_body,
    validate_messages,
    write_key_from_authorization,
)
from .store import FILTER_COLUMNS

if TYPE_CHECKING:
    from .server import CollectorServer

__all__ = ["CollectorHandler"]

_TRACKING_PATHS = {"/v1/batch": "batch"}
_TRACKING_PATHS.update({f"/v1/{kind}": kind for kind in MESSAGE_TYPES})
_QUERY_INTS = ("limit", "after_id")
# Chunk-size lines are hex numbers plus optional extensions; anything longer is hostile.
_MAX_LINE = 4096
# The answer to every accepted tracking request, encoded once.
_SUCCESS = json.dumps({"success": True}).encode("utf-8")


class CollectorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection per session
    server_version = "analytics-core-collector"
    disable_nagle_algorithm = True  # answers must leave at once, not wait for the next segment
    # Buffer what a request writes and send it in one go when the request is done (http.server
    # flushes wfile after each request): separate writes for the headers and the body cost a
    # second send and wake the client twice, about a tenth of a batch request's time.
    wbufsize = 64 * 1024
    server: "CollectorServer"

    # -- plumbing --------------------------------------------------------------------------

    def setup(self) -> None:
        self.timeout = self.server.request_timeout
        super().setup()
        self.server.track_connection(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track_connection(self.connection, False)

    def handle_expect_100(self) -> bool:
        """Send ``100 Continue`` now: the client waits for it before it sends the body."""
        answered = super().handle_expect_100()
        self.wfile.flush()
        return answered

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None):
        """Answer protocol errors found by http.server itself in JSON, like every other error."""
        self.close_connection = True  # the request's framing is unknown after a parse error
        # http.server takes a garbage request line for HTTP/0.9 and would send a bare body;
        # nobody speaks 0.9 any more, so answer with a real status line.
        self.request_version = self.protocol_version
        text = message or self.responses.get(code, ("error",))[0]
        with contextlib.suppress(OSError):
            self._send_json(
                code, {"code": "bad-request" if code == 400 else "error", "message": text}
            )

    def parse_request(self) -> bool:
        """Parse the request line and headers with ``http.server``'s rules and answers.

        Only the header parser differs (:mod:`.http11` instead of the ``email`` package), which
        takes a tenth of the time. Returns False when the request was answered (an error) or
        there is nothing to answer.
        """
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = version_number(version)
            if number is None:
                self.send_error(400, f"Bad request version ({version!r})")
                return False
            if number >= (1, 1):  # this server speaks HTTP/1.1: keep-alive by default
                self.close_connection = False
            if number >= (2, 0):
                self.send_error(505, f"Invalid HTTP version ({version[5:]})")
                return False
            self.request_version = version
        if len(words) == 1 or len(words) > 3:
            self.send_error(400, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[0], words[1]
        if len(words) == 2:  # HTTP/0.9: one GET, no headers, then the connection closes
            self.close_connection = True
            if command != "GET":
                self.send_error(400, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        if path.startswith("//"):  # never let '//host' be read as a scheme-relative URL
            path = "/" + path.lstrip("/")
        self.command, self.path = command, path
        try:
            self.headers = read_headers(self.rfile)  # type: ignore[assignment]
        except HeadError as error:
            self.send_error(error.status, error.message)
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        expect = (self.headers.get("Expect") or "").lower()
        if expect == "100-continue" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _send_json(self, status: int, payload: Any, headers: Optional[Dict[str, str]] = None):
        self._send_body(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_body(
        self,
        status: int,
        body: bytes,
        headers: Optional[Dict[str, str]] = None,
        content_type: str = "application/json",
    ):
        """Write the status line, headers and JSON ``body`` as one buffer.

        The same head ``send_response`` + ``send_header`` build (Server, Date, Content-Type,
        Content-Length, extra headers, Connection: close when closing), in one string instead
        of a dozen encoded pieces.
        """
        if self.server.verbose:
            self.log_request(status)
        if self.request_version == "HTTP/0.9":  # no status line and no headers in HTTP/0.9
            self.wfile.write(body)
            return
        reason = self.responses[status][0] if status in self.responses else ""
        head = (
            f"{self.protocol_version} {status} {reason}\r\n"
            f"Server: {self.server_version}\r\nDate: {http_date()}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        )
        if headers:
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write((head + "\r\n").encode("latin-1") + body)

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except RequestError as error:
            self._send_json(error.status, error.to_json())
        except OSError:
            # The peer went away or timed out mid-request: nobody is left to answer.
            self.close_connection = True
        except Exception as exc:  # a bug must cost one request, never the server
            self.close_connection = True
            if self.server.verbose:
                self.log_error("internal error: %r", exc)
            with contextlib.suppress(OSError):
                self._send_json(500, {"code": "internal-error", "message": repr(exc)})

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    # -- reading the body ------------------------------------------------------------------

    def _read_body(self, limit: int = MAX_BODY_BYTES) -> bytes:
        """Read the request body, never more than ``limit + 1`` bytes of it."""
        transfer = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        if transfer and transfer != "identity":
            if transfer != "chunked":
                self.close_connection = True
                raise bad_request("unsupported-transfer-encoding", f"{transfer!r} not supported")
            return self._read_chunked(limit)
        lengths = set(self.headers.get_all("Content-Length") or [])
        if not lengths:
            return b""
        try:
            if len(lengths) != 1:
                raise ValueError("conflicting Content-Length headers")
            length = int(lengths.pop().strip())
            if length < 0:
                raise ValueError("negative Content-Length")
        except ValueError as exc:
            self.close_connection = True  # without a length we cannot find the next request
            raise bad_request("invalid-content-length", str(exc)) from exc
        if length > limit:
            # Not reading the body means this connection cannot carry another request.
            self.close_connection = True
            raise body_too_large(limit)
        body = self._read_exactly(length)
        return body

    def _read_exactly(self, length: int) -> bytes:
        try:
            body = self.rfile.read(length)
        except socket.timeout as exc:
            self.close_connection = True
            raise bad_request("incomplete-body", "timed out reading the body") from exc
        if len(body) < length:
            self.close_connection = True
            raise bad_request("incomplete-body", f"expected {length} bytes, got {len(body)}")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: List[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError
            except ValueError as exc:
                self.close_connection = True
                raise bad_request("invalid-chunked-body", "bad chunk size line") from exc
            if size == 0:
                break
            total += size
            if total > limit:
                self.close_connection = True
                raise body_too_large(limit)
            parts.append(self._read_exactly(size))
            self.rfile.readline(_MAX_LINE)
        # Trailer fields, if any, end at an empty line.
        for _ in range(100):
            if self.rfile.readline(_MAX_LINE) in (b"\r\n", b"\n", b""):
                break
        return b"".join(parts)

    # -- routes ----------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        kind = _TRACKING_PATHS.get(path)
        if kind is not None:
            self._expect(method, "POST")
            self._track(kind)
            return
        # Other routes take no body, but it must still be drained to keep the connection usable.
        body = self._read_body()
        if path == "/v1/events":
            self._expect(method, "GET", "DELETE")
            if method == "DELETE":
                self.server.store.clear()
                self._send_json(200, {"success": True})
            else:
                self._send_json(200, self.server.store.events(**_event_query(url.query)))
        elif path == "/v1/stats":
            self._expect(method, "GET")
            self._send_json(200, self.server.store.stats())
        elif path == "/_faults" and self.server.faults is not None:
            self._expect(method, "GET", "POST", "DELETE")
            self._faults(method, body)
        elif path == "/":
            self._expect(method, "GET")
            if "text/html" in self.headers.get("Accept", ""):
                # A browser: the debugger page (which reads /v1/events itself).
                page = DEBUGGER_PAGE.encode("utf-8")
                self._send_body(200, page, content_type="text/html; charset=utf-8")
            else:
                self._send_json(200, {"service": "analytics-core collector", "ok": True})
        else:
            raise RequestError(404, "not-found", f"no route for {path}")

    def _expect(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            # An unread body would be parsed as the next request line.
            self.close_connection = True
            raise RequestError(405, "method-not-allowed", f"use {' or '.join(allowed)}")

    def _faults(self, method: str, body: bytes) -> None:
        plan = self.server.faults
        assert plan is not None
        if method == "POST":
            try:
                items = json.loads(body)
            except ValueError as exc:
                raise bad_request("invalid-json", f"the body is not valid JSON: {exc}") from exc
            self._send_json(200, plan.replace(items))
        elif method == "DELETE":
            plan.clear()
            self._send_json(200, [])
        else:
            self._send_json(200, plan.remaining())

    def _track(self, kind: str) -> None:
        store = self.server.store
        fault: Optional[Fault] = None
        try:
            raw = self._read_body()
            if self.server.faults is not None:
                fault = self.server.faults.take()
            if fault is not None and not fault.stores:
                store.count_request()
                self._answer_fault(fault, {"code": "fault-injected", "message": "planned fault"})
                return
            with self.server.work_lock:  # see CollectorServer.work_lock
                body = decode_body(raw, self.headers.get("Content-Encoding"))
                header_key = write_key_from_authorization(self.headers.get("Authorization"))
                body_key, messages = parse_tracking_body(body, kind)
                write_key = header_key or body_key
                if not write_key:
                    raise bad_request(
                        "missing-write-key", "send the write key as Basic auth or as 'writeKey'"
                    )
                if self.server.write_key is not None and write_key != self.server.write_key:
                    raise RequestError(401, "invalid-write-key", "the write key is not accepted")
                rows = validate_messages(messages)
                store.add(write_key, rows)
        except RequestError as error:
            store.count_request(rejected=True)
            if fault is not None:
                time.sleep(fault.delay)
            self._send_json(error.status, error.to_json())
            return
        store.count_request()
        if fault is not None:
            self._answer_fault(fault, {"success": True})
        else:
            self._send_body(200, _SUCCESS)
            # Send the answer now, while this frame still holds the request's decoded messages:
            # freeing those thousands of objects takes a tenth of the request, and the client
            # need not wait for it (http.server would flush only after this method returned).
            self.wfile.flush()

    def _answer_fault(self, fault: Fault, payload: Dict[str, Any]) -> None:
        # The sleep comes after storing, so a client that times out and resends makes a duplicate.
        time.sleep(fault.delay)
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        self._send_json(fault.status, payload, headers)


def _event_query(query: str) -> Dict[str, Any]:
    """Turn ``/v1/events`` query parameters into :meth:`EventStore.events` keyword arguments."""
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    allowed = set(FILTER_COLUMNS) | set(_QUERY_INTS) | {"order"}
    unknown = set(params) - allowed
    if unknown:
        raise bad_request("invalid-query", f"unknown parameter(s): {', '.join(sorted(unknown))}")
    result: Dict[str, Any] = dict(params)
    for name in _QUERY_INTS:
        if name in params:
            try:
                result[name] = int(params[name])
            except ValueError as exc:
                raise bad_request("invalid-query", f"{name} must be an integer") from exc
    if result.get("order", "desc") not in ("asc", "desc"):
        raise bad_request("invalid-query", "order must be 'asc' or 'desc'")
    return result
