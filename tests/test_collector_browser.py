"""What a web page can and cannot do to a running collector, shown in a real headless Chromium
(issue 13, parts 1 and 2).

Chromium resolves ``rebind.test`` and ``evil.test`` to 127.0.0.1 (``--host-resolver-rules``):
the first stands for a DNS-rebinding attack (a page whose own name now points at the
collector), the second for any site on the internet that the developer has open.
"""

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from analytics_core.collector.access import write_key_fingerprint as fingerprint
from tests.support.browser import chromium

from .support.collector_process import CollectorProcess

KEY = "wk-browser-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def browser():
    yield from chromium("--host-resolver-rules=MAP rebind.test 127.0.0.1, MAP evil.test 127.0.0.1")


@pytest.fixture
def context(browser):
    context = browser.new_context()
    yield context
    context.close()


def track(collector, event: str, key: str = "wk-test") -> None:
    response = requests.post(
        collector.url + "/v1/batch",
        json={"batch": [{"type": "track", "event": event, "userId": "u"}]},
        auth=(key, ""),
        timeout=5,
    )
    assert response.status_code == 200, response.text


def rows_text(page, count: int) -> str:
    page.wait_for_function(
        "count => document.querySelectorAll('#events tr').length === count",
        arg=count,
        timeout=10000,
    )
    return page.locator("#events").inner_text()


# -- part 1: one event must not blank the page ---------------------------------------------------


def test_a_nan_stored_before_does_not_blank_the_page_for_later_events(tmp_path, context):
    db = tmp_path / "events.db"
    with sqlite3.connect(str(db)) as conn:  # as an older collector stored analytics-python's NaN
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL,"
            " write_key TEXT NOT NULL, type TEXT NOT NULL, event TEXT, user_id TEXT,"
            " anonymous_id TEXT, message_id TEXT, json TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO events (received_at, write_key, type, event, json) VALUES (?, ?, ?, ?, ?)",
            (
                "2026-01-01T00:00:00+00:00",
                "k",
                "track",
                "Ratio",
                '{"type": "track", "event": "Ratio", "userId": "u", "properties": {"r": NaN}}',
            ),
        )
    with CollectorProcess(str(db)) as collector:
        page = context.new_page()
        page.goto(collector.url + "/")
        assert "Ratio" in rows_text(page, 1)
        track(collector, "After The NaN")
        assert "After The NaN" in rows_text(page, 2)
        assert page.locator("#status").inner_text() == "live"
        page.locator("#events tr", has_text="Ratio").click()
        assert json.loads(page.locator("#event-json").inner_text())["properties"] == {"r": None}


def test_the_api_refuses_nan_and_the_page_stays_live(collector, context):
    # What analytics-python sends for float("nan"): refused as Segment refuses invalid JSON.
    body = '{"batch": [{"type": "track", "event": "Nan", "userId": "u", "properties": {"r": NaN}}]}'
    refused = requests.post(
        collector.url + "/v1/batch",
        data=body,
        headers={"Content-Type": "application/json"},
        auth=("k", ""),
        timeout=5,
    )
    assert refused.status_code == 400 and refused.json()["code"] == "invalid-json"
    track(collector, "Valid")
    page = context.new_page()
    page.goto(collector.url + "/")
    assert "Valid" in rows_text(page, 1)
    assert page.locator("#status").inner_text() == "live"


# -- part 2: the write key -----------------------------------------------------------------------


def test_with_a_write_key_the_page_asks_for_it_once_per_tab_and_never_shows_it(context, browser):
    with CollectorProcess(write_key=KEY) as collector:
        track(collector, "Secret Order", key=KEY)
        page = context.new_page()
        page.goto(collector.url + "/")
        form = page.locator("#key-form")
        form.wait_for(state="visible")
        assert "write key" in page.locator("#status").inner_text()
        assert page.locator("#events tr").count() == 0

        page.fill("#key-input", "not-the-key")
        page.click("#key-form button")
        page.wait_for_function(
            "() => document.getElementById('status').innerText.includes('not this collector')"
        )
        page.fill("#key-input", KEY)
        page.click("#key-form button")
        text = rows_text(page, 1)
        assert "Secret Order" in text and fingerprint(KEY) in text
        assert KEY not in page.content()
        assert form.is_hidden()

        page.reload()  # the same tab keeps it
        assert "Secret Order" in rows_text(page, 1)

        other = browser.new_context()  # another tab does not
        try:
            fresh = other.new_page()
            fresh.goto(collector.url + "/")
            fresh.locator("#key-form").wait_for(state="visible")
        finally:
            other.close()


# -- part 2: DNS rebinding and other sites ---------------------------------------------------------


def test_a_rebound_name_gets_nothing_and_changes_nothing(collector, context):
    track(collector, "Kept")
    port = collector.url.rsplit(":", 1)[1]
    page = context.new_page()
    for path in ("/", "/v1/events", "/v1/stats"):
        response = page.goto(f"http://rebind.test:{port}{path}")
        assert response.status == 403, path
        assert response.json()["code"] == "host-not-allowed"
    # Same-origin in the browser's eyes: a DELETE needs no preflight, and still does nothing.
    status = page.evaluate("async () => (await fetch('/v1/events', {method: 'DELETE'})).status")
    assert status == 403
    assert [event["event"] for event in collector.events()] == ["Kept"]


class _Site(BaseHTTPRequestHandler):
    """Any site on the internet: one page, whose scripts the test runs."""

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def evil_site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://evil.test:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


ATTEMPTS = """async (collector) => {
    const outcome = async (request) => {
        try { const response = await request(); return "answered " + response.status; }
        catch (error) { return "blocked"; }
    };
    return {
        remove: await outcome(() => fetch(collector + "/v1/events", {method: "DELETE"})),
        read: await outcome(() => fetch(collector + "/v1/events")),
        faults: await outcome(() => fetch(collector + "/_faults", {
            method: "POST", headers: {"Content-Type": "application/json"}, body: "[]"})),
        send: await outcome(() => fetch(collector + "/v1/batch", {
            method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
            body: JSON.stringify({writeKey: "page-key",
                                  batch: [{type: "track", event: "From A Page", userId: "x"}]}),
        })),
    };
}"""


def test_another_site_cannot_read_or_delete_and_can_only_send(collector, context, evil_site):
    track(collector, "Kept")
    page = context.new_page()
    page.goto(evil_site)
    outcome = page.evaluate(ATTEMPTS, collector.url)
    # No CORS grant: the browser does not let the page see an answer, and sends a DELETE or a
    # JSON POST only after a preflight that the collector refuses.
    assert outcome["remove"] == "blocked"
    assert outcome["read"] == "blocked"
    assert outcome["faults"] == "blocked"
    # Sending events is what the Tracking API is for, from any page (analytics.js does it):
    # the answer is opaque to the page. --write-key is how to refuse strangers' events.
    assert outcome["send"] == "answered 0"
    events = collector.wait_for(2)
    assert sorted(event["event"] for event in events) == ["From A Page", "Kept"]
    assert collector.faults() == []


def test_with_a_write_key_another_sites_events_are_refused(context, evil_site):
    with CollectorProcess(write_key=KEY) as collector:
        page = context.new_page()
        page.goto(evil_site)
        outcome = page.evaluate(ATTEMPTS, collector.url)
        assert outcome["send"] == "answered 0"
        assert collector.stats()["rejected"] == 1
        assert collector.events() == []
