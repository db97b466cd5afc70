"""One HTTP request to the collector: routing, bounded body reading and JSON responses.

Every request is handled inside one try/except: a hostile client can get a 400, never kill
the server. The Tracking API's rules themselves live in :mod:`.protocol`.
"""

import contextlib
import io
import json
import socket
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple
from urllib.parse import parse_qs, urlsplit

from .access import keys_match
from .debugger_page import PAGE as DEBUGGER_PAGE
from .faults import Fault
from .http11 import (
    CHUNKED,
    MAX_CHUNK_LINE,
    HeadError,
    RequestHeaders,
    body_framing,
    chunk_size,
    http_date,
    read_headers,
    read_trailers,
    version_number,
)
from .protocol import (
    MAX_BODY_BYTES,
    MESSAGE_TYPES,
    RequestError,
    bad_request,
    body_too_large,
    decode_body,
    parse_json,
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
# SQLite integers are 64-bit: a larger limit or after_id would raise OverflowError in the store.
_QUERY_INT_MAX = 2**63 - 1
# A body of many tiny chunks costs a loop turn each: 10,000 is 50 bytes a chunk for 500 KB.
_MAX_CHUNKS = 10_000
# The JSON "code" of errors http.server itself sends (an unknown method, a long request line).
_ERROR_CODES = {
    400: "bad-request",
    408: "request-timeout",
    414: "request-line-too-long",
    431: "headers-too-large",
    501: "not-implemented",
    505: "http-version-not-supported",
}
# The page runs its own inline script and talks to this collector only; no site may frame it
# (a framed page could be clicked into deleting events).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
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
        """``StreamRequestHandler.setup``, reading through the server's ConnectionReader.

        That reader bounds each whole request by ``request_deadline`` (the socket timeout
        alone bounds each read, which a client trickling bytes resets at will) and lets the
        server end this connection while it waits idle, to make room under its cap.
        """
        self.connection = self.request
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self._reader = self.server.connection_reader(self.connection)
        self._body_length = 0
        self.rfile = io.BufferedReader(self._reader)
        self.wfile = self.connection.makefile("wb", self.wbufsize)

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

    def send_error(
        self,
        code: int,
        message: Optional[str] = None,
        explain: Optional[str] = None,
        *,
        error_code: Optional[str] = None,
    ):
        """Answer a request that cannot be read in JSON, ``{code, message}``, and close.

        http.server calls this for what it finds itself (an unknown method, a request line
        over 64 KB); :meth:`parse_request` for the rest, with ``error_code`` for the JSON.
        """
        self.close_connection = True  # the request's framing is unknown after a parse error
        # http.server takes a garbage request line for HTTP/0.9 and would send a bare body;
        # nobody speaks 0.9 any more, so answer with a real status line.
        self.request_version = self.protocol_version
        text = message or self.responses.get(code, ("error",))[0]
        payload = {"code": error_code or _ERROR_CODES.get(code, "error"), "message": text}
        with contextlib.suppress(OSError):
            self._send_json(code, payload)

    def parse_request(self) -> bool:
        """Parse the request line, the headers and the body's framing (RFC 9112).

        The request line follows ``http.server``'s rules; the headers and the framing are
        :mod:`.http11`'s (a tenth of the ``email`` parser's time, and strict where a lenient
        reading lets a request be read two ways). Returns False when the request was answered
        (an error, and the connection then closes) or there is nothing to answer.
        """
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.headers = RequestHeaders([])  # type: ignore[assignment]
        self._body_length = 0
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        number: Optional[Tuple[int, int]] = (0, 9)
        if len(words) >= 3:
            version = words[-1]
            number = version_number(version)
            if number is None:
                self.send_error(400, "the request line's HTTP version is not valid")
                return False
            if number >= (1, 1):  # this server speaks HTTP/1.1: keep-alive by default
                self.close_connection = False
            if number >= (2, 0):
                self.send_error(505, "this server speaks HTTP/1.1")
                return False
            self.request_version = version
        if len(words) == 1 or len(words) > 3:
            self.send_error(400, "the request line is not 'METHOD target HTTP/1.1'")
            return False
        command, path = words[0], words[1]
        if len(words) == 2:  # HTTP/0.9: one GET, no headers, then the connection closes
            self.close_connection = True
            if command != "GET":
                self.send_error(400, "HTTP/0.9 has only GET")
                return False
        if path.startswith("//"):  # never let '//host' be read as a scheme-relative URL
            path = "/" + path.lstrip("/")
        self.command, self.path = command, path
        if len(words) == 2:
            return True  # HTTP/0.9 has no headers: reading some would wait for nothing
        try:
            self.headers = read_headers(self.rfile)  # type: ignore[assignment]
            self._body_length = body_framing(self.headers, http10=number < (1, 1))
        except HeadError as error:
            self.send_error(error.status, error.message, error_code=error.code)
            return False
        except socket.timeout:
            self.send_error(408, _too_late(self.server.request_deadline))
            return False
        tokens = _connection_tokens(self.headers)
        if "close" in tokens:
            self.close_connection = True
        elif "keep-alive" in tokens:
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
            "X-Content-Type-Options: nosniff\r\n"
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
        except Exception:  # a bug must cost one request, never the server
            self.close_connection = True
            # The details are for whoever runs the collector; a client learns nothing of its
            # insides (and would only retry a 5xx anyway).
            if self.server.verbose:
                self.log_error("internal error:\n%s", traceback.format_exc())
            with contextlib.suppress(OSError):
                self._send_json(500, {"code": "internal-error", "message": "internal error"})
        finally:
            self._reader.end_request()  # a route that read no body: idle again from here

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
        """Read the body as :meth:`parse_request` found it framed, never over ``limit`` bytes.

        Errors close the connection: where the next request would start is unknown. Reading
        it all must end within the request's deadline (408 otherwise).
        """
        length, self._body_length = self._body_length, 0  # a second call finds no body
        try:
            if length == CHUNKED:
                body = self._read_chunked(limit)
            elif length > limit:
                self.close_connection = True  # the unread body would be the next request
                raise body_too_large(limit)
            else:
                body = self._read_exactly(length)
        except HeadError as error:
            self.close_connection = True
            raise RequestError(error.status, error.code, error.message) from None
        except socket.timeout:
            self.close_connection = True
            raise RequestError(
                408, "request-timeout", _too_late(self.server.request_deadline)
            ) from None
        self._reader.end_request()
        return body

    def _read_exactly(self, length: int) -> bytes:
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise bad_request("incomplete-body", f"expected {length} bytes, got {len(body)}")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        """The chunked body's data (RFC 9112 section 7.1); its trailers are read and dropped."""
        parts: List[bytes] = []
        total = 0
        for _ in range(_MAX_CHUNKS):
            size = chunk_size(self.rfile.readline(MAX_CHUNK_LINE + 1))
            if size == 0:
                read_trailers(self.rfile)
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise body_too_large(limit)
            parts.append(self._read_exactly(size))
            # Exactly CRLF: skipping "whatever line follows" let junk after a chunk through.
            if self.rfile.read(2) != b"\r\n":
                raise HeadError(400, "chunk data must end with CRLF", "invalid-chunked-body")
        raise HeadError(400, f"more than {_MAX_CHUNKS} chunks", "invalid-chunked-body")

    # -- routes ----------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        self._check_host()
        kind = _TRACKING_PATHS.get(path)
        if kind is not None:
            self._expect(method, "POST")
            self._track(kind)
            return
        # Other routes take no body, but it must still be drained to keep the connection usable.
        body = self._read_body()
        if path == "/v1/events":
            self._expect(method, "GET", "DELETE")
            self._check_key()
            if method == "DELETE":
                self._check_same_site()
                if url.query:  # a filter would suggest a partial delete; this empties it all
                    raise bad_request("invalid-query", "DELETE /v1/events takes no parameters")
                self.server.store.clear()
                self._send_json(200, {"success": True})
            else:
                self._send_json(200, self.server.store.events(**_event_query(url.query)))
        elif path == "/v1/stats":
            self._expect(method, "GET")
            self._check_key()
            self._send_json(200, self.server.store.stats())
        elif path == "/_faults" and self.server.faults is not None:
            self._expect(method, "GET", "POST", "DELETE")
            self._check_key()
            if method != "GET":
                self._check_same_site()
            self._faults(method, body)
        elif path == "/":
            self._expect(method, "GET")
            if "text/html" in self.headers.get("Accept", ""):
                # A browser: the debugger page (which reads /v1/events itself).
                page = DEBUGGER_PAGE.encode("utf-8")
                self._send_body(200, page, _PAGE_HEADERS, content_type="text/html; charset=utf-8")
            else:
                self._send_json(200, {"service": "analytics-core collector", "ok": True})
        else:
            raise RequestError(404, "not-found", f"no route for {path}")

    def _check_host(self) -> None:
        """Answer only to the names the collector listens on (see :mod:`.access`)."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:  # RFC 9112 3.2: which one would the request be for?
            self.close_connection = True
            raise bad_request("invalid-host", "more than one Host field")
        if not self.server.host_policy.allows_host_header(hosts[0] if hosts else None):
            self.close_connection = True  # the body, if any, is left unread
            raise RequestError(
                403,
                "host-not-allowed",
                "this collector does not answer to that Host; start it with --allow-host NAME "
                "to reach it by another name",
            )

    def _check_key(self) -> None:
        """With ``--write-key``, reading or deleting what arrived needs that key too."""
        expected = self.server.write_key
        if expected is None:
            return
        given = write_key_from_authorization(self.headers.get("Authorization"))
        if not keys_match(given, expected):
            raise RequestError(
                401,
                "invalid-write-key",
                "this collector has a write key: send it as Basic auth to read or delete events",
            )

    def _check_same_site(self) -> None:
        """A change other than tracking never comes from another site's page."""
        policy = self.server.host_policy
        origin, fetch_site = self.headers.get("Origin"), self.headers.get("Sec-Fetch-Site")
        if not policy.allows_origin(origin, fetch_site, self.server.server_address[1]):
            raise RequestError(
                403, "cross-site-refused", "a page of another site cannot change this collector"
            )

    def _expect(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            # An unread body would be parsed as the next request line.
            self.close_connection = True
            raise RequestError(405, "method-not-allowed", f"use {' or '.join(allowed)}")

    def _faults(self, method: str, body: bytes) -> None:
        plan = self.server.faults
        assert plan is not None
        if method == "POST":
            self._send_json(200, plan.replace(parse_json(body)))
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
                expected = self.server.write_key
                if expected is not None and not keys_match(write_key, expected):
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
            result[name] = _query_int(name, params[name])
    if result.get("order", "desc") not in ("asc", "desc"):
        raise bad_request("invalid-query", "order must be 'asc' or 'desc'")
    return result


def _query_int(name: str, text: str) -> int:
    """A whole number from 0 to 2**63 - 1, in plain digits (int() would take "+1", "1_0")."""
    digits = text.strip()
    if digits.isascii() and digits.isdigit() and len(digits) <= 19:
        value = int(digits)
        if value <= _QUERY_INT_MAX:
            return value
    raise bad_request("invalid-query", f"{name} must be a whole number from 0 to {_QUERY_INT_MAX}")


def _too_late(seconds: float) -> str:
    """The 408 message."""
    return f"the request was not complete within {seconds:g} s of its first byte"


def _connection_tokens(headers: RequestHeaders) -> Set[str]:
    """The options of every ``Connection`` field, lower-case (it is a list, RFC 9110 7.6.1)."""
    values = headers.get_all("Connection") or []
    return {token.strip().lower() for value in values for token in value.split(",")}
