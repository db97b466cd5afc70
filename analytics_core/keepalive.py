"""A kept-alive HTTP/1.1 connection on the stdlib's ``socket`` and ``ssl``, for posting batches.

About 50 µs of CPU per POST where ``requests`` (urllib3 and http.client underneath) spends about
1.2 ms. It speaks only what the transport needs: one origin, requests with a body, answers with
Content-Length, chunked or read-to-close bodies. Network failures are raised as ``requests``
exceptions, so ``on_error`` handlers see the same types whichever session posted.

An answer's body is read up to :data:`MAX_ANSWER_BYTES` only: the tracking API answers a few
bytes, and whatever answers more (a captive portal, a misconfigured host, a hostile peer) must
not be able to make the application hold it in memory.
"""

import contextlib
import functools
import json
import os
import re
import socket
import ssl
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union
from urllib.parse import urlsplit

import requests

from .transport import MAX_ANSWER_BYTES  # defined there so that transport need not import this

_RECV_SIZE = 65536
_MAX_HEAD = 65536  # http.client's limit for one line; a whole head longer than this is hostile
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class ResponseTooLarge(requests.exceptions.ConnectionError):
    """The answer's body was over :data:`MAX_ANSWER_BYTES`; the rest of it was not read.

    A ``ConnectionError`` so that it is retried as a network failure is: whatever sent it (a
    proxy's or load balancer's error page, a captive portal) is no proof the batch arrived, and
    each try costs at most the limit. ``status`` is the answer's status code.
    """

    def __init__(self, *args: Any, status: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status = status


class _ConnectionClosed(ConnectionError):
    """The server closed the connection (a read returned no bytes)."""


class _ProtocolError(ConnectionError):
    """The answer did not follow HTTP/1.1; the connection cannot be used again."""


class _StaleConnection(Exception):
    """A reused connection failed before any byte of the answer came back."""


# What a server's close of an idle kept-alive connection looks like to the next request.
_CLOSED_ERRORS = (
    _ConnectionClosed,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class PreparedPost:
    """A request as a session sends it: the fields of ``requests.PreparedRequest`` used here."""

    __slots__ = ("method", "url", "headers", "body")

    def __init__(self, url: str, headers: Dict[str, str], body: bytes, method: str = "POST"):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body


class ResponseHeaders(dict):
    """Response header fields by lower-case name; look-ups ignore case, and repeated fields
    are joined with ", " (as requests shows them)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Response:
    """A complete answer: the part of ``requests.Response`` the transport reads."""

    __slots__ = ("status_code", "reason", "headers", "content")

    def __init__(self, status_code: int, reason: str, headers: ResponseHeaders, content: bytes):
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The body as text: the Content-Type's charset, else requests' defaults (ISO-8859-1
        for ``text/*``, UTF-8 otherwise)."""
        content_type = self.headers.get("content-type", "")
        kind, _, params = content_type.partition(";")
        charset = "iso-8859-1" if kind.strip().lower().startswith("text/") else "utf-8"
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip("\"'")
        try:
            return self.content.decode(charset, "replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body decoded as JSON; raises ``ValueError`` when it is not JSON."""
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


@functools.lru_cache(maxsize=32)
def origin_and_target(url: str) -> "Optional[Tuple[Tuple[str, str, int], str, str]]":
    """``((scheme, host, port), Host header, request target)`` for an http(s) URL, or None when
    the keep-alive session cannot send to it (other schemes, credentials in the URL, no host)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    try:
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname.encode("idna").decode("ascii")  # as requests sends a Unicode host
    except (ValueError, UnicodeError):
        return None
    host_header = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        host_header += f":{port}"
    target = requests.utils.requote_uri(parts.path or "/")
    if parts.query:
        target += "?" + parts.query
    return (scheme, host, port), host_header, target


def _timeouts(timeout: Any) -> "Tuple[Optional[float], Optional[float]]":
    """(connect, read) seconds from a number, None, or a requests-style pair."""
    if isinstance(timeout, tuple):
        return timeout[0], timeout[1]
    return timeout, timeout


def _ssl_context(verify: Union[bool, str]) -> ssl.SSLContext:
    """A TLS context trusting what requests would trust for ``verify``.

    ``verify`` is requests' setting for the URL: a CA bundle (file or directory) named by
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, or True. For True, OpenSSL's default locations are
    used when SSL_CERT_FILE or SSL_CERT_DIR points them somewhere, else certifi's bundle, which
    is what requests uses. False (never set by the transport) turns verification off.
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)


def _network_error(exc: BaseException, where: str, connecting: bool) -> requests.RequestException:
    """The requests exception requests would raise for ``exc`` (the original is its cause)."""
    text = f"{where}: {exc or type(exc).__name__}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        if connecting:
            return requests.exceptions.ConnectTimeout(text)
        return requests.exceptions.ReadTimeout(text)
    if isinstance(exc, ssl.SSLError):
        return requests.exceptions.SSLError(text)
    return requests.exceptions.ConnectionError(text)


class _Pending:
    """A request written by :meth:`KeepAliveSession.begin`, kept until its answer is read (and
    to write it again on a new connection if the old one turns out to have been closed)."""

    __slots__ = ("method", "data", "where", "connect_timeout", "read_timeout", "reused")

    def __init__(self, method: str, data: bytes, where: str, timeout: Any) -> None:
        self.method = method
        self.data = data
        self.where = where
        self.connect_timeout, self.read_timeout = _timeouts(timeout)
        self.reused = False  # written on a connection an earlier request had used


class KeepAliveSession:
    """One kept-alive HTTP/1.1 connection to one origin, used by one thread at a time.

    It does what a tracking API needs and no more. A request's head and body leave in one write,
    so Nagle's algorithm and delayed ACKs never hold the body back. The answer is read in as few
    system calls as it arrives in: each hands the GIL away, and getting it back can take a
    whole switch interval (5 ms) while the application's threads run. Answers are framed by
    Content-Length, chunked coding or the end of the connection; 1xx answers are skipped. When
    the server closed the connection while it was idle, the request goes again, once, on a new
    connection: it never reached the server, so this is not a retry.
    """

    def __init__(self, url: str, verify: Union[bool, str] = True) -> None:
        target = origin_and_target(url)
        if target is None:
            raise ValueError("the keep-alive session sends to http and https URLs only")
        self.origin = target[0]
        self.verify = verify
        self.connections = 0
        """Connections opened so far (a reconnect after the server closed one counts)."""
        self._host_header = target[1]
        self._sock: Optional[socket.socket] = None
        self._timeout: Optional[float] = None
        self._buffer = bytearray()
        self._context: Optional[ssl.SSLContext] = None
        self._aborted = False
        self.max_answer = MAX_ANSWER_BYTES
        """The most of an answer's body read; a longer one raises :class:`ResponseTooLarge`."""

    def __repr__(self) -> str:
        scheme, host, port = self.origin
        state = "connected" if self._sock is not None else "idle"
        return f"<KeepAliveSession {scheme}://{host}:{port} {state}>"

    def send(self, request: PreparedPost, timeout: Any = None, **kwargs: Any) -> Response:
        """Send ``request`` and read the whole answer; raise a ``requests`` exception when the
        network fails. ``requests.Session.send``'s other arguments are accepted and ignored."""
        return self.finish(self.begin(request, timeout))

    def begin(self, request: PreparedPost, timeout: Any = None) -> "_Pending":
        """Write ``request`` (connecting first when needed); :meth:`finish` reads the answer."""
        found = origin_and_target(request.url)
        if found is None or found[0] != self.origin:
            raise ValueError(f"this session sends to {self.origin}, not to {request.url!r}")
        pending = _Pending(
            request.method,
            self._serialize(request, found[2]),
            f"{request.method} {self.origin[0]}://{self._host_header}{found[2]}",
            timeout,
        )
        with self._errors(pending.where):
            if self._sock is None:
                self._connect(pending)
            else:
                pending.reused = True
            self._write(pending)
        return pending

    def finish(self, pending: "_Pending") -> Response:
        """Read the answer to the request :meth:`begin` wrote."""
        with self._errors(pending.where):
            try:
                return self._read_response(pending.method, pending.reused)
            except _StaleConnection:
                # The server had closed the idle connection before this request reached it,
                # so sending it again on a new connection cannot make a duplicate.
                self.close()
                if self._aborted:  # abort() woke the read: it was not the server's close
                    raise _ConnectionClosed("aborted: the client is shutting down") from None
                self._connect(pending)
                self._write(pending)
                return self._read_response(pending.method, False)

    @contextlib.contextmanager
    def _errors(self, where: str) -> Iterator[None]:
        """Close the connection on any failure, and raise network failures as requests'."""
        try:
            yield
        except requests.RequestException:
            self.close()
            raise
        except OSError as exc:  # socket, TLS and HTTP framing errors alike
            self.close()
            raise _network_error(exc, where, connecting=False) from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def abort(self) -> None:
        """From another thread: end the request in progress now, and refuse new ones.

        The socket is shut down, not closed: a read blocked on it returns at once (a close
        would leave it blocked, and its descriptor could be reused under it), and the thread
        that owns the session closes it as it handles the failure.
        """
        self._aborted = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- the wire ------------------------------------------------------------------------------

    def _serialize(self, request: PreparedPost, target: str) -> bytes:
        body = request.body or b""
        lines = [f"{request.method} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for name, value in request.headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                # A token from an OAuth server must never be able to add header lines.
                raise requests.exceptions.InvalidHeader(f"invalid value for header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        try:
            return "".join(lines).encode("latin-1") + body
        except UnicodeEncodeError as exc:
            raise requests.exceptions.InvalidHeader(f"a header is not latin-1: {exc}") from exc

    def _connect(self, pending: "_Pending") -> None:
        if self._aborted:
            raise _ConnectionClosed("aborted: the client is shutting down")
        scheme, host, port = self.origin
        try:
            sock = socket.create_connection((host, port), pending.connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if scheme == "https":
                    if self._context is None:
                        self._context = _ssl_context(self.verify)
                    sock = self._context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            raise _network_error(exc, pending.where, connecting=True) from exc
        self._sock = sock
        self._timeout = pending.connect_timeout
        self.connections += 1

    def _write(self, pending: "_Pending") -> None:
        sock = self._sock
        assert sock is not None
        if pending.read_timeout != self._timeout:  # a system call: only when it changes
            sock.settimeout(pending.read_timeout)
            self._timeout = pending.read_timeout
        # The server may close the connection while the request goes out, having answered
        # first (a 413 or a 401 before reading the body): the answer is read all the same, as
        # urllib3 does. No answer at all means an idle connection was closed (the request goes
        # once more) or, on a new connection, a network error.
        with contextlib.suppress(*_CLOSED_ERRORS):
            sock.sendall(pending.data)

    def _read_response(self, method: str, may_be_stale: bool) -> Response:
        try:
            version, status, reason, headers = self._read_head()
        except _CLOSED_ERRORS as exc:
            if may_be_stale and not self._buffer:  # not one byte of an answer came back
                raise _StaleConnection() from exc
            raise
        while 100 <= status < 200 and status != 101:  # interim answers: the real one follows
            version, status, reason, headers = self._read_head()
        if status == 408 and may_be_stale:
            # Some servers say "408 Request Timeout" as they close an idle kept-alive
            # connection; read on reuse, that is the idle close, not an answer to this request.
            raise _StaleConnection()
        if status == 101:
            raise _ProtocolError("the server switched protocols without being asked")
        until_close = False
        limit = self.max_answer
        if method == "HEAD" or status in (204, 304):
            content = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            content = self._read_chunked(status, limit)
        elif "content-length" in headers:
            size = _content_length(headers["content-length"])
            if size > limit:  # said up front: not one byte of it is read
                raise self._too_large(status, limit)
            content = self._read_exact(size)
        else:
            content, until_close = self._read_to_close(status, limit), True
        tokens = {token.strip() for token in headers.get("connection", "").lower().split(",")}
        if (
            until_close
            or "close" in tokens
            or (version == "HTTP/1.0" and "keep-alive" not in tokens)
            or self._buffer  # bytes beyond the answer: its framing cannot be trusted
        ):
            self.close()
        return Response(status, reason, headers, content)

    def _receive(self) -> None:
        chunk = self._sock.recv(_RECV_SIZE)  # type: ignore[union-attr]
        if not chunk:
            if self._aborted:
                raise _ConnectionClosed("aborted: the client is shutting down")
            raise _ConnectionClosed("the server closed the connection")
        self._buffer += chunk

    def _read_head(self) -> "Tuple[str, int, str, ResponseHeaders]":
        while True:
            found = _HEAD_END.search(self._buffer)
            if found is not None:
                break
            if len(self._buffer) > _MAX_HEAD:
                raise _ProtocolError("the answer's head is too long")
            self._receive()
        head = bytes(self._buffer[: found.start()])
        del self._buffer[: found.end()]
        lines = head.decode("iso-8859-1").split("\n")
        version, _, rest = lines[0].rstrip("\r").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
            raise _ProtocolError(f"not an HTTP status line: {lines[0][:80]!r}")
        headers = ResponseHeaders()
        last = None
        for line in lines[1:]:
            line = line.rstrip("\r")
            if line[:1] in (" ", "\t") and last is not None:  # an obsolete folded line
                dict.__setitem__(headers, last, f"{headers[last]} {line.strip()}")
                continue
            name, colon, value = line.partition(":")
            if not colon:
                continue  # not a field; http.client skips such lines too
            last = name.strip().lower()
            value = value.strip()
            previous = dict.get(headers, last)
            dict.__setitem__(headers, last, value if previous is None else f"{previous}, {value}")
        return version, int(code), reason.strip(), headers

    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._receive()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _read_line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                return self._read_exact(end + 1)
            if len(self._buffer) > _MAX_HEAD:
                raise _ProtocolError("a line of the answer is too long")
            self._receive()

    def _too_large(self, status: int, limit: int) -> ResponseTooLarge:
        # The rest of the body is still coming: the connection cannot carry another request.
        self.close()
        return ResponseTooLarge(
            f"the answer (HTTP {status}) is over {limit} bytes; the tracking API answers a "
            "few bytes (is the host right?)",
            status=status,
        )

    def _read_chunked(self, status: int, limit: int) -> bytes:
        parts: List[bytes] = []
        total = 0
        while True:
            line = self._read_line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0:
                raise _ProtocolError(f"bad chunk size line {line[:40]!r}")
            if size == 0:
                break
            total += size
            if total > limit:
                raise self._too_large(status, limit)
            parts.append(self._read_exact(size))
            self._read_line()  # the line end after the chunk's data
        while self._read_line().strip():  # trailer fields, up to an empty line
            pass
        return b"".join(parts)

    def _read_to_close(self, status: int, limit: int) -> bytes:
        try:
            while len(self._buffer) <= limit:
                self._receive()
        except _ConnectionClosed:
            pass
        if len(self._buffer) > limit:
            raise self._too_large(status, limit)
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _content_length(value: str) -> int:
    """The body length from a Content-Length field (repeats must agree, as RFC 9110 asks)."""
    lengths = {part.strip() for part in value.split(",")}
    if len(lengths) != 1:
        raise _ProtocolError(f"conflicting Content-Length {value!r}")
    (text,) = lengths
    if not text.isdigit():
        raise _ProtocolError(f"bad Content-Length {value!r}")
    return int(text)
