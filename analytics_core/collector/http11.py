"""HTTP/1.1 for the collector: the request head, the body's framing, and time bounds per request.

``http.server`` parses header fields with ``email.parser``, which cost about 85 µs of every
request here (a tenth of a small one), for features HTTP does not use (MIME defects, policies).
This module reads the same fields with one regular-expression pass over the whole section, and
holds the framing rules of RFC 9112 that ``http.server`` leaves to its handlers:

- no obsolete line folding (section 5.2), and a bounded header section (count and bytes);
- a body is framed by exactly one of ``Content-Length`` (digits only) or ``Transfer-Encoding:
  chunked`` (section 6.3); anything that could be read two ways is refused, since a proxy in
  front might read it the other way (request smuggling);
- chunk sizes are hex digits only, each chunk's data ends with CRLF, trailers are bounded;
- :class:`ConnectionReader` bounds the time of a whole request, not of each read.

A well-kept parser (h11) does the same, but it is pure Python with an event per step: it took
about 90 µs of CPU to read a small request and frame its answer, against about 10 µs for this
module and http.server, where the whole small-batch request costs 150-190 µs. It would also
have been the collector's first dependency outside the stdlib.
"""

import contextlib
import email.utils
import io
import re
import socket
import threading
import time
from typing import BinaryIO, Iterator, List, Optional, Tuple

__all__ = [
    "CHUNKED",
    "ConnectionReader",
    "HeadError",
    "RequestHeaders",
    "body_framing",
    "chunk_size",
    "http_date",
    "read_headers",
    "read_trailers",
    "version_number",
]

MAX_LINE = 65536
"""Longest header line accepted (``http.client``'s limit)."""
MAX_HEADERS = 100
"""Most header fields accepted in one request (``http.client``'s limit)."""
MAX_HEAD_BYTES = 65536
"""Most bytes in the whole header section (the request line not included)."""
MAX_TRAILERS = 100
"""Most trailer fields after a chunked body; they are read and dropped."""
MAX_TRAILER_BYTES = 8192
"""Most bytes in the trailer section. Nobody sends a tracking request trailers; the bound
only has to keep a client from streaming endless ones."""
MAX_LENGTH_DIGITS = 19
"""Longest ``Content-Length`` accepted: 19 digits hold any 63-bit length, far above any body
the collector takes (those get a 400 for their size, not for their syntax)."""
MAX_CHUNK_LINE = 4096
"""Longest chunk-size line (the size and any chunk extensions)."""
MAX_CHUNK_SIZE_DIGITS = 16
"""Most hex digits in a chunk size (16: 64 bits)."""

CHUNKED = -1
"""What :func:`body_framing` returns for a chunked body (a length is never negative)."""

_BLANK = (b"\r\n", b"\n")
_WHITESPACE = (" ", "\t")
# field-line = field-name ":" OWS field-value OWS (RFC 9112 section 5). The name is a token;
# the value holds no control characters but HTAB, so a bare CR, a NUL or an LF inside it (which
# other parsers might take for a line end) is refused. A single LF may end the line (2.2).
_FIELD = r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n"
_FIELD_LINE = re.compile(_FIELD)
# A whole section in one C call: each match starts a line (^ in MULTILINE mode) and ends at its
# newline, so the section is all field lines exactly when there are as many matches as lines.
_FIELD_LINES = re.compile("^" + _FIELD, re.MULTILINE)
# chunk-size [ chunk-ext ] CRLF (RFC 9112 section 7.1); extensions (whitespace is allowed only
# before their ";") are skipped but may hold no control characters. ``int(x, 16)`` alone would
# take "0x1f", "+1f", "1_f" and " 1f".
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,%d})(?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?\r\n" % MAX_CHUNK_SIZE_DIGITS
)


class HeadError(Exception):
    """A request whose head or framing cannot be accepted.

    ``status`` is the answer (400, 408, 431 or 501), ``code`` and ``message`` its JSON body.
    The connection must be closed after it: where the next request starts is unknown.
    """

    def __init__(self, status: int, message: str, code: str = "bad-request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class RequestHeaders:
    """Header fields in the order sent, looked up case-insensitively.

    Offers the part of ``email.message.Message`` that request handlers use: ``get`` (the first
    field of that name), ``get_all``, ``in``, ``[name]``, iteration over names and ``items``.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: List[Tuple[str, str, str]]) -> None:
        self._fields = fields  # (lower-case name, name as sent, value)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of the first field called ``name``, or ``default``."""
        key = name.lower()
        for lower, _, value in self._fields:
            if lower == key:
                return value
        return default

    def get_all(self, name: str, failobj: Optional[List[str]] = None) -> Optional[List[str]]:
        """Every value of the fields called ``name``, in order; ``failobj`` if there is none."""
        key = name.lower()
        values = [value for lower, _, value in self._fields if lower == key]
        return values or failobj

    def items(self) -> List[Tuple[str, str]]:
        """``(name, value)`` pairs as sent."""
        return [(name, value) for _, name, value in self._fields]

    def __getitem__(self, name: str) -> Optional[str]:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([name for _, name, _ in self._fields])

    def __len__(self) -> int:
        return len(self._fields)

    def __str__(self) -> str:
        return "".join(f"{name}: {value}\r\n" for _, name, value in self._fields) + "\r\n"


# -- the header and trailer sections ---------------------------------------------------------


def read_headers(rfile: BinaryIO) -> RequestHeaders:
    """Read the header section, up to the blank line that ends it.

    Raises :class:`HeadError`: 431 for a line over :data:`MAX_LINE` bytes, more than
    :data:`MAX_HEADERS` fields or more than :data:`MAX_HEAD_BYTES` in all; 400 for a line that
    is not ``name: value``, a folded line, or a stream that ends before the blank line.
    """
    fields = _read_fields(rfile, MAX_HEADERS, MAX_HEAD_BYTES, "header")
    return RequestHeaders(fields)


def read_trailers(rfile: BinaryIO) -> None:
    """Read and drop the trailer section after a chunked body (RFC 9112 section 7.1.2).

    Trailers are never merged into the headers (RFC 9110 section 6.5.1): the collector uses
    none. Raises :class:`HeadError` as :func:`read_headers` does, with the trailers' limits.
    """
    _read_fields(rfile, MAX_TRAILERS, MAX_TRAILER_BYTES, "trailer")


def _read_fields(rfile: BinaryIO, max_fields: int, max_bytes: int, kind: str):
    """The ``(lower name, name, value)`` of each field line up to a blank line."""
    text = _buffered_section(rfile, max_bytes)
    if text is None:
        text = _read_lines(rfile, max_fields, max_bytes, kind)
    pairs = _FIELD_LINES.findall(text)
    if len(pairs) != text.count("\n"):
        raise _bad_line(text, kind, max_fields)
    if len(pairs) > max_fields:
        raise HeadError(431, f"more than {max_fields} {kind} fields", f"{kind}s-too-large")
    return [(name.lower(), name, value.rstrip(" \t")) for name, value in pairs]


def _buffered_section(rfile: BinaryIO, max_bytes: int) -> Optional[str]:
    """The section's lines when all of it is already buffered (the usual case), else None.

    One read and one decode instead of a readline per field: this is most of what parsing a
    head costs.
    """
    peek = getattr(rfile, "peek", None)
    if peek is None:
        return None
    data = peek(1)
    if data.startswith(b"\r\n"):  # no fields at all
        rfile.read(2)
        return ""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end + 4 > max_bytes:
        return None
    return rfile.read(end + 4)[:-2].decode("iso-8859-1")


def _read_lines(rfile: BinaryIO, max_fields: int, max_bytes: int, kind: str) -> str:
    """The section's lines read one by one, each bound checked as soon as it is read."""
    too_large = f"{kind}s-too-large"
    lines: List[str] = []
    budget = max_bytes
    while True:
        raw = rfile.readline(min(MAX_LINE, budget) + 1)
        if len(raw) > MAX_LINE:
            raise HeadError(431, f"a {kind} line is over {MAX_LINE} bytes", too_large)
        budget -= len(raw)
        if budget < 0:
            raise HeadError(431, f"the {kind} section is over {max_bytes} bytes", too_large)
        if raw in _BLANK:
            return "".join(lines)
        if not raw:
            code = "bad-request" if kind == "header" else "invalid-chunked-body"
            raise HeadError(400, f"the request ends inside its {kind} section", code)
        if len(lines) >= max_fields:
            raise HeadError(431, f"more than {max_fields} {kind} fields", too_large)
        line = raw.decode("iso-8859-1")
        if line[0] in _WHITESPACE:
            raise _bad_line(line, kind, max_fields)  # at once: folded lines must not pile up
        lines.append(line)


def _bad_line(text: str, kind: str, max_fields: int) -> HeadError:
    """The error for the first line of ``text`` that is not a field line: a 400, or a 431 when
    ``max_fields`` lines came before it (as when the lines are read one at a time)."""
    code = "bad-request" if kind == "header" else "invalid-chunked-body"
    for index, line in enumerate(text.split("\n")):
        if index >= max_fields:
            return HeadError(431, f"more than {max_fields} {kind} fields", f"{kind}s-too-large")
        if line[:1] in _WHITESPACE:
            # RFC 9112 section 5.2 lets a server refuse obsolete line folding with a 400.
            # Joining the lines instead cost a copy of the whole value per line and let
            # folded lines escape the field count.
            message = f"obsolete line folding is not accepted: send each {kind} on one line"
            return HeadError(400, message, code)
        if _FIELD_LINE.fullmatch(line + "\n") is None:
            break
    return HeadError(400, f"a {kind} line is not 'name: value'", code)


# -- the body's framing ----------------------------------------------------------------------


def body_framing(headers: RequestHeaders, http10: bool = False) -> int:
    """How the body is framed (RFC 9112 section 6.3): its length, or :data:`CHUNKED`.

    No ``Content-Length`` and no ``Transfer-Encoding`` means no body. Raises
    :class:`HeadError` (the connection must then close) when the framing is not exactly one
    of the two: both at once, a transfer coding other than ``chunked`` alone, or a length
    that is not plain digits.
    """
    codings: List[str] = []
    lengths: List[str] = []
    for lower, _, value in headers._fields:  # one pass: this runs for every request
        if lower == "content-length":
            lengths.append(value)
        elif lower == "transfer-encoding":
            codings.append(value)
    if codings:
        if lengths:
            # Section 6.1: a request with both "ought to be handled as an error" (smuggling).
            raise HeadError(
                400,
                "send Content-Length or Transfer-Encoding, not both",
                "conflicting-framing",
            )
        if http10:
            # Section 6.1: HTTP/1.0 has no transfer codings, so such framing is faulty.
            raise HeadError(
                400, "HTTP/1.0 requests cannot use Transfer-Encoding", "invalid-transfer-encoding"
            )
        return _transfer_coding(codings)
    if not lengths:
        return 0
    return _content_length(lengths)


def _transfer_coding(values: List[str]) -> int:
    # Every field and every comma-separated element counts (RFC 9112 section 6.1); empty
    # elements are ignored (RFC 9110 section 5.6.1).
    codings = [part.strip().lower() for value in values for part in value.split(",")]
    codings = [coding for coding in codings if coding]
    if not codings or codings[-1] != "chunked":
        # Section 6.3 point 4: without chunked last, the length cannot be known: 400 and close.
        raise HeadError(400, "Transfer-Encoding must end with chunked", "invalid-transfer-encoding")
    if len(codings) > 1:
        if "chunked" in codings[:-1]:
            raise HeadError(400, "chunked may be applied only once", "invalid-transfer-encoding")
        # Section 6.1: a coding the server does not implement gets a 501.
        raise HeadError(
            501,
            "only the chunked transfer coding is supported (use Content-Encoding: gzip)",
            "unsupported-transfer-encoding",
        )
    return CHUNKED


def _content_length(values: List[str]) -> int:
    # RFC 9112 section 6.3 point 5: repeated fields, or a list, are one length only if every
    # element is the same valid number. int() alone would take "+5", "1_0" and " 5".
    found = {part.strip() for value in values for part in value.split(",")}
    if len(found) != 1:
        raise HeadError(400, "conflicting Content-Length values", "invalid-content-length")
    (text,) = found
    if not (text.isascii() and text.isdigit()):
        raise HeadError(400, "Content-Length must be digits only", "invalid-content-length")
    if len(text) > MAX_LENGTH_DIGITS:
        raise HeadError(
            400,
            f"Content-Length has more than {MAX_LENGTH_DIGITS} digits",
            "invalid-content-length",
        )
    return int(text)


def chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (RFC 9112 section 7.1), extensions skipped.

    The line must be read with a limit of :data:`MAX_CHUNK_LINE` + 1 and end with CRLF; the
    size is 1 to :data:`MAX_CHUNK_SIZE_DIGITS` hex digits, nothing else.
    """
    match = _CHUNK_LINE.fullmatch(line)
    if match is None:
        raise HeadError(400, "a chunk-size line is not valid", "invalid-chunked-body")
    return int(match.group(1), 16)


# -- time ------------------------------------------------------------------------------------


class ConnectionReader(io.RawIOBase):
    """The raw stream under a handler's ``rfile``: it times whole requests, not single reads.

    While idle (between requests) a read waits up to ``idle_timeout`` seconds for the next
    request. From the read that brings a request's first byte until :meth:`end_request` (its
    body read), each read waits only for what is left of ``deadline`` seconds, so a client
    trickling a byte at a time cannot hold the connection longer than that. A read past the
    time raises ``socket.timeout``.

    The server may :meth:`evict` a connection that waits idle, to make room for a new one;
    ``lock`` (the server's) orders that against a request starting.
    """

    def __init__(
        self,
        sock: socket.socket,
        idle_timeout: Optional[float],
        deadline: float,
        lock: threading.Lock,
    ) -> None:
        super().__init__()
        self._sock = sock
        self._idle_timeout = idle_timeout
        self._deadline = deadline
        self._lock = lock
        self._ends_at: Optional[float] = None  # monotonic; None while idle
        self._shortened = False  # the socket's timeout is not idle_timeout now
        self._waiting = False  # blocked in a read for the next request
        self.evicted = False
        self.idle_since = time.monotonic()
        sock.settimeout(idle_timeout)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        """Receive into ``buffer``, waiting no longer than the request has left."""
        if self._ends_at is None:
            return self._read_first(buffer)
        left = self._ends_at - time.monotonic()
        if left <= 0:
            # Answers (a 408) may still be written; only reading is over.
            self._sock.settimeout(self._idle_timeout)
            raise socket.timeout(f"the request took more than {self._deadline:g} s")
        self._sock.settimeout(left)
        self._shortened = True
        return self._sock.recv_into(buffer)

    def _read_first(self, buffer) -> int:  # type: ignore[no-untyped-def]
        self._waiting = True  # set without the lock: evict() decides under it, after the fact
        try:
            received = self._sock.recv_into(buffer)
        finally:
            with self._lock:
                self._waiting = False
                evicted = self.evicted
        if evicted:
            return 0  # the server made room with this connection: end it, unread
        if received:
            self._ends_at = time.monotonic() + self._deadline
        return received

    def end_request(self) -> None:
        """The request is read: idle again, and its answer gets ``idle_timeout`` to be sent."""
        self._ends_at = None
        if self._shortened:  # a request that came in one read never changed it: no syscall
            self._shortened = False
            self._sock.settimeout(self._idle_timeout)
        self.idle_since = time.monotonic()

    def evictable(self) -> bool:
        """True while the connection waits for a request with nothing read of it.

        The caller holds ``lock``."""
        return self._waiting and not self.evicted

    def evict(self) -> None:
        """End an idle connection: its pending read returns end-of-stream. Hold ``lock``."""
        self.evicted = True
        with contextlib.suppress(OSError):  # already gone
            self._sock.shutdown(socket.SHUT_RDWR)


# -- small things ----------------------------------------------------------------------------


def version_number(version: str) -> Optional[Tuple[int, int]]:
    """``(major, minor)`` of an ``HTTP/x.y`` token, or None when it is not one.

    The rules are ``http.server``'s (RFC 2145): exactly one dot, digits only, at most ten
    digits per number, leading zeros ignored; ASCII digits only (``int()`` would also read
    fullwidth and other non-ASCII digits).
    """
    if not version.startswith("HTTP/"):
        return None
    parts = version[5:].split(".")
    if len(parts) != 2:
        return None
    major, minor = parts
    digits = major + minor
    if not (digits.isascii() and major.isdigit() and minor.isdigit()):
        return None
    if len(major) > 10 or len(minor) > 10:
        return None
    return int(major), int(minor)


_date_cache: Tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header value for now; formatted once per second, not once per answer."""
    global _date_cache
    now = time.time()
    second, text = _date_cache
    if int(now) != second:
        text = email.utils.formatdate(now, usegmt=True)
        _date_cache = (int(now), text)  # one tuple: threads never see half an update
    return text
