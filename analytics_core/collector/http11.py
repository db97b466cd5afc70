"""The HTTP/1.1 request head, parsed without the ``email`` package.

``http.server`` parses header fields with ``email.parser``, which cost about 85 µs of every
request here (a tenth of a small one), for features HTTP does not use (MIME defects, policies).
This module reads the same fields with a few C-level string calls per line and applies
``http.server``'s limits and request-line rules, so the handler answers exactly as before.
"""

import email.utils
import time
from typing import BinaryIO, Iterator, List, Optional, Tuple

__all__ = ["HeadError", "RequestHeaders", "http_date", "read_headers", "version_number"]

MAX_LINE = 65536
"""Longest header line accepted (``http.client``'s limit)."""
MAX_HEADERS = 100
"""Most header fields accepted in one request (``http.client``'s limit)."""

_BLANK = (b"\r\n", b"\n", b"")
_WHITESPACE = (" ", "\t")


class HeadError(Exception):
    """A request head that cannot be accepted; ``status`` is the answer (431 or 400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def read_headers(rfile: BinaryIO) -> RequestHeaders:
    """Read header lines up to the blank line that ends them (or the end of the stream).

    Raises :class:`HeadError`: 431 for a line over :data:`MAX_LINE` bytes or more than
    :data:`MAX_HEADERS` fields, 400 for a line that is not ``name: value``.
    """
    fields: List[Tuple[str, str, str]] = []
    while True:
        raw = rfile.readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise HeadError(431, "Line too long")
        if raw in _BLANK:
            return RequestHeaders(fields)
        if len(fields) >= MAX_HEADERS:
            raise HeadError(431, "Too many headers")
        line = raw.decode("iso-8859-1")
        if line[0] in _WHITESPACE and fields:
            # An obsolete folded continuation line: part of the previous field's value.
            lower, name, value = fields[-1]
            fields[-1] = (lower, name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise HeadError(400, f"Bad header line ({line.rstrip()!r})")
        fields.append((name.lower(), name, value.strip()))


def version_number(version: str) -> Optional[Tuple[int, int]]:
    """``(major, minor)`` of an ``HTTP/x.y`` token, or None when it is not one.

    The rules are ``http.server``'s (RFC 2145): exactly one dot, digits only, at most ten
    digits per number, leading zeros ignored.
    """
    if not version.startswith("HTTP/"):
        return None
    parts = version[5:].split(".")
    if len(parts) != 2:
        return None
    major, minor = parts
    if not (major.isdigit() and minor.isdigit()) or len(major) > 10 or len(minor) > 10:
        return None
    try:
        return int(major), int(minor)
    except ValueError:  # isdigit() is true for digits int() refuses, such as superscripts
        return None


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
