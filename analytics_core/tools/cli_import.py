"""``analytics-core import FILE``: a historical import, with progress, nothing dropped.

Input: JSON Lines (one Segment message per line, as the HTTP API takes them: ``type``,
``userId``, ``event``, ``properties``, ``timestamp``, ...), ``-`` for standard input, or a CSV
file with a header (the same field names as columns; ``properties``, ``traits``, ``context``
and ``integrations`` as JSON objects, or spread over dotted columns such as ``properties.plan``,
or both as long as they do not give one key two different values).

The client runs with ``on_full="block"``, so reading waits for the uploader instead of dropping.
Every line read ends up in exactly one count of the summary, whatever it holds:

  imported  the message was delivered;
  rejected  it was never sent: not UTF-8, not JSON (NaN and Infinity are not), not a message,
            refused by the client's validation (the field, in a CSV the column, is named),
            32 KB or more encoded, a line longer than 1,048,576 characters, a CSV row with
            more or fewer cells than the header has columns, CSV columns that conflict;
  failed    the API did not accept it (an error answer, or retries exhausted).

Blank lines (only whitespace; in a CSV, only empty or whitespace cells) are skipped and counted
apart. In a CSV a "line" is a record (a quoted cell may span several lines); the header is not.

Rejected and failed lines go to the rejected file as JSON Lines: the message as read plus
``"_error"``, the reason, and ``"_lineNumber"`` (not for failed lines: they are found by their
``messageId``); for a CSV row that gave no message, ``"_row"``, its cells by column; or else
``"_line"``, the text of a line that could not be read. Fix them there and import that file:
``_error`` and ``_lineNumber`` are ignored, a ``_row`` is read as a CSV row again, and an entry
with ``_line`` is rejected again, with its first reason, until it is replaced by the message.
The rejected file is created anew with mode 0600 (an existing one is replaced) and removed
again when nothing went into it.
"""

import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import stat
import sys
import threading
import time
from typing import IO, Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..encoding import nests_deeper_than
from ..errors import ValidationError
from .cli_calls import add_connection_options, client_from

__all__ = ["MAX_LINE_CHARS", "Record", "call_arguments", "main", "read_messages"]

# Wire field -> Client keyword, per call type (the order of the Segment docs).
_FIELDS = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "event": "event",
    "properties": "properties",
    "traits": "traits",
    "name": "name",
    "category": "category",
    "groupId": "group_id",
    "previousId": "previous_id",
    "context": "context",
    "timestamp": "timestamp",
    "integrations": "integrations",
    "messageId": "message_id",
}
_IGNORED = {
    "type",
    "_error",
    "_lineNumber",
    "sentAt",
    "receivedAt",
    "originalTimestamp",
    "version",
    "writeKey",
}
_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_JSON_COLUMNS = ("properties", "traits", "context", "integrations")

MAX_LINE_CHARS = 1 << 20
"""A longer line is rejected without being parsed: a message must encode under 32 KB anyway,
and a file without line breaks must not be read into memory whole."""

_PREVIEW_CHARS = 200  # what the rejected file keeps of an overlong line, to find it by
_SKIP_CHUNK = 1 << 16
# The input is decoded with "surrogateescape": each byte that is not UTF-8 becomes one of these
# code points, which strict UTF-8 decoding can never produce otherwise.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true or false"}


def call_arguments(message: Any) -> Tuple[str, Dict[str, Any]]:
    """The call type and Client keywords of one wire-form message; ValidationError if wrong."""
    if not isinstance(message, dict):
        raise ValidationError(f"a message must be a JSON object, got {_json_type(message)}")
    kind = message.get("type")
    if kind not in _TYPES:
        raise ValidationError(f"type must be one of {', '.join(_TYPES)}, got {kind!r}")
    arguments = {}
    for key, value in message.items():
        if key in _IGNORED or value is None:
            continue
        keyword = _FIELDS.get(key)
        if keyword is None:
            raise ValidationError(f"unknown field {key!r} in a {kind} message")
        arguments[keyword] = value
    return kind, arguments


# -- reading ------------------------------------------------------------------------------------


class Record(NamedTuple):
    """One line of the input (in a CSV, one record), read into a message or not."""

    number: int
    """Its line in the file (a CSV record's first line)."""
    message: Any
    """The message read (meaningless when ``error`` is set)."""
    text: str
    """The line as read, for the rejected file."""
    error: Optional[str] = None
    """Why the line cannot be sent, when that is known before sending it."""
    columns: Optional[Tuple[str, ...]] = None
    """For a CSV row, the columns with a cell filled in: a refusal names them."""
    row: Optional[Dict[str, str]] = None
    """For a CSV row that could not be read into a message, its cells by column, when each
    column has one cell: the rejected file keeps them as ``_row``, to be fixed there."""


def read_messages(stream: IO[str], csv_format: bool) -> Iterator[Optional[Record]]:
    """A :class:`Record` for each line of ``stream``, ``None`` for each blank one.

    ``stream`` should be decoded with ``errors="surrogateescape"`` and ``newline=""`` (as the
    command opens files), so that bytes which are not UTF-8 reject their own line only.
    Nothing a line holds makes this raise: each problem becomes that line's ``error``.
    """
    return _csv_records(stream) if csv_format else _jsonl_records(stream)


def _read_line(stream: IO[str]) -> Tuple[str, int]:
    """The next line and its length, ``("", 0)`` at the end. Of a line over MAX_LINE_CHARS only
    the start is kept; the rest is read and thrown away, so the next line starts right."""
    line = stream.readline(MAX_LINE_CHARS + 1)
    size = len(line)
    if size <= MAX_LINE_CHARS:
        return line, size
    rest = line
    while rest and rest[-1] not in "\r\n":
        rest = stream.readline(_SKIP_CHUNK)
        size += len(rest)
    return line[:_PREVIEW_CHARS], size


def _too_long(number: int, size: int) -> str:
    return (
        f"line {number} is {size:,} characters long, over the limit of {MAX_LINE_CHARS:,} "
        "(a message must encode under 32 KB); _line holds its start only"
    )


def _jsonl_records(stream: IO[str]) -> Iterator[Optional[Record]]:
    number = 0
    while True:
        line, size = _read_line(stream)
        if not size:
            return
        number += 1
        if size > MAX_LINE_CHARS:
            yield Record(number, None, line.strip(), _too_long(number, size))
        else:
            yield _guarded(number, line, _jsonl_record)


def _guarded(number: int, text: str, read: Any, *extra: Any) -> Optional[Record]:
    """``read(number, text, *extra)``; whatever it raises becomes the line's rejection."""
    try:
        return read(number, text, *extra)
    except Exception as error:  # a case the readers did not foresee: this line's problem only
        reason = f"line {number} cannot be read: {_describe(error)}"
        return Record(number, None, text.strip(), reason)


def _jsonl_record(number: int, line: str) -> Optional[Record]:
    # A byte order mark is not data: files concatenated with `cat` carry one per file.
    text = line.lstrip("\ufeff").strip()
    if not text:
        return None
    problem = _utf8_problem(text)
    if problem:
        return Record(number, None, text, f"line {number} is not valid UTF-8: {problem}")
    try:
        value = _strict_json(text)
    except RecursionError:
        return Record(number, None, text, f"line {number} nests JSON too deeply to read")
    except ValueError as error:
        return Record(number, None, text, f"line {number} is not valid JSON: {error}")
    if isinstance(value, dict) and "_line" in value:
        return Record(number, value, text, _still_unreadable(number, value.get("_error")))
    if isinstance(value, dict) and "_row" in value:
        return _rejected_row(number, text, value)
    return Record(number, value, text)


# An entry of a rejected file: what it says about the line, not part of a message.
_ENTRY_KEYS = ("_lineNumber", "_error")
_UNREADABLE = "still unreadable: an entry with _line is not imported, replace it with the message"
_WAS = re.compile(r"line \d+: " + re.escape(_UNREADABLE) + r" \(was: (.*)\)", re.DOTALL)


def _still_unreadable(number: int, was: Any) -> str:
    """The reason for an entry of a rejected file that holds a line's text (``_line``): that
    text could not be read as a message the first time, and is not read again (it may be cut
    short, or hold ``\\xNN`` for bytes that were not UTF-8)."""
    if not isinstance(was, str) or not was:
        return f"line {number}: {_UNREADABLE}"
    earlier = _WAS.fullmatch(was)  # the original reason, however many rounds on
    return f"line {number}: {_UNREADABLE} (was: {earlier.group(1) if earlier else was})"


def _rejected_row(number: int, text: str, entry: Dict[str, Any]) -> Record:
    """An entry of a rejected file that holds a CSV row as ``_row``, read as that row again."""
    row = entry["_row"]
    others = sorted(key for key in entry if key != "_row" and key not in _ENTRY_KEYS)
    if others:
        reason = f"line {number}: an entry with _row holds nothing else, but this one has "
        return Record(number, entry, text, reason + ", ".join(map(repr, others)))
    if not isinstance(row, dict):
        reason = f"line {number}: _row must be an object of cells by column, got "
        return Record(number, entry, text, reason + _json_type(row))
    for column, cell in row.items():
        if not isinstance(cell, str):
            reason = f"line {number}: _row: column {column!r} must hold text, got "
            return Record(number, entry, text, reason + _json_type(cell))
    record = _csv_record(number, text, list(row), list(row.values()))
    if record.error:  # keep the entry as it is, with the new reason
        return record._replace(message=entry, row=None)
    return record


class _LineTooLong(Exception):
    """Raised through the csv reader for an overlong line, which ends the record there."""


class _Lines:
    """The csv reader's input: the stream's lines, numbered, each record's text kept for the
    rejected file until :meth:`take` collects it."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.number = 0
        self.taken: List[str] = []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line, size = _read_line(self.stream)
        if not size:
            raise StopIteration
        self.number += 1
        self.taken.append(line)
        if size > MAX_LINE_CHARS:
            raise _LineTooLong(_too_long(self.number, size))
        return line

    def take(self) -> Tuple[int, str]:
        """The first line number and the text of the lines read since the last call."""
        first = self.number - len(self.taken) + 1
        text = "".join(self.taken).rstrip("\r\n")
        self.taken = []
        return first, text


def _csv_records(stream: IO[str]) -> Iterator[Optional[Record]]:
    lines = _Lines(stream)
    reader = csv.reader(lines)
    header: Optional[List[str]] = None
    header_problem = ""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except (csv.Error, _LineTooLong) as error:
            # The reader starts afresh at the next line: only this record is lost.
            number, text = lines.take()
            reason = str(error) if isinstance(error, _LineTooLong) else f"line {number}: {error}"
            if header is None and not header_problem:
                header_problem = reason = f"the header cannot be read: {reason}"
            yield Record(number, None, text, reason)
            continue
        number, text = lines.take()
        if not any(cell.strip() for cell in cells):
            yield None
        elif header is None and not header_problem:
            header = cells
        elif header is None:
            yield Record(number, None, text, f"line {number}: no header: {header_problem}")
        else:
            yield _guarded(number, text, _csv_record, header, cells)


def _csv_record(number: int, text: str, header: List[str], cells: List[str]) -> Record:
    try:
        message = _row_message(header, cells)
    except RecursionError:
        reason = f"line {number}: a cell nests JSON too deeply"
    except ValueError as error:
        reason = f"line {number}: {error}"
    else:
        columns = tuple(column for column, cell in zip(header, cells) if cell)
        return Record(number, message, text, columns=columns)
    return Record(number, None, text, reason, row=_row_cells(header, cells))


def _row_cells(header: List[str], cells: List[str]) -> Optional[Dict[str, str]]:
    """A row's cells by column, when that says all the row holds: one cell per column, no
    column twice, and only UTF-8 (which a JSON file holds as it is)."""
    if len(cells) != len(header) or len(set(header)) != len(header):
        return None
    if any(_utf8_problem(text) for text in (*header, *cells)):
        return None
    return dict(zip(header, cells))


def _row_message(header: List[str], cells: List[str]) -> Dict[str, Any]:
    """The message a CSV row spells; ValueError naming the column that is wrong."""
    if len(cells) != len(header):
        # A missing or extra cell shifts every cell after it: no column can be trusted.
        raise ValueError(f"{len(cells)} cells for {len(header)} columns")
    filled = [(column, cell) for column, cell in zip(header, cells) if cell]
    for column, cell in filled:
        _check_cell_utf8(column, cell)
    message: Dict[str, Any] = {}
    # Whole columns first, so that `context` = {...} and `context.ip` merge in any column order.
    for column, cell in filled:
        if "." not in column:
            _set_field(message, column, cell)
    for column, cell in filled:
        if "." in column:
            _set_dotted(message, column, _cell(cell))
    return message


def _check_cell_utf8(column: str, cell: str) -> None:
    problem = _utf8_problem(column)
    if problem:
        raise ValueError(f"the header's column {_printable(column)!r} is not valid UTF-8")
    problem = _utf8_problem(cell)
    if problem:
        raise ValueError(f"column {column!r} is not valid UTF-8: {problem}")


def _set_field(message: Dict[str, Any], column: str, cell: str) -> None:
    value: Any = cell
    if column in _JSON_COLUMNS:
        value = _json_object_cell(column, cell)
        if value is None:  # `null`: the same as an empty cell
            return
    if column in message and message[column] != value:
        raise ValueError(f"column {column!r} appears twice, with different values")
    message[column] = value


def _json_object_cell(column: str, cell: str) -> Optional[Dict[str, Any]]:
    try:
        value = _strict_json(cell)
    except ValueError as error:
        raise ValueError(f"column {column!r} is not valid JSON: {error}") from None
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"column {column!r} must hold a JSON object, got {_json_type(value)}")
    return value


def _set_dotted(message: Dict[str, Any], column: str, value: Any) -> None:
    top, _, key = column.partition(".")
    if top not in _JSON_COLUMNS:
        raise ValueError(
            f"column {column!r}: only {', '.join(_JSON_COLUMNS)} can be spread over dotted columns"
        )
    target = message.setdefault(top, {})  # a dict: _set_field admits nothing else there
    if key in target and target[key] != value:
        raise ValueError(f"column {column!r} gives {top}.{key} a second, different value")
    target[key] = value


def _cell(value: str) -> Any:
    # Dotted columns hold plain values; numbers and booleans read as what they look like, and
    # what is not JSON (NaN and 1e999 included) stays the text it is.
    try:
        return _strict_json(value)
    except (ValueError, RecursionError):
        return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a 64-bit float")
    return value


# Python's json reads NaN and Infinity, and turns 1e999 into inf: no API reads those back, and
# the encoder would silently send null instead. Such a line is rejected, and says why.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


_MAX_READ_DEPTH = 256
"""Lines and cells nesting deeper are refused as too deep to read (the collector's bound)."""


def _strict_json(text: str) -> Any:
    # Python's decoder refuses deep nesting only at the C recursion limit, which 3.12 and 3.13
    # raised (about 1500 and 10000 levels): the same file must import the same on every Python.
    if nests_deeper_than(text, _MAX_READ_DEPTH):
        raise RecursionError(f"nests deeper than {_MAX_READ_DEPTH} levels")
    return _DECODER.decode(text)


def _utf8_problem(text: str) -> Optional[str]:
    if text.isascii():  # most lines: a flag of the string, no scan
        return None
    found = _NOT_UTF8.search(text)
    if found is None:
        return None
    return f"byte 0x{ord(found.group()) - 0xDC00:02x} at character {found.start() + 1}"


def _printable(text: str) -> str:
    """``text`` with each byte that was not UTF-8 written as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# -- the client's refusals, in the input's terms ------------------------------------------------

_WIRE = {keyword: field for field, keyword in _FIELDS.items()}
# Which types have a field that not all of them have, and what to use instead where it is wrong.
_OWNERS = {
    "event": ("track",),
    "properties": ("track", "page", "screen"),
    "traits": ("identify", "group"),
    "name": ("page", "screen"),
    "category": ("page", "screen"),
    "groupId": ("group",),
    "previousId": ("alias",),
    "anonymousId": ("identify", "track", "page", "screen", "group"),
}
_INSTEAD = {
    ("properties", "identify"): "traits",
    ("properties", "group"): "traits",
    ("traits", "track"): "properties",
    ("traits", "page"): "properties",
    ("traits", "screen"): "properties",
    ("event", "page"): "name",
    ("event", "screen"): "name",
    ("name", "track"): "event",
}
_PYTHON_TYPES = {
    "dict": "an object",
    "list": "an array",
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "true or false",
    "NoneType": "null",
}
_UNKNOWN_ARGUMENTS = re.compile(r"(\w+)\(\) got unknown argument\(s\): (.+)")
_NO_IDENTITY = re.compile(r"(\w+): either user_id or anonymous_id is required")
_REQUIRED = re.compile(r"(\w+): (\w+) is required")
_UNKNOWN_FIELD = re.compile(r"unknown field (.+) in an? (\w+) message", re.DOTALL)
_BAD_TYPE = re.compile(r"type must be one of (.+), got (.+)", re.DOTALL)
_FIELD_FIRST = re.compile(r"(\w+)\b(.*)", re.DOTALL)
_GOT_TYPE = re.compile(r"got (\w+)$")


def _explain(error: str, columns: Optional[Sequence[str]]) -> str:
    """The client's validation ``error`` (which speaks of its keyword arguments) said in the
    input's terms: wire field names, and in a CSV (``columns`` given: those filled in) the
    columns. A message that is not recognised is returned as it is."""
    try:
        return _explained(error, columns) or error
    except Exception:  # a wording this does not foresee must not lose the line's reason
        return error


def _explained(error: str, columns: Optional[Sequence[str]]) -> str:
    found = _UNKNOWN_ARGUMENTS.fullmatch(error)
    if found:
        fields = [_WIRE.get(name, name) for name in found.group(2).split(", ")]
        return "; ".join(_not_in(found.group(1), field, columns) for field in fields)
    found = _NO_IDENTITY.fullmatch(error)
    if found:
        return f"{_a(found.group(1))} needs a userId or an anonymousId"
    found = _REQUIRED.fullmatch(error)
    if found:
        field = _WIRE.get(found.group(2), found.group(2))
        return f"{_a(found.group(1))} needs {_a(field)}"
    found = _UNKNOWN_FIELD.fullmatch(error)
    if found and columns is not None:
        return f"column {found.group(1)}: not a field of {_a(found.group(2))} message"
    found = _BAD_TYPE.fullmatch(error)
    if found:
        where = "type" if columns is None else "column 'type'"
        if found.group(2) == "None":
            return f"{where} is missing or empty; it must be one of {found.group(1)}"
        return f"{where} must be one of {found.group(1)}, got {found.group(2)}"
    found = _FIELD_FIRST.fullmatch(error)
    if found and found.group(1) in _WIRE:
        field = _WIRE[found.group(1)]
        said = _GOT_TYPE.sub(_json_type_name, field + found.group(2))
        said = said.replace("must be a dict", "must be an object")
        said = said.replace("must be a datetime", "must be an ISO-8601 date-time string")
        filled = _columns_of(field, columns)
        return f"{_column_names(filled)}: {said}" if filled else said
    return ""


def _not_in(kind: str, field: str, columns: Optional[Sequence[str]]) -> str:
    """Why ``field`` is refused in a ``kind`` message: it has no such field; what instead."""
    filled = _columns_of(field, columns)
    where = _column_names(filled) if filled else f"field {field!r}"
    instead = _INSTEAD.get((field, kind))
    if instead and filled:
        hint = "use " + ", ".join(instead + column[len(field) :] for column in filled)
    elif instead:
        hint = f"use {instead}"
    elif (field, kind) == ("anonymousId", "alias"):
        hint = "an alias merges previousId into userId"
    elif field in _OWNERS:
        hint = "only " + " or ".join(_a(owner) for owner in _OWNERS[field]) + " has one"
    else:
        return f"{where}: {_a(kind)} has no {field}"
    return f"{where}: {_a(kind)} has no {field} ({hint})"


def _columns_of(field: str, columns: Optional[Sequence[str]]) -> List[str]:
    """The CSV columns that gave ``field`` its value (``field`` and ``field.key`` ones)."""
    if columns is None:
        return []
    return [column for column in columns if column.partition(".")[0] == field]


def _column_names(columns: List[str]) -> str:
    names = ", ".join(repr(column) for column in columns)
    return f"column {names}" if len(columns) == 1 else f"columns {names}"


def _a(word: str) -> str:
    # The words given here: "an identify", "an event", "an alias", but "a userId".
    return ("an " if word[:1] in "aeio" else "a ") + word


def _json_type_name(found: "re.Match[str]") -> str:
    return "got " + _PYTHON_TYPES.get(found.group(1), found.group(1))


# -- the rejected file --------------------------------------------------------------------------


def _open_private(path: str) -> Tuple[IO[str], bool]:
    """``path`` opened for writing, and whether it was created (a regular file, then).

    The rejected lines are user data (ids, emails, IP addresses), as private as the spool: the
    file is created with mode 0600. An existing file is removed first rather than truncated:
    O_CREAT keeps an existing file's mode, owner and hard links, and a chmod afterwards would
    leave a window (and would not reach a handle someone opened before). O_EXCL then refuses a
    symlink or a file someone put there in between. A device or a pipe (``/dev/null``,
    ``/dev/stderr``) is written to as it is. Line-buffered: a write error (a full disk) shows
    at the entry that hit it, and what was written is there even if the import is killed.
    """
    try:
        existing = os.stat(path)
    except FileNotFoundError:  # nothing there, or a dangling symlink (removed below)
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        return open(path, "w", encoding="utf-8", buffering=1), False  # noqa: SIM115
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(descriptor, "w", encoding="utf-8", buffering=1), True


class _RejectedFile:
    """Rejected and failed lines as JSON Lines, written from the reading and uploader threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.written = 0
        self.lost = 0
        self.problem: Optional[OSError] = None
        self.handle, self.created = _open_private(path)

    def add(
        self,
        number: Optional[int],
        message: Any,
        text: str,
        reason: str,
        row: Optional[Dict[str, str]] = None,
    ) -> None:
        """One entry: the message plus its reason; or a CSV row's cells by column (``_row``)
        when the row gave no message; or else the line's text (also when the message cannot be
        written, too deep for the encoder, say)."""
        entry = _entry(number, message, text, reason, row)
        with self.lock:
            try:
                self.handle.write(entry + "\n")
            except OSError as error:  # a full disk: counted, and said in the summary
                self.lost += 1
                self.problem = self.problem or error
            else:
                self.written += 1

    def close(self) -> None:
        """Close it; remove it when nothing went into it, so that a rejected file next to the
        input always belongs to the last import of it."""
        with self.lock:
            try:
                self.handle.close()
            except OSError as error:  # line-buffered, so this is rare: say it, do not raise
                self.problem = self.problem or error
                self.lost = self.lost or 1
            if self.created and not self.written and not self.lost:
                with contextlib.suppress(OSError):  # already gone: nothing to tidy
                    os.unlink(self.path)


def _entry(
    number: Optional[int],
    message: Any,
    text: str,
    reason: str,
    row: Optional[Dict[str, str]] = None,
) -> str:
    trailer = {"_error": reason} if number is None else {"_lineNumber": number, "_error": reason}
    if isinstance(message, dict):
        try:
            return json.dumps({**message, **trailer}, default=str)
        except (ValueError, TypeError, RecursionError):
            pass
    if row is not None:
        return json.dumps({"_row": row, **trailer})
    return json.dumps({"_line": _printable(text), **trailer})


def _wire_for_retry(message: Dict[str, Any]) -> Dict[str, Any]:
    # The client's own additions are left out, so a re-run rebuilds them; the messageId stays,
    # which makes the re-run idempotent for a batch that did arrive after all.
    wire = {key: value for key, value in message.items() if key in _FIELDS or key == "type"}
    context = wire.get("context")
    context = dict(context) if isinstance(context, dict) else {}
    context.pop("library", None)
    if context:
        wire["context"] = context
    else:
        wire.pop("context", None)
    return wire


# -- sending ------------------------------------------------------------------------------------


class _Progress:
    """The counts of the summary, and the progress line on stderr.

    ``read == imported + rejected + failed`` once the client has shut down, where imported is
    ``accepted - failed``: at shutdown every accepted message is delivered or handed to
    ``on_error``. ``failed`` is changed by the uploader thread too, under ``lock``.
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.lock = threading.Lock()
        self.read = 0
        self.blank = 0
        self.accepted = 0
        self.rejected = 0
        self.failed = 0
        self.started = time.monotonic()
        self._shown = 0.0

    @property
    def imported(self) -> int:
        """Lines whose message was delivered (final once the client has shut down)."""
        return self.accepted - self.failed

    def due(self) -> bool:
        """Whether the progress line should be shown again (four times a second on a
        terminal, every five seconds in a log)."""
        return time.monotonic() - self._shown >= (0.25 if self.tty else 5.0)

    def show(self, delivered: int, final: bool = False) -> None:
        """Write the progress line."""
        now = self._shown = time.monotonic()
        rate = self.read / max(now - self.started, 1e-9)
        line = (
            f"read {self.read:,} · {rate:,.0f} events/s · delivered {delivered:,} · "
            f"failed {self.failed:,} · rejected {self.rejected:,}"
        )
        if self.tty:
            self.out.write("\r" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


class _Importer:
    """Takes each record to exactly one outcome: accepted by the client (then imported or
    failed), or rejected with its reason."""

    def __init__(self, progress: _Progress) -> None:
        self.progress = progress
        self.client: Any = None
        self.rejected: Optional[_RejectedFile] = None
        self._caller = threading.get_ident()
        # on_error calls made by the client during a call on this thread: they are about the
        # message being refused (over 32 KB, a full queue), not about a delivery.
        self._during_call: Optional[List[Tuple[BaseException, List[Any]]]] = None

    def run(self, records: Iterator[Optional[Record]]) -> Optional[str]:
        """Take every record; why reading stopped before the end, or None."""
        try:
            for record in records:
                self.take(record)
                if self.progress.due():
                    self.progress.show(self.client.stats()["delivered"])
        except KeyboardInterrupt:
            return "interrupted"
        except OSError as error:  # the input itself: a disk or pipe error, not a line's content
            return f"reading stopped: {error}"
        return None

    def take(self, record: Optional[Record]) -> None:
        """Send one record, or reject it with its reason; a blank line is only counted."""
        if record is None:
            self.progress.blank += 1
            return
        reason = record.error or self._send(record)
        if reason is not None:
            self._reject(record, reason)
        self.progress.read += 1

    def _reject(self, record: Record, reason: str) -> None:
        self.progress.rejected += 1
        assert self.rejected is not None
        self.rejected.add(record.number, record.message, record.text, reason, record.row)

    def _send(self, record: Record) -> Optional[str]:
        """None when the client took the message; otherwise why it did not."""
        try:
            kind, arguments = call_arguments(record.message)
        except ValidationError as error:
            return f"line {record.number}: {_explain(str(error), record.columns)}"
        reports: List[Tuple[BaseException, List[Any]]] = []
        self._during_call = reports
        try:
            ok, message, problem = self._call(kind, arguments, record.columns)
        finally:
            self._during_call = None
        refusal = self._sort_out(ok, message, reports)
        if ok:
            self.progress.accepted += 1
            return None
        return f"line {record.number}: {problem or refusal or 'refused by the client'}"

    def _call(
        self, kind: str, arguments: Dict[str, Any], columns: Optional[Sequence[str]]
    ) -> Tuple[bool, Any, Optional[str]]:
        """``(accepted, the message built, why the call raised)``."""
        try:
            ok, message = getattr(self.client, kind)(**arguments)
        except ValidationError as error:
            return False, None, _explain(str(error), columns)
        except Exception as error:  # RecursionError on a deep value, say: this line's problem
            return False, None, _describe(error)
        return ok, message, None

    def _sort_out(
        self, ok: bool, message: Any, reports: List[Tuple[BaseException, List[Any]]]
    ) -> Optional[str]:
        """The refusal of ``message`` among on_error reports made during its call; any other
        report (another message's delivery) is a failure as usual."""
        refusal = None
        for error, items in reports:
            others = items
            if not ok and any(item is message for item in items):
                refusal = str(error)
                others = [item for item in items if item is not message]
            if others:
                self._fail(error, others)
        return refusal

    def on_error(self, error: BaseException, items: List[Any]) -> None:
        """The client's ``on_error``: messages it accepted and could not deliver (or, during a
        call on the reading thread, the message it refused)."""
        if self._during_call is not None and threading.get_ident() == self._caller:
            self._during_call.append((error, items))
            return
        self._fail(error, items)

    def _fail(self, error: BaseException, items: List[Any]) -> None:
        with self.progress.lock:
            self.progress.failed += len(items)
        for item in items:
            # Items are decoded wire messages, plain JSON: no text is needed to fall back on.
            wire = _wire_for_retry(item) if isinstance(item, dict) else item
            assert self.rejected is not None
            self.rejected.add(None, wire, "", f"not delivered: {error}")


# -- the command --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analytics-core import",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="a .jsonl / .csv file, or - for standard input (JSON Lines)")
    parser.add_argument("--csv", action="store_true", help="read CSV (default for *.csv files)")
    parser.add_argument(
        "--rejected",
        default=None,
        help="where rejected and failed lines go, created 0600 (default: FILE.rejected.jsonl, "
        "or rejected.jsonl for -)",
    )
    add_connection_options(parser, max_retries=10)
    return parser


def _open_input(path: str) -> IO[str]:
    # Not "replace": a line with bytes that are not UTF-8 must be rejected, not sent altered.
    # newline="" gives the csv reader the line endings it needs; utf-8-sig drops a leading BOM.
    options: Dict[str, Any] = {"encoding": "utf-8-sig", "errors": "surrogateescape", "newline": ""}
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, **options)
    return open(path, **options)  # noqa: SIM115 (closed by main)


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (yet)
        return False


def main(argv: Sequence[str]) -> int:
    """Import; exit 0 when every line was imported, 1 when some were rejected or failed (or
    reading stopped early), 2 when the command could not start."""
    args = _parser().parse_args(list(argv))
    csv_format = args.csv or args.file.lower().endswith(".csv")
    rejected_path = args.rejected or (
        "rejected.jsonl" if args.file == "-" else args.file + ".rejected.jsonl"
    )
    if args.file != "-" and _same_file(args.file, rejected_path):
        print("analytics-core import: the rejected file would replace the input", file=sys.stderr)
        return 2
    try:
        stream = _open_input(args.file)
    except OSError as error:
        print(f"analytics-core import: cannot read {args.file!r}: {error}", file=sys.stderr)
        return 2
    with stream:
        return _import(args, stream, csv_format, rejected_path)


def _import(args: argparse.Namespace, stream: IO[str], csv_format: bool, rejected_path: str) -> int:
    progress = _Progress(sys.stderr)
    importer = _Importer(progress)
    try:
        client = client_from(args, importer.on_error, on_full="block", on_full_timeout=600.0)
    except ValidationError as error:
        print(f"analytics-core import: {error}", file=sys.stderr)
        return 2
    # Only now, so that a usage error does not remove the last run's rejected file.
    try:
        importer.rejected = _RejectedFile(rejected_path)
    except OSError as error:
        client.shutdown(timeout=1)
        print(f"analytics-core import: cannot write {rejected_path!r}: {error}", file=sys.stderr)
        return 2
    importer.client = client
    stopped = importer.run(read_messages(stream, csv_format))
    if stopped:
        print(f"\nanalytics-core import: {stopped}; delivering what was read", file=sys.stderr)
    client.shutdown(timeout=max(60.0, args.timeout * 4))
    progress.show(client.stats()["delivered"], final=True)
    importer.rejected.close()
    print(_summary(progress, importer.rejected, stopped))
    clean = not (progress.rejected or progress.failed or importer.rejected.lost or stopped)
    return 0 if clean else 1


def _summary(progress: _Progress, rejected: _RejectedFile, stopped: Optional[str]) -> str:
    elapsed = time.monotonic() - progress.started
    summary = (
        f"read {progress.read:,} line(s) in {elapsed:.1f} s: imported {progress.imported:,}, "
        f"rejected {progress.rejected:,}, failed {progress.failed:,}"
    )
    if progress.blank:
        summary += f" ({progress.blank:,} blank line(s) skipped)"
    if stopped:
        summary += f"; {stopped}"
    if rejected.written:
        summary += f"; rejected and failed lines are in {rejected.path}"
    if rejected.lost:
        summary += f"; {rejected.lost:,} of them could not be written there: {rejected.problem}"
    return summary
