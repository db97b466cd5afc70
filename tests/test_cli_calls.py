"""``analytics-core track|identify|page|screen|group|alias`` and ``import``, end to end."""

import gzip
import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from analytics_core.cli import main
from analytics_core.collector.access import write_key_fingerprint as fingerprint

KEY = "wk-cli"


def run(*argv, stdin=None, timeout=120):
    """The installed console script, as a user runs it."""
    script = os.path.join(os.path.dirname(sys.executable), "analytics-core")
    return subprocess.run(
        [script, *argv], capture_output=True, text=True, input=stdin, timeout=timeout
    )


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_track_with_every_field_is_delivered(collector):
    done = run(
        "track",
        "--write-key", KEY,
        "--host", collector.url,
        "--user-id", "cli-user",
        "--event", "Plan Upgraded",
        "--properties", '{"plan": "pro", "seats": 3}',
        "--context", '{"ip": "10.0.0.1"}',
        "--timestamp", "2026-03-04T05:06:07Z",
        "--integrations", '{"All": false}',
        "--message-id", "cli-msg-1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"delivered": "track", "messageId": "cli-msg-1"}
    (event,) = collector.events(limit=0)
    assert event["event"] == "Plan Upgraded"
    assert event["properties"] == {"plan": "pro", "seats": 3}
    assert event["context"]["ip"] == "10.0.0.1"
    assert event["timestamp"].startswith("2026-03-04T05:06:07")
    assert event["integrations"] == {"All": False}
    assert event["_write_key_fingerprint"] == fingerprint(KEY)


@pytest.mark.parametrize(
    ("call", "options", "check"),
    [
        (
            "identify",
            ["--user-id", "u", "--traits", '{"email": "u@x.io"}'],
            {"traits": {"email": "u@x.io"}},
        ),
        (
            "page",
            ["--user-id", "u", "--category", "Docs", "--name", "Install"],
            {"name": "Install", "category": "Docs"},
        ),
        (
            "screen",
            ["--anonymous-id", "a1", "--name", "Home"],
            {"name": "Home", "anonymousId": "a1"},
        ),
        (
            "group",
            ["--user-id", "u", "--group-id", "g1", "--traits", '{"plan": "team"}'],
            {"groupId": "g1"},
        ),
        (
            "alias",
            ["--previous-id", "anon-1", "--user-id", "u"],
            {"previousId": "anon-1", "userId": "u"},
        ),
    ],
)
def test_every_other_call(collector, call, options, check):
    done = run(call, "--host", collector.url, *options, "--write-key", KEY)
    assert done.returncode == 0, done.stderr
    (event,) = collector.events(limit=0)
    assert event["type"] == call
    for key, value in check.items():
        assert event[key] == value


def test_write_key_from_the_environment(collector, monkeypatch, capsys):
    monkeypatch.setenv("ANALYTICS_WRITE_KEY", "wk-from-env")
    # argparse reads the default when the parser is built, inside main().
    assert main(["track", "--host", collector.url, "--user-id", "u", "--event", "E"]) == 0
    assert collector.events(limit=0)[0]["_write_key_fingerprint"] == fingerprint("wk-from-env")


def test_bad_options_exit_2_naming_the_option(collector, capsys):
    base = ["track", "--write-key", KEY, "--host", collector.url, "--user-id", "u"]
    assert main([*base, "--event", "E", "--properties", "{nope"]) == 2
    assert "--properties is not valid JSON" in capsys.readouterr().err
    assert main([*base, "--event", "E", "--properties", "[1, 2]"]) == 2
    assert "--properties must be a JSON object" in capsys.readouterr().err
    assert main([*base, "--event", "E", "--timestamp", "yesterday"]) == 2
    assert "timestamp 'yesterday' is not an ISO-8601" in capsys.readouterr().err
    assert main([*base]) == 2
    assert "event" in capsys.readouterr().err
    assert main(["track", "--host", collector.url, "--user-id", "u", "--event", "E"]) == 2
    assert "--write-key is required" in capsys.readouterr().err
    assert collector.events(limit=0) == []


def test_delivery_failure_exits_1_with_the_reason(collector):
    collector.set_faults([{"status": 400, "times": 1}])
    done = run(
        "track", "--write-key", KEY, "--host", collector.url, "--user-id", "u", "--event", "E"
    )
    assert done.returncode == 1
    assert "not delivered" in done.stderr and "400" in done.stderr
    down = run(
        "track", "--write-key", KEY, "--host", f"http://127.0.0.1:{closed_port()}",
        "--user-id", "u", "--event", "E", "--max-retries", "0", "--timeout", "2",
    )  # fmt: skip
    assert down.returncode == 1
    assert "not delivered" in down.stderr
    assert KEY not in down.stderr + down.stdout


def test_help_everywhere():
    for command in ("track", "identify", "page", "screen", "group", "alias", "import"):
        done = run(command, "--help")
        assert done.returncode == 0
        assert "--write-key" in done.stdout and "--host" in done.stdout
    assert "import" in run("--help").stdout


# -- import ------------------------------------------------------------------------------------


def jsonl(messages):
    return "".join(json.dumps(message) + "\n" for message in messages)


def test_import_jsonl_with_bad_lines_delivers_the_rest_and_writes_rejects(collector, tmp_path):
    good = [
        {
            "type": "track",
            "userId": f"u{n}",
            "event": "Imported",
            "properties": {"n": n},
            "timestamp": "2020-01-01T00:00:00Z",
            "messageId": f"imp-{n}",
        }
        for n in range(3000)
    ]
    lines = jsonl(good[:1000]) + "{not json\n" + jsonl(good[1000:2000])
    lines += json.dumps({"type": "track", "userId": "u"}) + "\n"  # no event
    lines += json.dumps({"type": "jump", "userId": "u"}) + "\n"
    lines += jsonl(good[2000:])
    source = tmp_path / "events.jsonl"
    source.write_text(lines)
    done = run("import", str(source), "--write-key", KEY, "--host", collector.url)
    assert done.returncode == 1  # some lines were rejected
    assert "imported 3,000, rejected 3, failed 0" in done.stdout
    assert "events/s" in done.stderr  # the progress line
    stored = collector.events(limit=0)
    assert len(stored) == 3000
    assert {event["messageId"] for event in stored} == {m["messageId"] for m in good}
    assert all(event["timestamp"].startswith("2020-01-01") for event in stored)
    rejected = [json.loads(line) for line in (tmp_path / "events.jsonl.rejected.jsonl").open()]
    assert len(rejected) == 3
    assert "not valid JSON" in rejected[0]["_error"] and rejected[0]["_line"] == "{not json"
    assert "event" in rejected[1]["_error"] and rejected[1]["userId"] == "u"
    assert "type must be one of" in rejected[2]["_error"]

    # Fix one rejected line and import the rejected file again: _error is ignored.
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text(json.dumps(dict(rejected[1], event="Fixed Up")) + "\n")
    again = run("import", str(fixed), "--write-key", KEY, "--host", collector.url)
    assert again.returncode == 0, again.stderr
    assert len(collector.events(limit=0, event="Fixed Up")) == 1


def test_import_csv_and_stdin(collector, tmp_path):
    source = tmp_path / "people.csv"
    source.write_text(
        "type,userId,traits.plan,traits.seats,timestamp\n"
        "identify,c1,pro,3,2021-05-06T07:08:09Z\n"
        "identify,c2,free,1,2021-05-06T07:08:10Z\n"
    )
    done = run("import", str(source), "--write-key", KEY, "--host", collector.url)
    assert done.returncode == 0, done.stderr
    stored = sorted(collector.events(limit=0), key=lambda event: event["userId"])
    assert [event["traits"] for event in stored] == [
        {"plan": "pro", "seats": 3},
        {"plan": "free", "seats": 1},
    ]
    piped = run(
        "import", "-", "--write-key", KEY, "--host", collector.url,
        stdin=jsonl([{"type": "page", "anonymousId": "a9", "name": "Home"}]),
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert collector.events(limit=0, type="page")[0]["anonymousId"] == "a9"


def test_import_failed_deliveries_go_to_the_rejected_file(collector, tmp_path):
    source = tmp_path / "refused.jsonl"
    source.write_text(
        jsonl([{"type": "track", "userId": "u", "event": "Refused", "messageId": "r-1"}])
    )
    collector.set_faults([{"status": 400, "times": 1}])
    done = run("import", str(source), "--write-key", KEY, "--host", collector.url)
    assert done.returncode == 1
    assert "failed 1" in done.stdout
    (entry,) = [json.loads(line) for line in (tmp_path / "refused.jsonl.rejected.jsonl").open()]
    assert entry["messageId"] == "r-1" and entry["event"] == "Refused"
    assert "not delivered" in entry["_error"]
    assert "library" not in entry.get("context", {})


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """A tracking API that answers 200 and keeps each request's headers and raw body."""

    seen = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_api():
    RecordingHandler.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", RecordingHandler.seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("flags", [[], ["--gzip", "--debug"]])
def test_gzip_and_debug_options(recording_api, flags):
    url, seen = recording_api
    done = run("track", "--write-key", KEY, "--host", url, "--user-id", "u", "--event", "E", *flags)
    assert done.returncode == 0, done.stderr
    ((headers, body),) = seen
    if "--gzip" in flags:
        assert headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(body)
        assert "DEBUG" in done.stderr and "E" in done.stderr  # what is sent, on stderr
    else:
        assert "Content-Encoding" not in headers
        assert "DEBUG" not in done.stderr
    (message,) = json.loads(body)["batch"]
    assert (message["event"], message["userId"]) == ("E", "u")
    assert KEY not in done.stderr  # the write key never appears in the log
