"""``analytics-core import`` never dies half-way (issue 13, part 4).

Every line read ends in exactly one of imported, rejected (with its reason) or failed (with its
reason), whatever it holds; the summary adds up; the rejected file is private (0600).

The findings, before the fix:

- a CSV with a ``context`` cell of ``null`` (or a JSON array) and a ``context.ip`` column
  raised ``TypeError: 'NoneType' object does not support item assignment`` out of the
  command: no summary, no rejected file, the lines after it never read;
- a message over 32 KB was counted as rejected *and* failed ("imported 2 line(s): delivered 1,
  rejected 1, failed 1");
- the rejected file was created 0644, readable by everyone (the spool is 0600).

The end-to-end tests run the installed command against a real local collector; the case tables
and the property tests call the CLI's ``main`` in this process, where the pytest plugin
captures what the client accepts (nothing is sent), so each example takes milliseconds.
"""

import contextlib
import csv
import io
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Set

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics_core.cli import main
from analytics_core.testing import capture_events
from analytics_core.tools.cli_import import MAX_LINE_CHARS, _explain

KEY = "wk-import-robust"
NOWHERE = "http://127.0.0.1:9"  # in-process runs are captured: nothing is ever sent there
SUMMARY = re.compile(
    r"read ([\d,]+) line\(s\) in [\d.]+ s: imported ([\d,]+), rejected ([\d,]+), "
    r"failed ([\d,]+)(?: \(([\d,]+) blank line\(s\) skipped\))?"
)
TYPES = ("identify", "track", "page", "screen", "group", "alias")
GOOD = b'{"type":"track","userId":"u","event":"E"}'


# -- helpers ------------------------------------------------------------------------------------


class Outcome(NamedTuple):
    """What one import did: its exit status, output, summary counts and rejected file."""

    code: int
    stdout: str
    stderr: str
    read: int
    imported: int
    rejected: int
    failed: int
    blank: int
    messages: List[Dict[str, Any]]
    entries: List[Dict[str, Any]]
    mode: Optional[int]

    def reasons(self) -> Dict[int, str]:
        """Each rejected line's number and reason."""
        return {entry["_lineNumber"]: entry["_error"] for entry in self.entries}


def counts(stdout: str) -> List[int]:
    """read, imported, rejected, failed, blank from the summary line."""
    found = SUMMARY.search(stdout)
    assert found, stdout
    return [int((group or "0").replace(",", "")) for group in found.groups()]


def rejected_file(path: Path):
    """The rejected file's entries and mode (None when there is no file)."""
    if not path.exists():
        return [], None
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return entries, stat.S_IMODE(path.stat().st_mode)


def main_in_process(*argv: str):
    """``analytics-core ARGV`` in this process: exit status, stdout, stderr, and the messages
    the client accepted (captured, not sent)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        captured = stack.enter_context(capture_events())
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue(), captured.messages


def import_file(path: Path, *options: str) -> Outcome:
    """``analytics-core import path`` in this process, with what the client accepted."""
    argv = ["import", str(path), "--write-key", KEY, "--host", NOWHERE, *options]
    code, stdout, stderr, messages = main_in_process(*argv)
    entries, mode = rejected_file(Path(str(path) + ".rejected.jsonl"))
    return Outcome(code, stdout, stderr, *counts(stdout), messages, entries, mode)


def run(*argv: str, **options: Any) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    script = os.path.join(os.path.dirname(sys.executable), "analytics-core")
    return subprocess.run([script, *argv], capture_output=True, text=True, timeout=120, **options)


def write(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


def assert_adds_up(outcome: Outcome) -> None:
    assert outcome.read == outcome.imported + outcome.rejected + outcome.failed
    assert len(outcome.entries) == outcome.rejected + outcome.failed
    assert outcome.code == (0 if outcome.rejected + outcome.failed == 0 else 1)
    if outcome.entries:
        assert outcome.mode == 0o600
    else:
        assert outcome.mode is None  # removed again: nothing went into it


# -- the three findings, end to end -------------------------------------------------------------


def test_csv_context_cells_that_crashed_now_import_or_reject(collector, tmp_path):
    """Before: row 2 raised TypeError out of the command; no line was imported or recorded."""
    source = tmp_path / "people.csv"
    source.write_text(
        "type,userId,event,context,context.ip\n"
        "track,c1,E,null,1.2.3.4\n"  # null: the same as an empty cell; ip merges in
        'track,c2,E,"[1]",1.2.3.4\n'  # not an object: rejected, the column named
        'track,c3,E,"{}",5.6.7.8\n'
        'track,c4,E,"{""ip"": ""9.9.9.9""}",1.2.3.4\n'  # two different values for context.ip
        'track,c5,E,"{""ip"": ""1.2.3.4"", ""locale"": ""de""}",1.2.3.4\n'  # the same value: fine
        "track,c6,E,,7.7.7.7\n"
    )
    done = run("import", str(source), "--write-key", KEY, "--host", collector.url)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "read 6 line(s)" in done.stdout
    assert "imported 4, rejected 2, failed 0" in done.stdout
    entries, mode = rejected_file(tmp_path / "people.csv.rejected.jsonl")
    assert mode == 0o600
    header = ["type", "userId", "event", "context", "context.ip"]
    assert entries == [
        {
            "_row": dict(zip(header, ["track", "c2", "E", "[1]", "1.2.3.4"])),
            "_lineNumber": 3,
            "_error": "line 3: column 'context' must hold a JSON object, got an array",
        },
        {
            "_row": dict(zip(header, ["track", "c4", "E", '{"ip": "9.9.9.9"}', "1.2.3.4"])),
            "_lineNumber": 5,
            "_error": "line 5: column 'context.ip' gives context.ip a second, different value",
        },
    ]
    stored = {event["userId"]: event["context"] for event in collector.events(limit=0)}
    assert {user: context["ip"] for user, context in stored.items()} == {
        "c1": "1.2.3.4",
        "c3": "5.6.7.8",
        "c5": "1.2.3.4",
        "c6": "7.7.7.7",
    }
    assert stored["c5"]["locale"] == "de"


def test_an_oversize_line_is_rejected_once_and_failures_are_not_rejections(collector, tmp_path):
    """Before: the message over 32 KB went to on_error *and* returned False, so it counted as
    failed and as rejected ("delivered 1, rejected 1, failed 1" for 2 lines)."""
    good = [
        {"type": "track", "userId": "u", "event": "Fine", "messageId": f"fine-{n}"}
        for n in range(3)
    ]
    big = {"type": "track", "userId": "u", "event": "Big", "properties": {"x": "y" * 40000}}
    lines = [json.dumps(good[0]), json.dumps(big), json.dumps(good[1]), "{", json.dumps(good[2])]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n")

    done = run("import", str(source), "--write-key", KEY, "--host", collector.url)
    assert done.returncode == 1
    assert "read 5 line(s)" in done.stdout
    assert "imported 3, rejected 2, failed 0" in done.stdout
    entries, mode = rejected_file(tmp_path / "events.jsonl.rejected.jsonl")
    assert mode == 0o600
    assert [entry["_lineNumber"] for entry in entries] == [2, 4]
    assert entries[0]["event"] == "Big" and "the limit is 32768" in entries[0]["_error"]
    assert entries[0]["properties"] == big["properties"]  # as read: fix it, import it again
    assert entries[1]["_line"] == "{" and "not valid JSON" in entries[1]["_error"]

    # The API refuses the batches now: the good lines fail, the oversize one is still only
    # rejected, and each good line is either delivered or in the rejected file, never both.
    collector.clear()
    collector.set_faults([{"status": 400, "times": 10}])
    done = run("import", str(source), "--write-key", KEY, "--host", collector.url)
    read, imported, rejected, failed, blank = counts(done.stdout)
    assert (read, rejected, blank) == (5, 2, 0)
    assert failed >= 1 and imported + failed == 3
    entries, _ = rejected_file(tmp_path / "events.jsonl.rejected.jsonl")
    failures = [entry for entry in entries if "_lineNumber" not in entry]
    assert len(failures) == failed
    assert all(entry["_error"].startswith("not delivered:") for entry in failures)
    delivered = {event["messageId"] for event in collector.events(limit=0)}
    assert len(delivered) == imported
    assert delivered.isdisjoint(entry["messageId"] for entry in failures)
    assert delivered | {entry["messageId"] for entry in failures} == {
        message["messageId"] for message in good
    }


def test_the_rejected_file_is_created_0600_and_an_old_one_is_replaced(tmp_path):
    """Before: open(path, "w") made it 0644 (0666 under umask 0)."""
    source = write(tmp_path, "events.jsonl", GOOD + b"\nnot json\n")
    target = tmp_path / "events.jsonl.rejected.jsonl"
    target.write_text("an old run's rejected lines\n")
    target.chmod(0o644)
    old_link = tmp_path / "old-link"
    os.link(target, old_link)  # a handle on the old file: it must not see the new lines

    done = run(
        "import", str(source), "--write-key", KEY, "--host", NOWHERE, "--timeout", "1",
        "--max-retries", "0", preexec_fn=lambda: os.umask(0),
    )  # fmt: skip
    assert "imported 0, rejected 1, failed 1" in done.stdout  # nothing listens there
    entries, mode = rejected_file(target)
    assert mode == 0o600
    (rejected,) = [entry for entry in entries if "_lineNumber" in entry]
    assert rejected["_lineNumber"] == 2 and "not valid JSON" in rejected["_error"]
    (failed,) = [entry for entry in entries if "_lineNumber" not in entry]
    assert failed["event"] == "E" and failed["_error"].startswith("not delivered:")
    assert old_link.read_text() == "an old run's rejected lines\n"
    assert stat.S_IMODE(old_link.stat().st_mode) == 0o644


def test_a_clean_run_removes_the_stale_rejected_file_and_usage_errors_keep_it(tmp_path):
    source = write(tmp_path, "events.jsonl", GOOD + b"\n")
    target = tmp_path / "events.jsonl.rejected.jsonl"
    target.write_text("from the last run\n")
    no_key = dict(os.environ)
    no_key.pop("ANALYTICS_WRITE_KEY", None)
    done = run("import", str(source), "--host", NOWHERE, env=no_key)
    assert done.returncode == 2 and "--write-key" in done.stderr
    assert target.read_text() == "from the last run\n"  # a usage error changes nothing

    outcome = import_file(source)
    assert (outcome.code, outcome.imported, outcome.rejected) == (0, 1, 0)
    assert not target.exists()


def test_the_rejected_file_cannot_be_the_input(tmp_path):
    source = write(tmp_path, "events.jsonl", b"not json\n")
    done = run("import", str(source), "--rejected", str(source), "--write-key", KEY)
    assert done.returncode == 2 and "would replace the input" in done.stderr
    assert source.read_bytes() == b"not json\n"


def test_a_rejected_file_that_cannot_be_written_stops_before_sending(tmp_path):
    source = write(tmp_path, "events.jsonl", GOOD + b"\n")
    code, _, stderr, messages = main_in_process(
        "import", str(source), "--rejected", str(tmp_path), "--write-key", KEY, "--host", NOWHERE
    )
    assert code == 2 and "cannot write" in stderr
    assert messages == []


# -- what a line can hold: JSON Lines -----------------------------------------------------------


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def with_properties(properties: bytes) -> bytes:
    return b'{"type":"track","userId":"u","event":"E","properties":' + properties + b"}"


JSONL_CASES = [
    # (id, file content, (imported, rejected, blank), {line: part of the reason})
    (
        "invalid-utf8",
        GOOD + b'\n{"type":"track","userId":"\xff\xfe","event":"E"}\n' + GOOD,
        (2, 1, 0),
        {2: "line 2 is not valid UTF-8: byte 0xff at character 27"},
    ),
    ("bom", b"\xef\xbb\xbf" + GOOD + b"\n" + GOOD + b"\n", (2, 0, 0), {}),
    ("bom-of-a-concatenated-file", GOOD + b"\n\xef\xbb\xbf" + GOOD + b"\n", (2, 0, 0), {}),
    ("crlf", GOOD + b"\r\nnope\r\n" + GOOD + b"\r\n", (2, 1, 0), {2: "not valid JSON"}),
    ("cr-only", GOOD + b"\r" + GOOD + b"\r", (2, 0, 0), {}),
    ("blank-lines", b"\n   \n" + GOOD + b"\r\n\t\r\n\xc2\xa0\n" + GOOD, (2, 0, 4), {}),
    (
        "not-objects",
        b'[1, 2]\n3\n"text"\nnull\ntrue\n',
        (0, 5, 0),
        {
            1: "got an array",
            2: "got a number",
            3: "got a string",
            4: "got null",
            5: "got true or false",
        },
    ),
    (
        "nan-and-infinity",
        b"\n".join(with_properties(value) for value in (b"NaN", b"Infinity", b"-Infinity"))
        + b"\n"
        + with_properties(b"1e999"),
        (0, 4, 0),
        {
            1: "not valid JSON: NaN is not a JSON value",
            2: "Infinity is not a JSON value",
            3: "-Infinity is not a JSON value",
            4: "the number 1e999 is too large",
        },
    ),
    ("deep", deep(100_000) + b"\n" + GOOD, (1, 1, 0), {1: "line 1 nests JSON too deeply"}),
    (
        "deep-in-properties",
        with_properties(b'{"a":' * 5000 + b"1" + b"}" * 5000) + b"\n" + GOOD,
        (1, 1, 0),
        {1: "nests JSON too deeply"},
    ),
    (
        "over-32kb",
        with_properties(b'{"x":"' + b"y" * 40_000 + b'"}') + b"\n" + GOOD,
        (1, 1, 0),
        {1: "the limit is 32768"},
    ),
    (
        "over-1mib",
        with_properties(b'{"x":"' + b"y" * MAX_LINE_CHARS + b'"}') + b"\n" + GOOD,
        (1, 1, 0),
        {1: f"characters long, over the limit of {MAX_LINE_CHARS:,}"},
    ),
    (
        "over-1mib-without-a-line-break",
        b"x" * (3 * MAX_LINE_CHARS),
        (0, 1, 0),
        {1: f"line 1 is {3 * MAX_LINE_CHARS:,} characters long"},
    ),
    (
        "wrong-field-types",
        b"\n".join(
            [
                b'{"type":"track","userId":{"a":1},"event":"E"}',
                b'{"type":"track","userId":"u","event":"E","timestamp":5}',
                b'{"type":"track","userId":"u","event":"E","timestamp":"yesterday"}',
                b'{"type":"identify","userId":"u","traits":[1]}',
                b'{"type":"track","userId":"u","event":"E","bogus":1}',
                b'{"type":"jump","userId":"u"}',
                b'{"type":"track","userId":"u","event":["E"]}',
            ]
        ),
        (0, 7, 0),
        {
            1: "line 1: userId must be a string or a number, got an object",
            2: "line 2: timestamp must be an ISO-8601 date-time string, got a number",
            3: "line 3: timestamp 'yesterday' is not an ISO-8601 date-time",
            4: "line 4: traits must be an object, got an array",
            5: "line 5: unknown field 'bogus' in a track message",
            6: "line 6: type must be one of identify, track, page, screen, group, alias, "
            "got 'jump'",
            7: "line 7: event must be a string, got an array",
        },
    ),
]


def assert_counted(outcome, expected, reasons) -> None:
    """(imported, rejected, blank) as ``expected``, nothing failed, the summary adds up, and
    each rejected line (by number) has a reason containing ``reasons[number]``."""
    assert (outcome.imported, outcome.rejected, outcome.blank) == expected, outcome.stdout
    assert outcome.failed == 0
    assert_adds_up(outcome)
    assert len(outcome.messages) == outcome.imported
    assert set(outcome.reasons()) == set(reasons)
    for number, reason in reasons.items():
        assert reason in outcome.reasons()[number]


@pytest.mark.parametrize(
    ("content", "expected", "reasons"),
    [case[1:] for case in JSONL_CASES],
    ids=[case[0] for case in JSONL_CASES],
)
def test_jsonl_lines(tmp_path, content, expected, reasons):
    outcome = import_file(write(tmp_path, "events.jsonl", content))
    assert_counted(outcome, expected, reasons)
    if expected[2]:
        assert f"({expected[2]} blank line(s) skipped)" in outcome.stdout


def test_an_invalid_utf8_line_is_kept_readable_in_the_rejected_file(tmp_path):
    outcome = import_file(write(tmp_path, "events.jsonl", b'{"userId":"caf\xe9"}\n'))
    (entry,) = outcome.entries
    assert entry["_line"] == '{"userId":"caf\\xe9"}'  # the byte, where it was


def test_an_overlong_line_keeps_only_its_start(tmp_path):
    outcome = import_file(write(tmp_path, "events.jsonl", b"x" * (MAX_LINE_CHARS + 1)))
    (entry,) = outcome.entries
    assert entry["_line"] == "x" * 200 and "_line holds its start only" in entry["_error"]


def test_a_rejected_file_imports_again_once_fixed(tmp_path):
    source = write(tmp_path, "events.jsonl", b'{"type":"track","userId":"u"}\n')
    (entry,) = import_file(source).entries
    assert entry == {
        "type": "track",
        "userId": "u",
        "_lineNumber": 1,
        "_error": "line 1: a track needs an event",
    }
    fixed = write(tmp_path, "fixed.jsonl", json.dumps(dict(entry, event="Fixed")).encode())
    outcome = import_file(fixed)
    assert (outcome.code, outcome.imported) == (0, 1)
    assert outcome.messages[0]["event"] == "Fixed"


# -- what a line can hold: CSV ------------------------------------------------------------------


CSV_CASES = [
    # (id, file content, (imported, rejected, blank), {line: part of the reason})
    (
        "context-cells",
        b"type,userId,event,context,context.ip\n"
        b"track,u,E,null,1.2.3.4\n"
        b'track,u,E,"[1]",1.2.3.4\n'
        b"track,u,E,5,1.2.3.4\n"
        b'track,u,E,"""text""",1.2.3.4\n'
        b"track,u,E,{,1.2.3.4\n"
        b'track,u,E,"{""os"": {}}",1.2.3.4\n',
        (2, 4, 0),
        {
            3: "line 3: column 'context' must hold a JSON object, got an array",
            4: "column 'context' must hold a JSON object, got a number",
            5: "column 'context' must hold a JSON object, got a string",
            6: "column 'context' is not valid JSON",
        },
    ),
    (
        "dotted-column-first",
        b"context.ip,type,userId,event,context\n"
        b'1.2.3.4,track,u,E,"{""ip"": ""1.2.3.4""}"\n'
        b'1.2.3.4,track,u,E,"{""ip"": ""4.3.2.1""}"\n',
        (1, 1, 0),
        {3: "column 'context.ip' gives context.ip a second, different value"},
    ),
    (
        "duplicate-columns",
        b"type,userId,userId,event,properties.a,properties.a\n"
        b"track,u,u,E,1,1\n"
        b"track,u,,E,,\n"
        b"track,u,v,E,,\n"
        b"track,u,u,E,1,2\n",
        (2, 2, 0),
        {
            4: "column 'userId' appears twice, with different values",
            5: "column 'properties.a' gives properties.a a second, different value",
        },
    ),
    (
        "dotted-columns-of-scalar-fields",
        b"type,userId,userId.x,event,timestamp.y,bogus.z\n"
        b"track,u,,E,,\n"
        b"track,u,y,E,,\n"
        b"track,u,,E,1,\n"
        b"track,u,,E,,1\n",
        (1, 3, 0),
        {
            3: "column 'userId.x': only properties, traits, context, integrations",
            4: "column 'timestamp.y'",
            5: "column 'bogus.z'",
        },
    ),
    (
        "json-of-any-type-in-dotted-cells",
        b"type,userId,event,properties.a,properties.b,integrations.All\n"
        b'track,u,E,"{""x"": [1]}",NaN,false\n'
        b"track,u,E,1e999,[[[,yes\n",
        (2, 0, 0),
        {},
    ),
    (
        "invalid-utf8",
        b"type,userId,event,caf\xe9\ntrack,\xff,E,\ntrack,u,E,x\ntrack,u,E,\n",
        (1, 2, 0),
        {
            2: "column 'userId' is not valid UTF-8: byte 0xff",
            3: "the header's column 'caf\\\\xe9' is not valid UTF-8",
        },
    ),
    ("bom", b"\xef\xbb\xbftype,userId,event\ntrack,u,E\n", (1, 0, 0), {}),
    ("crlf", b"type,userId,event\r\ntrack,u,E\r\n\r\ntrack,u,E\r\n", (2, 0, 1), {}),
    ("cr-only", b"type,userId,event\rtrack,u,E\rtrack,u,E\r", (2, 0, 0), {}),
    (
        "blank-rows",
        b"\ntype,userId,event\n,,\n \n  , ,\t\ntrack,u,E\n\n",
        (1, 0, 5),
        {},
    ),
    (
        "more-or-fewer-cells-than-columns",  # finding 1: fewer were imported, fields left out
        b"type,userId,event,properties.plan\n"
        b"track,u,E,pro\n"
        b"track,u,E\n"
        b"track,u\n"
        b"track,u,E,pro,\n"  # even an empty extra cell: a cell may be missing before it
        b"track,u,E,pro,x\n"
        b",,,,,\n",  # blank whatever its width
        (1, 4, 1),
        {
            3: "line 3: 3 cells for 4 columns",
            4: "line 4: 2 cells for 4 columns",
            5: "line 5: 5 cells for 4 columns",
            6: "line 6: 5 cells for 4 columns",
        },
    ),
    (
        "a-quoted-cell-over-several-lines",
        b'type,userId,event\ntrack,u,"Two\nLines"\njump,u,E\n',
        (1, 1, 0),
        {4: "line 4: column 'type' must be one of identify, track, page, screen, group, alias"},
    ),
    (
        "over-1mib",
        b"type,userId,event\ntrack,u," + b"E" * MAX_LINE_CHARS + b"\ntrack,u,E\n",
        (1, 1, 0),
        {2: f"line 2 is {len('track,u,') + MAX_LINE_CHARS + 1:,} characters long"},
    ),
    (
        "a-cell-over-the-csv-field-limit",
        b'type,userId,event\ntrack,u,"' + b"E" * 200_000 + b'"\ntrack,u,E\n',
        (1, 1, 0),
        {2: "field larger than field limit"},
    ),
    (
        "an-unreadable-header",
        b"type,userId," + b"E" * MAX_LINE_CHARS + b"\ntrack,u,E\n",
        (0, 2, 0),
        {1: "the header cannot be read: line 1 is", 2: "line 2: no header"},
    ),
    ("only-a-header", b"type,userId,event\n", (0, 0, 0), {}),
    ("empty", b"", (0, 0, 0), {}),
]


@pytest.mark.parametrize(
    ("content", "expected", "reasons"),
    [case[1:] for case in CSV_CASES],
    ids=[case[0] for case in CSV_CASES],
)
def test_csv_rows(tmp_path, content, expected, reasons):
    outcome = import_file(write(tmp_path, "people.csv", content))
    assert_counted(outcome, expected, reasons)


def test_csv_cells_merge_into_the_message(tmp_path):
    source = write(
        tmp_path,
        "people.csv",
        b"context.ip,type,userId,event,context,properties.a,properties.b,properties.c\n"
        b'1.2.3.4,track,u,E,"{""os"": {""name"": ""x""}}","{""x"": [1]}",NaN,007\n',
    )
    (message,) = import_file(source).messages
    assert message["context"]["ip"] == "1.2.3.4"
    assert message["context"]["os"] == {"name": "x"}
    assert message["properties"] == {"a": {"x": [1]}, "b": "NaN", "c": "007"}


# -- the outside tester's findings: cell counts, refusals in the input's terms, round trips -----

FIELDS_HEADER = [
    "type", "userId", "anonymousId", "event", "name", "previousId", "groupId",
    "properties.plan", "properties.seats", "traits.plan", "timestamp", "bogus",
]  # fmt: skip
FIELD_ROWS = [
    # (the row's filled cells, the reason it is rejected with)
    (
        {"type": "identify", "userId": "u", "properties.plan": "pro"},
        "column 'properties.plan': an identify has no properties (use traits.plan)",
    ),
    (
        {
            "type": "group",
            "userId": "u",
            "groupId": "g",
            "properties.plan": "p",
            "properties.seats": "3",
        },
        "columns 'properties.plan', 'properties.seats': a group has no properties "
        "(use traits.plan, traits.seats)",
    ),
    (
        {"type": "page", "userId": "u", "event": "Clicked", "name": "Home"},
        "column 'event': a page has no event (use name)",
    ),
    (
        {"type": "track", "userId": "u", "event": "E", "traits.plan": "pro"},
        "column 'traits.plan': a track has no traits (use properties.plan)",
    ),
    (
        {"type": "track", "userId": "u", "event": "E", "name": "Home"},
        "column 'name': a track has no name (use event)",
    ),
    (
        {"type": "track", "userId": "u", "event": "E", "groupId": "g"},
        "column 'groupId': a track has no groupId (only a group has one)",
    ),
    (
        {"type": "identify", "userId": "u", "event": "E", "name": "Home"},
        "column 'event': an identify has no event (only a track has one); "
        "column 'name': an identify has no name (only a page or a screen has one)",
    ),
    (
        {"type": "alias", "userId": "u", "anonymousId": "a", "previousId": "p"},
        "column 'anonymousId': an alias has no anonymousId "
        "(an alias merges previousId into userId)",
    ),
    ({"type": "alias", "userId": "u"}, "an alias needs a previousId"),
    ({"type": "alias", "previousId": "p"}, "an alias needs a userId"),
    ({"type": "group", "userId": "u"}, "a group needs a groupId"),
    ({"type": "track", "event": "E"}, "a track needs a userId or an anonymousId"),
    ({"type": "track", "userId": "u"}, "a track needs an event"),
    (
        {"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"},
        "column 'timestamp': timestamp 'yesterday' is not an ISO-8601 date-time",
    ),
    (
        {"type": "track", "userId": "u", "event": "E", "bogus": "1"},
        "column 'bogus': not a field of a track message",
    ),
    (
        {"userId": "u", "event": "E"},
        "column 'type' is missing or empty; "
        "it must be one of identify, track, page, screen, group, alias",
    ),
    (
        {"type": "Track", "userId": "u", "event": "E"},
        "column 'type' must be one of identify, track, page, screen, group, alias, got 'Track'",
    ),
]


def csv_text(header: List[str], rows: List[Dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(column, "") for column in header])
    return out.getvalue().encode()


def test_a_csv_row_refused_by_the_client_names_its_columns(tmp_path):
    """Before: "identify() got unknown argument(s): properties", "alias: previous_id is
    required", ...: the client's keyword arguments, not the columns the user wrote."""
    rows = [cells for cells, _ in FIELD_ROWS]
    rows.append({"type": "identify", "userId": "u", "traits.plan": "pro"})  # fine
    outcome = import_file(write(tmp_path, "people.csv", csv_text(FIELDS_HEADER, rows)))
    assert (outcome.imported, outcome.rejected) == (1, len(FIELD_ROWS)), outcome.stdout
    assert_adds_up(outcome)
    assert outcome.reasons() == {
        index + 2: f"line {index + 2}: {reason}" for index, (_, reason) in enumerate(FIELD_ROWS)
    }


def test_a_jsonl_line_refused_by_the_client_names_its_fields(tmp_path):
    lines = [
        {"type": "identify", "userId": "u", "properties": {"plan": "pro"}},
        {"type": "page", "userId": "u", "event": "E"},
        {"type": "alias", "userId": "u"},
        {"type": "track", "userId": "u", "event": "E", "traits": {}, "category": "c"},
        {"type": None, "userId": "u"},
    ]
    outcome = import_file(write(tmp_path, "events.jsonl", jsonl_bytes(lines)))
    assert outcome.reasons() == {
        1: "line 1: field 'properties': an identify has no properties (use traits)",
        2: "line 2: field 'event': a page has no event (use name)",
        3: "line 3: an alias needs a previousId",
        4: "line 4: field 'category': a track has no category (only a page or a screen has one); "
        "field 'traits': a track has no traits (use properties)",
        5: "line 5: type is missing or empty; "
        "it must be one of identify, track, page, screen, group, alias",
    }


def test_a_refusal_worded_otherwise_keeps_the_clients_words():
    assert _explain("something new went wrong", ["userId"]) == "something new went wrong"
    assert _explain("track() got unknown argument(s): ", None)  # never raises


def jsonl_bytes(entries: List[Any]) -> bytes:
    return b"".join(json.dumps(entry).encode() + b"\n" for entry in entries)


def test_a_csv_row_rejected_while_read_is_fixed_in_the_rejected_file_and_imported(tmp_path):
    """Before: such a row was kept as its text (_line), and importing the rejected file
    rejected it again as "type must be one of ..., got None", its reason lost."""
    source = write(
        tmp_path,
        "people.csv",
        b"type,userId,event,context,context.ip,properties.plan\n"
        b'track,c1,E,"[1]",1.2.3.4,pro\n'  # not an object
        b'track,c2,E,"{""ip"": ""9.9.9.9""}",1.2.3.4,\n'  # two values for context.ip
        b"track,c3,E,,5.6.7.8,free\n",
    )
    first = import_file(source)
    assert (first.imported, first.rejected) == (1, 2)
    row_1, row_2 = (entry["_row"] for entry in first.entries)
    assert row_1 == {
        "type": "track",
        "userId": "c1",
        "event": "E",
        "context": "[1]",
        "context.ip": "1.2.3.4",
        "properties.plan": "pro",
    }
    assert first.entries[1]["_error"] == (
        "line 3: column 'context.ip' gives context.ip a second, different value"
    )

    # Fix the cells where they are, as a user would in an editor; spoil one more cell.
    row_1["context"] = ""
    row_2["context"] = '{"locale": "de"}'
    row_2["properties.plan"] = "{bad"  # a dotted cell that is not JSON is text: fine
    row_2["context.ip"] = "9.9.9.9"
    fixed = write(tmp_path, "fixed.jsonl", jsonl_bytes(first.entries))
    second = import_file(fixed)
    assert (second.code, second.imported, second.rejected) == (0, 2, 0), second.stdout
    first_message, second_message = second.messages
    assert (first_message["userId"], first_message["context"]["ip"]) == ("c1", "1.2.3.4")
    assert first_message["properties"] == {"plan": "pro"}
    assert second_message["context"]["locale"] == "de"
    assert second_message["properties"] == {"plan": "{bad"}

    # Still wrong: rejected again, the entry kept as it is with the new reason.
    row_1["context"] = "[2]"
    again = import_file(write(tmp_path, "again.jsonl", jsonl_bytes(first.entries[:1])))
    assert again.entries == [
        {
            "_row": row_1,
            "_lineNumber": 1,
            "_error": "line 1: column 'context' must hold a JSON object, got an array",
        }
    ]


def test_a_line_kept_as_text_stays_rejected_with_its_first_reason(tmp_path):
    """A line that was not read (cells that do not match the columns, not JSON, not UTF-8, too
    long) is kept as its text; importing that entry again says so and keeps the reason."""
    source = write(tmp_path, "people.csv", b"type,userId,event,name\ntrack,u,E\ntrack,v,E,\n")
    first = import_file(source)
    (entry,) = first.entries
    assert entry == {
        "_line": "track,u,E",
        "_lineNumber": 2,
        "_error": "line 2: 3 cells for 4 columns",
    }
    unreadable = (
        "still unreadable: an entry with _line is not imported, replace it with the message "
        "(was: line 2: 3 cells for 4 columns)"
    )
    rejected_path = Path(str(source) + ".rejected.jsonl")
    second = import_file(rejected_path)
    assert second.entries == [
        {"_line": "track,u,E", "_lineNumber": 1, "_error": f"line 1: {unreadable}"}
    ]
    # Round after round, the first reason, not a nest of them.
    third = import_file(Path(str(rejected_path) + ".rejected.jsonl"))
    assert third.entries == [
        {"_line": "track,u,E", "_lineNumber": 1, "_error": f"line 1: {unreadable}"}
    ]
    assert (third.code, third.imported) == (1, 0)

    # Replaced with the message, it imports.
    fixed = write(
        tmp_path, "fixed.jsonl", jsonl_bytes([{"type": "track", "userId": "u", "event": "E"}])
    )
    assert import_file(fixed).imported == 1

    # The same for a JSON Lines line, and for an entry whose reason was removed.
    first = import_file(write(tmp_path, "events.jsonl", b"{not json\n"))
    again = import_file(Path(str(tmp_path / "events.jsonl") + ".rejected.jsonl"))
    assert again.reasons()[1].startswith("line 1: still unreadable: ")
    assert again.reasons()[1].endswith(f"(was: {first.reasons()[1]})")
    bare = import_file(write(tmp_path, "bare.jsonl", b'{"_line": "x", "type": "track"}\n'))
    assert bare.reasons() == {
        1: "line 1: still unreadable: an entry with _line is not imported, "
        "replace it with the message"
    }


def test_a_csv_row_refused_by_the_client_is_fixed_in_the_rejected_file_and_imported(tmp_path):
    source = write(tmp_path, "people.csv", b"type,userId,properties.plan\nidentify,u,pro\n")
    (entry,) = import_file(source).entries
    assert entry["properties"] == {"plan": "pro"}  # the message as read
    entry["traits"] = entry.pop("properties")
    outcome = import_file(write(tmp_path, "fixed.jsonl", jsonl_bytes([entry])))
    assert (outcome.code, outcome.imported) == (0, 1)
    assert outcome.messages[0]["traits"] == {"plan": "pro"}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (
            {"_row": {"type": "track"}, "type": "track"},
            "an entry with _row holds nothing else, but this one has 'type'",
        ),
        ({"_row": ["track", "u", "E"]}, "_row must be an object of cells by column, got an array"),
        (
            {"_row": {"type": "track", "userId": 5}},
            "_row: column 'userId' must hold text, got a number",
        ),
        (
            {"_row": {"type": "track", "userId": "u", "event": "E", "x.y": "1"}},
            "column 'x.y': only properties",
        ),
        ({"_row": {"type": "track", "userId": "u"}}, "a track needs an event"),
    ],
)
def test_a_row_entry_that_is_not_a_row_is_rejected(tmp_path, entry, reason):
    outcome = import_file(
        write(tmp_path, "entries.jsonl", jsonl_bytes([dict(entry, _error="old")]))
    )
    assert reason in outcome.reasons()[1]
    assert_adds_up(outcome)


# -- properties: whatever the lines hold --------------------------------------------------------

MARK = "sentinel-5b1e-"  # the messageId of the known-good line after each arbitrary one
LINE_BREAKS = re.compile(rb"\r\n|\r|\n")  # where a file opened with newline="" breaks lines

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included: json.dumps writes them
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
message_fields = {
    name: json_values
    for name in (
        "userId", "anonymousId", "event", "properties", "traits", "context", "name",
        "category", "groupId", "previousId", "integrations", "messageId", "bogus",
    )
}  # fmt: skip
message_fields["timestamp"] = st.sampled_from(["2020-01-01T00:00:00Z", "yesterday", 5])
messages_ish = st.fixed_dictionaries(
    {"type": st.sampled_from([*TYPES, "jump"])}, optional=message_fields
)
deep_lines = st.integers(1, 3000).map(lambda depth: with_properties(deep(depth)))
jsonl_lines = st.one_of(
    messages_ish.map(lambda message: json.dumps(message).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.text(max_size=60).map(str.encode),
    st.binary(max_size=60),
    deep_lines,
    st.sampled_from([b"", b"   ", b"\xef\xbb\xbf", b"\xef\xbb\xbf" + GOOD, b"\t\x0b\x0c"]),
).map(lambda line: LINE_BREAKS.sub(b" ", line))  # one physical line each
endings = st.sampled_from([b"\n", b"\r\n", b"\r"])


def sentinel_line(index: int) -> bytes:
    return json.dumps(
        {"type": "track", "userId": "s", "event": "Sentinel", "messageId": f"{MARK}{index}"}
    ).encode()


def imported_items(messages: List[Dict[str, Any]], count: int) -> Set[int]:
    """Which arbitrary items were imported: item k's message is the one between sentinel k-1
    and sentinel k (every sentinel is imported, in order)."""
    imported: Set[int] = set()
    next_item = 0
    for message in messages:
        message_id = message.get("messageId", "")
        if message_id.startswith(MARK):
            assert message_id == f"{MARK}{next_item}"  # no sentinel lost, none out of order
            next_item += 1
        else:
            assert next_item not in imported  # one line, one message
            imported.add(next_item)
    assert next_item == count
    return imported


def check_buckets(outcome: Outcome, items: int, first_lines: List[int], blank: Any) -> None:
    """Each arbitrary item is exactly one of imported, rejected, blank; the counts add up."""
    assert_adds_up(outcome)
    assert outcome.failed == 0  # captured: nothing is delivered, nothing can fail
    imported = imported_items(outcome.messages, items)
    numbers = [entry["_lineNumber"] for entry in outcome.entries]
    assert len(numbers) == len(set(numbers))  # one entry per line
    rejected = {first_lines.index(number) for number in numbers}  # ValueError: a sentinel's
    assert not imported & rejected
    skipped = set(range(items)) - imported - rejected
    assert all(blank(index) for index in skipped)
    assert outcome.blank == len(skipped)
    assert outcome.imported == items + len(imported)
    assert outcome.read == 2 * items - len(skipped)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(st.tuples(jsonl_lines, endings), max_size=8),
    final_break=st.booleans(),
)
def test_any_jsonl_lines(lines, final_break):
    content = b""
    for index, (line, ending) in enumerate(lines):
        content += line + ending + sentinel_line(index) + b"\n"
    if not final_break:
        content = content[:-1]
    with tempfile.TemporaryDirectory() as directory:
        outcome = import_file(write(Path(directory), "events.jsonl", content))

    def blank(index: int) -> bool:
        text = lines[index][0].decode("utf-8", "replace")
        return not text.lstrip("\ufeff").strip()

    check_buckets(outcome, len(lines), [2 * index + 1 for index in range(len(lines))], blank)


# Text a file can hold (no lone surrogates), without NUL: before Python 3.11 the csv reader
# stops at a NUL in the middle of a record and reads the rest of it as new records.
NO_NUL = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
column_names = st.one_of(
    st.sampled_from(["properties", "traits", "context", "integrations", "userId", "event"]),
    st.builds(
        "{}.{}".format,
        st.sampled_from(["properties", "traits", "context", "integrations", "userId", "x", ""]),
        st.text(NO_NUL, max_size=6),
    ),
    st.text(NO_NUL, max_size=8),
)
cell_text = st.text(NO_NUL, max_size=12)
cells = st.one_of(
    st.just(""),
    cell_text,
    json_values.map(json.dumps),
    st.sampled_from(["null", "[]", "{}", "NaN", "1e999", '{"ip": "x"}', "[1]", "5", " "]),
)
garbage_rows = st.binary(max_size=40).map(lambda row: re.sub(rb'["\r\n]', b"", row))


@st.composite
def csv_files(draw):
    """(header, [arbitrary row: a list of cells, or raw bytes for one line], line ending)."""
    header = ["type", "userId", "event", "messageId", *draw(st.lists(column_names, max_size=4))]
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 4)) == 0:
            rows.append(draw(garbage_rows))
            continue
        width = max(0, len(header) + draw(st.integers(-2, 2)))
        kind = draw(st.sampled_from([*TYPES, "", "jump"]))
        rows.append([kind, *draw(st.lists(cells, min_size=width, max_size=width))][:width])
    return header, rows, draw(st.sampled_from(["\n", "\r\n"]))


def csv_bytes(row: List[str], ending: str) -> bytes:
    # QUOTE_ALL: a cell holding a lone \r or \n is quoted whatever the line ending (the minimal
    # quoting of Python < 3.12 leaves it bare when it is not part of the line terminator).
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator=ending).writerow(row)
    return out.getvalue().encode("utf-8")


def csv_row_is_blank(row: Any) -> bool:
    if isinstance(row, bytes):
        row = next(csv.reader([row.decode("utf-8", "surrogateescape")]), [])
    return not any(cell.strip() for cell in row)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files())
def test_any_csv_rows(data):
    header, rows, ending = data
    content = csv_bytes(header, ending)
    first_lines = []
    for index, row in enumerate(rows):
        first_lines.append(len(LINE_BREAKS.findall(content)) + 1)
        content += row + ending.encode() if isinstance(row, bytes) else csv_bytes(row, ending)
        sentinel = ["track", f"s{index}", "Sentinel", f"{MARK}{index}"]
        sentinel += [""] * (len(header) - len(sentinel))  # a cell for each column
        content += csv_bytes(sentinel, ending)
    with tempfile.TemporaryDirectory() as directory:
        outcome = import_file(write(Path(directory), "rows.csv", content))
        again = (
            import_file(Path(directory) / "rows.csv.rejected.jsonl") if outcome.entries else None
        )
    check_buckets(outcome, len(rows), first_lines, lambda index: csv_row_is_blank(rows[index]))
    if again is not None:  # the rejected file, imported as it is: each entry keeps its reason
        assert (again.read, again.imported, again.rejected) == (
            outcome.rejected,
            0,
            outcome.rejected,
        )
        for before, after in zip(outcome.entries, again.entries):
            reason = before["_error"].split(": ", 1)[1]
            if "_line" in before:
                assert after["_error"].endswith(f"(was: {before['_error']})")
            elif "_row" in before:
                assert after == {
                    **before,
                    "_lineNumber": after["_lineNumber"],
                    "_error": after["_error"],
                }
                assert after["_error"] == f"line {after['_lineNumber']}: {reason}"


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_at_all(content, csv_format):
    """Not even line structure: the command ends normally and its counts add up."""
    with tempfile.TemporaryDirectory() as directory:
        outcome = import_file(write(Path(directory), "events", content), *["--csv"] * csv_format)
    assert_adds_up(outcome)
    assert outcome.failed == 0
    assert len(outcome.messages) == outcome.imported
