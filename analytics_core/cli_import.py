"""``analytics-core import FILE``: a historical import, with progress, nothing dropped.

Input: JSON Lines (one Segment message per line, as the HTTP API takes them: ``type``,
``userId``, ``event``, ``properties``, ``timestamp``, ...), ``-`` for standard input, or a CSV
file with a header (the same field names as columns; ``properties``, ``traits``, ``context``
and ``integrations`` as JSON, or spread over dotted columns such as ``properties.plan``).

The client runs with ``on_full="block"``, so reading waits for the uploader instead of dropping.
A line that cannot be sent (malformed, or refused by the client's validation) and a message the
API did not accept (``on_error``) are written to the rejected file as JSON Lines: the message as
read plus ``"_error"``, the reason. Fix them there and import that file: ``_error`` is ignored.
"""

import argparse
import csv
import io
import json
import sys
import threading
import time
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .cli_calls import add_connection_options, client_from
from .errors import ValidationError

__all__ = ["main", "call_arguments", "read_messages"]

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
_IGNORED = {"type", "_error", "sentAt", "receivedAt", "originalTimestamp", "version", "writeKey"}
_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_JSON_COLUMNS = ("properties", "traits", "context", "integrations")


def call_arguments(message: Any) -> Tuple[str, Dict[str, Any]]:
    """The call type and Client keywords of one wire-form message; ValidationError if wrong."""
    if not isinstance(message, dict):
        raise ValidationError(f"a message must be a JSON object, got {type(message).__name__}")
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


def _lines(stream: IO[str]) -> Iterator[Tuple[int, Any, str]]:
    for number, line in enumerate(stream, 1):
        text = line.strip()
        if not text:
            continue
        try:
            yield number, json.loads(text), text
        except ValueError as error:
            yield number, ValueError(f"line {number} is not valid JSON: {error}"), text


def _csv_rows(stream: IO[str]) -> Iterator[Tuple[int, Any, str]]:
    reader = csv.DictReader(stream)
    for number, row in enumerate(reader, 2):  # line 1 is the header
        try:
            yield number, _row_message(row), json.dumps(row)
        except ValueError as error:
            yield number, ValueError(f"line {number}: {error}"), json.dumps(row)


def _row_message(row: Dict[str, Optional[str]]) -> Dict[str, Any]:
    message: Dict[str, Any] = {}
    for column, value in row.items():
        if column is None:
            raise ValueError("more values than header columns")
        if value is None or value == "":
            continue
        top, _, nested = column.partition(".")
        if nested:
            message.setdefault(top, {})[nested] = _cell(value)
        elif column in _JSON_COLUMNS:
            try:
                message[column] = json.loads(value)
            except ValueError:
                raise ValueError(f"column {column!r} is not valid JSON") from None
        else:
            message[column] = value
    return message


def _cell(value: str) -> Any:
    # Dotted columns hold plain values; numbers and booleans read as what they look like.
    try:
        return json.loads(value)
    except ValueError:
        return value


def read_messages(stream: IO[str], csv_format: bool) -> Iterator[Tuple[int, Any, str]]:
    """``(line number, message or ValueError, original text)`` for each record of ``stream``."""
    return _csv_rows(stream) if csv_format else _lines(stream)


class _Progress:
    """Counters shared with the uploader thread, and the progress line on stderr."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.lock = threading.Lock()
        self.read = 0
        self.rejected = 0
        self.failed = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def show(self, delivered: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < (0.25 if self.tty else 5.0):
            return
        self._shown = now
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
        help="where rejected lines go (default: FILE.rejected.jsonl, or rejected.jsonl for -)",
    )
    add_connection_options(parser, max_retries=10)
    return parser


def _open_input(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace", newline="")


def main(argv: Sequence[str]) -> int:
    """Import; exit 0 when everything was delivered, 1 when lines were rejected or failed."""
    args = _parser().parse_args(list(argv))
    csv_format = args.csv or args.file.lower().endswith(".csv")
    rejected_path = args.rejected or (
        "rejected.jsonl" if args.file == "-" else args.file + ".rejected.jsonl"
    )
    try:
        stream = _open_input(args.file)
    except OSError as error:
        print(f"analytics-core import: cannot read {args.file!r}: {error}", file=sys.stderr)
        return 2
    progress = _Progress(sys.stderr)
    rejected_file: List[IO[str]] = []

    def reject(record: Any, reason: str) -> None:
        with progress.lock:
            if not rejected_file:
                rejected_file.append(open(rejected_path, "w", encoding="utf-8"))  # noqa: SIM115
            if isinstance(record, dict):
                entry = dict(record, _error=reason)
            else:
                entry = {"_line": record, "_error": reason}
            rejected_file[0].write(json.dumps(entry, default=str) + "\n")

    def on_error(error: BaseException, items: List[Any]) -> None:
        with progress.lock:
            progress.failed += len(items)
        for item in items:
            reject(_wire_for_retry(item), f"not delivered: {error}")

    try:
        client = client_from(args, on_error, on_full="block", on_full_timeout=600.0)
    except ValidationError as error:
        print(f"analytics-core import: {error}", file=sys.stderr)
        return 2
    try:
        with stream:
            for number, record, text in read_messages(stream, csv_format):
                progress.read += 1
                if isinstance(record, ValueError):
                    progress.rejected += 1
                    reject(text, str(record))
                else:
                    try:
                        kind, arguments = call_arguments(record)
                        ok, _ = getattr(client, kind)(**arguments)
                    except ValidationError as error:
                        ok = False
                        reject(record, f"line {number}: {error}")
                    if not ok:
                        progress.rejected += 1
                progress.show(client.stats()["delivered"])
    except KeyboardInterrupt:
        print("\nanalytics-core import: interrupted; delivering what was read", file=sys.stderr)
    client.shutdown(timeout=max(60.0, args.timeout * 4))
    stats = client.stats()
    progress.show(stats["delivered"], final=True)
    for handle in rejected_file:
        handle.close()
    elapsed = time.monotonic() - progress.started
    summary = (
        f"imported {progress.read:,} line(s) in {elapsed:.1f} s: delivered {stats['delivered']:,}, "
        f"rejected {progress.rejected:,}, failed {progress.failed:,}"
    )
    if rejected_file:
        summary += f"; rejected and failed lines are in {rejected_path}"
    print(summary)
    return 0 if not rejected_file and stats["delivered"] == stats["accepted"] else 1


def _wire_for_retry(message: Dict[str, Any]) -> Dict[str, Any]:
    # The client's own additions are left out, so a re-run rebuilds them; the messageId stays,
    # which makes the re-run idempotent for a batch that did arrive after all.
    wire = {key: value for key, value in message.items() if key in _FIELDS or key == "type"}
    context = dict(wire.get("context") or {})
    context.pop("library", None)
    if context:
        wire["context"] = context
    else:
        wire.pop("context", None)
    return wire
