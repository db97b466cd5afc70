"""Who may talk to a running collector: Host names, cross-site changes, the write key for reads,
fingerprints instead of keys, and a private database file (issue 13, part 2).

Each case runs against a real collector process over raw sockets or HTTP, as a hostile page or
a neighbour on the machine would reach it. The browser's side of the same defences is in
tests/test_collector_browser.py.
"""

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest
import requests

from analytics_core.collector.access import write_key_fingerprint as fingerprint

from .support.collector_process import CollectorProcess

KEY = "wk-a-long-random-production-like-key-0123456789"


def raw(collector, request: bytes) -> Tuple[int, Dict, bool]:
    """Send ``request`` on a new connection: (status, JSON body, whether the server closed)."""
    host, port = collector.url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        while len(body) < length:
            body += sock.recv(65536)
        closed = b"connection: close" in head.lower()
    return int(head.split()[1]), json.loads(body), closed


def request(method: str, path: str, host: Optional[str], extra: str = "", body: bytes = b""):
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(filter(None, extra.split("\n")))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def track(collector, key: str = "wk-test", event: str = "Seen") -> None:
    response = requests.post(
        collector.url + "/v1/batch",
        json={"batch": [{"type": "track", "event": event, "userId": "u"}]},
        auth=(key, ""),
        timeout=5,
    )
    assert response.status_code == 200, response.text


def port_of(collector) -> str:
    return collector.url.rsplit(":", 1)[1]


# -- Host ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil", "[::2]"],
)
def test_a_host_it_does_not_listen_on_is_refused_for_every_route(collector, host):
    track(collector, event="Kept")
    host = host.format(port=port_of(collector))
    body = json.dumps({"batch": [{"type": "track", "event": "Rebound", "userId": "u"}]}).encode()
    for method, path, payload in [
        ("GET", "/v1/events", b""),
        ("GET", "/v1/stats", b""),
        ("GET", "/", b""),
        ("DELETE", "/v1/events", b""),
        ("POST", "/v1/batch", body),
    ]:
        status, answer, closed = raw(
            collector, request(method, path, host, "Authorization: Basic d2s6", payload)
        )
        assert (status, answer["code"], closed) == (403, "host-not-allowed", True), path
        assert "--allow-host" in answer["message"]
    assert [event["event"] for event in collector.events()] == ["Kept"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "app.localhost"]
)
def test_loopback_names_are_answered(collector, host):
    status, answer, _ = raw(
        collector, request("GET", "/v1/stats", host.format(port=port_of(collector)))
    )
    assert status == 200 and "messages" in answer


def test_a_request_without_host_is_answered_browsers_always_send_one(collector):
    status, answer, _ = raw(collector, b"GET /v1/stats HTTP/1.0\r\n\r\n")
    assert status == 200 and "messages" in answer


def test_allow_host_adds_names_and_a_star_allows_any():
    with CollectorProcess(
        extra_args=["--allow-host", "box.lan", "--allow-host", "Other.Lan."]
    ) as c:
        for host in ("box.lan:8086", "other.lan", "localhost"):
            assert raw(c, request("GET", "/v1/stats", host))[0] == 200, host
        assert raw(c, request("GET", "/v1/stats", "third.lan"))[0] == 403
    with CollectorProcess(extra_args=["--allow-host", "*"]) as c:
        assert raw(c, request("GET", "/v1/stats", "anything.example"))[0] == 200


# -- cross-site changes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        "Origin: https://evil.example",
        "Origin: null",
        "Origin: http://127.0.0.1.evil.example:{port}",
        "Sec-Fetch-Site: cross-site",
        "Origin: http://127.0.0.1:{port}\nSec-Fetch-Site: cross-site",
        # Another port of this machine: "same-site" to a browser, another origin all the same.
        "Origin: http://localhost:9000\nSec-Fetch-Site: same-site",
        "Origin: http://127.0.0.1",
        "Sec-Fetch-Site: same-site",
    ],
)
def test_a_page_of_another_site_cannot_delete_or_plan_faults(collector, headers):
    track(collector, event="Kept")
    headers = headers.format(port=port_of(collector))
    host = f"127.0.0.1:{port_of(collector)}"
    for method, path, body in [
        ("DELETE", "/v1/events", b""),
        ("DELETE", "/_faults", b""),
        ("POST", "/_faults", b'[{"status": 500, "times": 100}]'),
    ]:
        status, answer, _ = raw(collector, request(method, path, host, headers, body))
        assert (status, answer["code"]) == (403, "cross-site-refused"), (method, path)
    assert [event["event"] for event in collector.events()] == ["Kept"]
    assert collector.faults() == []


def test_the_collectors_own_page_and_scripts_may_delete(collector):
    track(collector)
    origin = f"Origin: http://localhost:{port_of(collector)}\nSec-Fetch-Site: same-origin"
    status, _, _ = raw(collector, request("DELETE", "/v1/events", "localhost", origin))
    assert status == 200
    assert collector.events() == []


def test_two_host_fields_are_refused(collector):
    status, answer, closed = raw(
        collector, request("GET", "/v1/stats", "127.0.0.1", "Host: evil.example")
    )
    assert (status, answer["code"], closed) == (400, "invalid-host", True)


def test_a_delete_with_a_filter_is_refused_rather_than_emptying_everything(collector):
    track(collector, event="Kept")
    answer = requests.delete(collector.url + "/v1/events", params={"user_id": "x"}, timeout=5)
    assert answer.status_code == 400 and answer.json()["code"] == "invalid-query"
    assert len(collector.events()) == 1


def test_the_page_cannot_be_framed_and_no_answer_is_sniffed(collector):
    page = requests.get(collector.url + "/", headers={"Accept": "text/html"}, timeout=5)
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    for response in (page, requests.get(collector.url + "/v1/events", timeout=5)):
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--allow-host", "box.lan:8087", "without a port"),
        ("--allow-host", "http://box.lan", "without a port"),
        ("--write-key", "user:password", "no ':'"),
    ],
)
def test_options_that_could_never_work_are_refused_at_start(option, value, said):
    result = subprocess.run(
        [sys.executable, "-m", "analytics_core.collector", "--port", "0", option, value],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and said in result.stderr, result.stderr


def test_allowing_any_host_without_a_key_warns():
    with CollectorProcess(extra_args=["--allow-host", "*"], faults=False) as collector:
        assert raw(collector, request("GET", "/v1/stats", "rebind.example"))[0] == 200
        warning = collector.stderr_text()  # said before it listens
    assert "--allow-host '*' without --write-key" in warning


# -- the write key -------------------------------------------------------------------------------


@pytest.fixture
def keyed():
    with CollectorProcess(write_key=KEY) as collector:
        yield collector


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/events"), ("GET", "/v1/stats"), ("DELETE", "/v1/events"), ("GET", "/_faults")],
)
def test_with_a_write_key_reads_and_deletes_need_it(keyed, method, path):
    track(keyed, key=KEY, event="Kept")
    for auth in (None, ("wrong", ""), (KEY[:-1], "")):
        answer = requests.request(method, keyed.url + path, auth=auth, timeout=5)
        assert answer.status_code == 401, (auth, answer.text)
        assert answer.json()["code"] == "invalid-write-key"
        assert KEY not in answer.text
    assert requests.request(method, keyed.url + path, auth=(KEY, ""), timeout=5).ok


def test_with_a_write_key_the_page_itself_still_loads(keyed):
    page = requests.get(keyed.url + "/", headers={"Accept": "text/html"}, timeout=5)
    assert page.status_code == 200 and "<title>" in page.text


# -- no key in any answer, nor in the file -------------------------------------------------------


def test_listings_show_a_fingerprint_never_the_key(collector):
    track(collector, key=KEY)
    text = requests.get(collector.url + "/v1/events", timeout=5).text
    assert KEY not in text
    (event,) = json.loads(text)
    assert event["_write_key_fingerprint"] == fingerprint(KEY)
    assert "_write_key" not in event
    assert len(event["_write_key_fingerprint"]) == 12
    # Filtering takes the key, or the fingerprint a listing shows.
    assert len(collector.events(write_key=KEY)) == 1
    assert len(collector.events(write_key=fingerprint(KEY))) == 1
    assert collector.events(write_key="another") == []


def files_of(db: Path) -> Dict[str, int]:
    return {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in db.parent.iterdir()
        if path.name.startswith(db.name)
    }


def test_the_database_and_its_wal_files_are_private_and_hold_no_key(tmp_path):
    db = tmp_path / "events.db"
    previous = os.umask(0o022)  # the usual one, which would give 0644
    try:
        with CollectorProcess(str(db)) as collector:
            track(collector, key=KEY)
            modes = files_of(db)
            content = b"".join((tmp_path / name).read_bytes() for name in modes)
    finally:
        os.umask(previous)
    assert {"events.db", "events.db-wal", "events.db-shm"} <= set(modes), modes
    assert set(modes.values()) == {0o600}, modes
    assert KEY.encode() not in content


def old_database(db: Path, rows) -> None:
    """A file as the collector before fingerprints wrote it: write keys in plain text."""
    with sqlite3.connect(str(db)) as conn:
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL,"
            " write_key TEXT NOT NULL, type TEXT NOT NULL, event TEXT, user_id TEXT,"
            " anonymous_id TEXT, message_id TEXT, json TEXT NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO events (received_at, write_key, type, event, json) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    os.chmod(db, 0o644)


def test_an_older_file_is_converted_to_fingerprints_and_made_private(tmp_path):
    db = tmp_path / "events.db"
    message = json.dumps({"type": "track", "event": "Old", "userId": "u"})
    old_database(db, [("2026-01-01T00:00:00+00:00", KEY, "track", "Old", message)])
    with CollectorProcess(str(db)) as collector:
        (event,) = collector.events()
        assert event["event"] == "Old"
        assert event["_write_key_fingerprint"] == fingerprint(KEY)
        modes = files_of(db)
        content = b"".join((tmp_path / name).read_bytes() for name in modes)
    assert set(modes.values()) == {0o600}, modes
    assert KEY.encode() not in content  # overwritten, not left in a free page or the WAL


def test_a_nan_an_older_collector_stored_is_listed_as_null(tmp_path):
    # Stored as sent before the API refused them: the listing must still be JSON.
    db = tmp_path / "events.db"
    rows = [
        (
            "2026-01-01T00:00:00+00:00",
            "k",
            "track",
            "Nan",
            '{"type": "track", "event": "Nan",'
            ' "userId": "u", "properties": {"a": NaN, "b": Infinity, "c": -Infinity, "d": 1}}',
        ),
    ]
    old_database(db, rows)
    with CollectorProcess(str(db)) as collector:
        text = requests.get(collector.url + "/v1/events", timeout=5).text

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    (event,) = json.loads(text, parse_constant=refuse)
    assert event["properties"] == {"a": None, "b": None, "c": None, "d": 1}


def test_a_write_key_inside_a_message_is_neither_kept_nor_shown(collector, tmp_path):
    # analytics.js-style bodies can repeat the key in each message or its context.
    batch = [
        {"type": "track", "event": "E", "userId": "u", "writeKey": KEY},
        {"type": "track", "event": "F", "userId": "u", "context": {"writeKey": KEY, "ip": "1"}},
    ]
    answer = requests.post(
        collector.url + "/v1/batch", json={"batch": batch}, auth=(KEY, ""), timeout=5
    )
    assert answer.status_code == 200
    single = requests.post(
        collector.url + "/v1/track",
        json={"event": "G", "userId": "u", "context": {"writeKey": KEY}},
        auth=(KEY, ""),
        timeout=5,
    )
    assert single.status_code == 200
    text = requests.get(collector.url + "/v1/events", params={"order": "asc"}, timeout=5).text
    assert KEY not in text
    events = json.loads(text)
    assert [event["event"] for event in events] == ["E", "F", "G"]
    assert events[1]["context"] == {"ip": "1"}
    content = b"".join(path.read_bytes() for path in Path(collector.db).parent.iterdir())
    assert KEY.encode() not in content


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track"])
def test_a_lone_surrogate_is_stored_as_a_replacement_character_on_every_route(collector, path):
    # What analytics-python sends for a file name decoded with surrogateescape; it was a 500
    # (which clients retry) for ids and event names, and stored unreadable elsewhere.
    message = (
        '{"type": "track", "userId": "u\\udc00", "event": "x\\udcff",'
        ' "properties": {"f": "\\ud800"}}'
    )
    body = message if path == "/v1/track" else '{"batch": [' + message + "]}"
    answer = requests.post(
        collector.url + path,
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        auth=("k", ""),
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    (event,) = collector.events()
    assert (event["userId"], event["event"], event["properties"]) == (
        "u\ufffd",
        "x\ufffd",
        {"f": "\ufffd"},
    )
    assert len(collector.events(user_id="u\ufffd")) == 1
