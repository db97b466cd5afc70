"""End-to-end delivery: Client and the module-level API against a REAL collector process.

Nothing here is mocked: every message goes over HTTP on 127.0.0.1 to the collector subprocess
(tests/support/collector_process.py), which validates and stores it the way Segment would.
"""

import datetime as dt
import decimal
import enum
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

import analytics_core
from analytics_core import (
    APIError,
    Client,
    MessageTooLargeError,
    QueueFullError,
    ValidationError,
    encoding,
)
from analytics_core.collector.access import write_key_fingerprint as fingerprint
from analytics_core.transport import RetryPolicy
from analytics_core.version import VERSION
from tests.support.forking import wait_child
from tests.support.wire import sent_part, wire

ROOT = Path(__file__).resolve().parents[1]
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
LIBRARY = {"name": "analytics-core", "version": VERSION}
COMMON_FIELDS = {"type", "messageId", "timestamp", "context", "integrations"}


def fast_retry(max_retries=3):
    return RetryPolicy(max_retries=max_retries, base=0.01, cap=0.05)


@pytest.fixture
def make_client(collector):
    """Build clients aimed at the collector with tiny retry backoff; shut them all down after."""
    clients = []

    def build(write_key="wk-test", retries=3, **options):
        options.setdefault("host", collector.url)
        client = Client(write_key, **options)
        client.transport.retry = fast_retry(retries)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.shutdown(timeout=2)


def assert_common(stored, kind, sent):
    assert stored["type"] == kind
    assert UUID4.match(stored["messageId"]), stored["messageId"]
    assert stored["messageId"] == sent["messageId"]
    stamp = dt.datetime.fromisoformat(stored["timestamp"])
    assert stamp.utcoffset() is not None
    assert stored["context"]["library"] == LIBRARY
    assert isinstance(stored["integrations"], dict)
    for field in ("userId", "anonymousId"):
        if field in stored:
            assert isinstance(stored[field], str)
    assert wire(stored) == sent_part(sent)  # what arrived is exactly what the call returned


def spy_bodies(client):
    """Record each batch body the transport posts, before gzip, whichever way it goes out
    (``send``, ``send_many`` or a retry); the real post still happens."""
    bodies = []
    original = client.transport._headers_and_data

    def recording(body):
        bodies.append(body)
        return original(body)

    client.transport._headers_and_data = recording
    return bodies


def by_message_id(events):
    result = {}
    for event in events:
        result.setdefault(event["messageId"], []).append(event)
    return result


def free_port():
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- every call type ----------------------------------------------------------------------------


def test_identify_positional_arguments(collector, make_client):
    client = make_client()
    stamp = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    ok, sent = client.identify(
        "user-1",
        {"email": "a@example.com"},
        {"ip": "10.0.0.1"},
        stamp,
        "anon-1",
        {"All": False},
        "msg-identify-1",
    )
    assert ok is True
    assert client.flush()
    (stored,) = collector.events(type="identify")
    assert stored["userId"] == "user-1"
    assert stored["anonymousId"] == "anon-1"
    assert stored["traits"] == {"email": "a@example.com"}
    assert stored["context"] == {"ip": "10.0.0.1", "library": LIBRARY}
    assert stored["timestamp"] == "2024-05-06T07:08:09+00:00"
    assert stored["integrations"] == {"All": False}
    assert stored["messageId"] == "msg-identify-1"
    assert stored["_write_key_fingerprint"] == fingerprint("wk-test")
    assert wire(stored) == sent_part(sent)


def test_track_positional_and_keyword_arguments(collector, make_client):
    client = make_client()
    ok1, positional = client.track("user-1", "Signed Up", {"plan": "Enterprise"})
    ok2, keyword = client.track(event="Logged In", anonymous_id="anon-9", properties={"n": 1})
    assert ok1 is True and ok2 is True
    assert client.flush()
    events = {event["event"]: event for event in collector.events(type="track")}
    assert set(events) == {"Signed Up", "Logged In"}
    signed = events["Signed Up"]
    assert_common(signed, "track", positional)
    assert signed["userId"] == "user-1"
    assert "anonymousId" not in signed
    assert signed["properties"] == {"plan": "Enterprise"}
    assert set(wire(signed)) == COMMON_FIELDS | {"userId", "event", "properties"}
    logged = events["Logged In"]
    assert_common(logged, "track", keyword)
    assert logged["anonymousId"] == "anon-9"
    assert "userId" not in logged
    assert logged["properties"] == {"n": 1}


def test_numeric_ids_arrive_as_strings(collector, make_client):
    client = make_client()
    client.track(42, "Numbered", anonymous_id=7)
    client.group(42, 1001, {"size": 3})
    client.alias(41, 42)
    assert client.flush()
    (track,) = collector.events(type="track")
    assert track["userId"] == "42" and track["anonymousId"] == "7"
    (group,) = collector.events(type="group")
    assert group["groupId"] == "1001" and group["userId"] == "42"
    (alias,) = collector.events(type="alias")
    assert alias["previousId"] == "41" and alias["userId"] == "42"


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen(collector, make_client, kind):
    client = make_client()
    call = getattr(client, kind)
    ok1, positional = call("user-1", "Docs", "Getting Started", {"path": "/docs"})
    ok2, keyword = call(anonymous_id="anon-2", name="Home", properties={"a": 1})
    ok3, bare = call("user-3")
    assert ok1 and ok2 and ok3
    assert client.flush()
    stored = {event["messageId"]: event for event in collector.events(type=kind)}
    assert len(stored) == 3
    first = stored[positional["messageId"]]
    assert_common(first, kind, positional)
    assert first["category"] == "Docs"
    assert first["name"] == "Getting Started"
    assert first["properties"] == {"path": "/docs"}
    second = stored[keyword["messageId"]]
    assert_common(second, kind, keyword)
    assert second["name"] == "Home" and "category" not in second
    assert second["anonymousId"] == "anon-2"
    third = stored[bare["messageId"]]
    assert_common(third, kind, bare)
    assert third["properties"] == {}


def test_group_positional_and_keyword(collector, make_client):
    client = make_client()
    _, positional = client.group("user-1", "company-1", {"name": "Initech", "employees": 120})
    _, keyword = client.group(anonymous_id="anon-1", group_id="company-2")
    assert client.flush()
    stored = {event["messageId"]: event for event in collector.events(type="group")}
    first = stored[positional["messageId"]]
    assert_common(first, "group", positional)
    assert first["groupId"] == "company-1"
    assert first["traits"] == {"name": "Initech", "employees": 120}
    second = stored[keyword["messageId"]]
    assert_common(second, "group", keyword)
    assert second["groupId"] == "company-2"
    assert second["traits"] == {}


def test_alias_positional_and_keyword(collector, make_client):
    client = make_client()
    ok, positional = client.alias("anon-old", "user-new")
    _, keyword = client.alias(previous_id="p-2", user_id="u-2", integrations={"Amplitude": True})
    assert ok is True
    assert client.flush()
    stored = {event["messageId"]: event for event in collector.events(type="alias")}
    first = stored[positional["messageId"]]
    assert_common(first, "alias", positional)
    assert first["previousId"] == "anon-old"
    assert first["userId"] == "user-new"
    assert "anonymousId" not in first
    assert set(wire(first)) == COMMON_FIELDS | {"previousId", "userId"}
    second = stored[keyword["messageId"]]
    assert second["integrations"] == {"Amplitude": True}


def test_every_call_returns_true_and_the_message(collector, make_client):
    client = make_client()
    results = [
        client.identify("u", {"a": 1}),
        client.track("u", "E"),
        client.page("u", name="P"),
        client.screen("u", name="S"),
        client.group("u", "g"),
        client.alias("old", "u"),
    ]
    for ok, message in results:
        assert ok is True
        assert isinstance(message, dict)
        assert message["context"]["library"] == LIBRARY
    assert client.flush()
    stored = {event["messageId"]: event["type"] for event in collector.events()}
    assert stored == {message["messageId"]: message["type"] for _, message in results}


def test_message_ids_are_unique_uuid4(collector, make_client):
    client = make_client()
    for index in range(300):
        client.track("u", "Many", {"i": index})
    assert client.flush()
    ids = [event["messageId"] for event in collector.events(limit=0)]
    assert len(ids) == 300
    assert len(set(ids)) == 300
    assert all(UUID4.match(message_id) for message_id in ids)
    assert all(uuid.UUID(message_id).version == 4 for message_id in ids)


# -- payload fidelity ---------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@pytest.mark.parametrize("encoder", ["orjson", "stdlib"])
def test_payload_fidelity(collector, make_client, encoder, caplog):
    if encoder == "stdlib":
        encoding.force_stdlib(True)  # the autouse fixture in conftest switches it back
    else:
        assert encoding.using_orjson()
    client = make_client()
    some_uuid = uuid.UUID("12345678-1234-4234-8234-123456789abc")
    properties = {
        "unicode": "héllo ✓ 日本語 🎉",
        "nested": {"a": [1, {"b": [2, 3, {"c": None}]}], "d": {"e": {"f": "deep"}}},
        "float": 0.1 + 0.2,
        "negative": -1.5e-7,
        "int64": 2**63 - 1,
        "big": 2**70,
        "naive": dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        "aware": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "date": dt.date(2024, 1, 2),
        "decimal": decimal.Decimal("12.50"),
        "uuid": some_uuid,
        "enum": Color.RED,
        "enum_int": Color.BLUE,
        "set": {3, 1, 2},
        "tuple": (1, "two"),
        "bytes": b"raw",
        "none": None,
        "bool": True,
        "dropped": object(),
    }
    with caplog.at_level(logging.WARNING, logger="segment"):
        ok, _ = client.track(
            "user-ü", "Fidelity ✓", properties, timestamp=dt.datetime(2023, 12, 31, 23, 59, 59)
        )
    assert ok is True
    assert client.flush()
    (stored,) = collector.events(type="track")
    got = stored["properties"]
    assert stored["userId"] == "user-ü"
    assert stored["event"] == "Fidelity ✓"
    assert stored["timestamp"] == "2023-12-31T23:59:59+00:00"
    assert got["unicode"] == "héllo ✓ 日本語 🎉"
    assert got["nested"] == {"a": [1, {"b": [2, 3, {"c": None}]}], "d": {"e": {"f": "deep"}}}
    assert got["float"] == 0.1 + 0.2
    assert got["negative"] == -1.5e-7
    assert got["int64"] == 2**63 - 1
    assert got["big"] == 2**70
    assert got["naive"] == "2024-01-02T03:04:05.123456"  # as given, as analytics-python sends it
    assert got["aware"] == "2024-01-02T03:04:05+02:00"
    assert got["date"] == "2024-01-02"
    assert got["decimal"] == 12.5
    assert got["uuid"] == str(some_uuid)
    assert got["enum"] == "red"
    assert got["enum_int"] == 2
    assert sorted(got["set"]) == [1, 2, 3]
    assert got["tuple"] == [1, "two"]
    assert got["bytes"] == "raw"
    assert got["none"] is None
    assert got["bool"] is True
    assert "dropped" not in got
    assert any("dropped" in record.getMessage() for record in caplog.records)


def test_caller_changes_after_the_call_do_not_leak_in(collector, make_client):
    client = make_client()
    properties = {"step": 1}
    client.track("u", "Snapshot", properties)
    properties["step"] = 2
    properties["late"] = True
    assert client.flush()
    (stored,) = collector.events(type="track")
    assert stored["properties"] == {"step": 1}


# -- batching -----------------------------------------------------------------------------------


def test_upload_size_limits_messages_per_batch(collector, make_client):
    client = make_client(upload_size=10, upload_interval=5)
    bodies = spy_bodies(client)
    sent = [client.track("u", "Batched", {"i": index})[1]["messageId"] for index in range(35)]
    assert client.flush()
    stats = collector.stats()
    assert stats["batches"] >= 4
    assert stats["messages"] == 35
    sizes = [len(json.loads(body)["batch"]) for body in bodies]
    assert sum(sizes) == 35
    assert max(sizes) <= 10
    stored = by_message_id(collector.events(limit=0))
    assert set(stored) == set(sent)
    assert all(len(copies) == 1 for copies in stored.values())


def test_full_upload_size_batch_leaves_without_flush(collector, make_client):
    client = make_client(upload_size=10, upload_interval=60)
    for index in range(10):
        client.track("u", "Count trigger", {"i": index})
    stored = collector.wait_for(10, timeout=5)
    assert len(stored) == 10


def test_batch_byte_limit_splits_big_messages(collector, make_client):
    client = make_client(upload_interval=5)
    bodies = spy_bodies(client)
    blob = "x" * 20_000
    sent = [client.track("u", "Big", {"i": index, "blob": blob})[1] for index in range(40)]
    assert all(len(json.dumps(message)) > 20_000 for message in sent)
    assert client.flush()
    assert len(bodies) >= 2
    assert all(len(body) < 500 * 1024 for body in bodies)
    assert sum(len(json.loads(body)["batch"]) for body in bodies) == 40
    stats = collector.stats()
    assert stats["batches"] >= 2
    assert stats["rejected"] == 0
    assert stats["messages"] == 40


def test_batch_byte_limit_sends_without_waiting_for_the_interval(collector, make_client):
    # More than one batch's worth of bytes is queued: a batch is due now, not in a minute.
    client = make_client(upload_interval=60)
    blob = "y" * 20_000
    for index in range(40):
        client.track("u", "Bytes trigger", {"i": index, "blob": blob})
    stored = collector.wait_for(20, timeout=5)
    assert len(stored) >= 20


def test_upload_interval_sends_a_single_event_without_flush(collector, make_client):
    client = make_client(upload_interval=0.2)
    _, sent = client.track("u", "Lonely")
    (stored,) = collector.wait_for(1, timeout=5)
    assert stored["messageId"] == sent["messageId"]


# -- flush --------------------------------------------------------------------------------------


def test_flush_blocks_until_everything_is_stored(collector, make_client):
    client = make_client(upload_interval=30, upload_size=7)
    for index in range(25):
        client.track("u", "Flushed", {"i": index})
    assert client.flush() is True
    assert collector.stats()["messages"] == 25  # no polling: flush already waited
    assert client.stats()["delivered"] == 25
    assert client.stats()["queued"] == 0


def test_flush_with_nothing_queued_returns_at_once(collector, make_client):
    client = make_client()
    assert client.flush() is True
    assert collector.stats()["requests"] == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_flush_returns_when_the_uploader_thread_died(collector, make_client):
    """An on_error handler that calls sys.exit() ends the uploader thread (SystemExit is not an
    Exception); flush must then deliver from the caller's thread instead of waiting forever."""
    died = []

    def on_error(error, items):
        died.append(threading.current_thread())
        raise SystemExit(3)

    client = make_client(on_error=on_error, upload_interval=30)
    collector.set_faults([{"status": 400, "times": 1}])
    client.track("u", "Rejected")
    assert client.flush() is True
    assert len(died) == 1
    died[0].join(5)
    assert not died[0].is_alive()
    assert client.pipeline._threads and not any(t.is_alive() for t in client.pipeline._threads)

    _, second = client.track("u", "After death 1")
    _, third = client.track("u", "After death 2")
    assert client.flush(timeout=10) is True
    stored = {event["messageId"] for event in collector.events()}
    assert stored == {second["messageId"], third["messageId"]}


def test_flush_after_join_restarts_delivery(collector, make_client):
    client = make_client(upload_interval=30)
    client.track("u", "Before join")
    assert client.join() is True
    assert not any(thread.is_alive() for thread in client.pipeline._threads)
    client.track("u", "After join")
    assert client.flush() is True
    assert {event["event"] for event in collector.events()} == {"Before join", "After join"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_flush_in_a_forked_child(collector, make_client):
    client = make_client(upload_interval=30)
    parent_ids = [client.track("parent", "Before fork", {"i": i})[1]["messageId"] for i in range(5)]
    assert client.pipeline.pending() == 5  # still queued in the parent at fork time

    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            if client.pipeline.pending() != 0:
                code = 2  # the parent's queue must not be inherited
            else:
                ok, message = client.track("child", "In child")
                code = 0 if ok and client.flush(timeout=10) else 3
                if message["messageId"] in parent_ids:
                    code = 4
        except BaseException:  # noqa: BLE001 - any failure becomes an exit code
            code = 5
        finally:
            os._exit(code)

    assert wait_child(pid, 20.0) == 0
    (child_event,) = collector.events(user_id="child")
    assert child_event["event"] == "In child"
    assert collector.events(user_id="parent") == []  # the child did not send the parent's queue

    assert client.flush() is True
    parent_events = by_message_id(collector.events(user_id="parent", limit=0))
    assert set(parent_events) == set(parent_ids)
    assert all(len(copies) == 1 for copies in parent_events.values())
    assert collector.stats()["messages"] == 6


# -- retries end to end -------------------------------------------------------------------------


def test_500_twice_then_delivered_exactly_once(collector, make_client):
    errors = []
    client = make_client(on_error=lambda e, items: errors.append(e), upload_interval=30)
    collector.set_faults([{"status": 500, "times": 2}])
    sent = [client.track("u", "Retried", {"i": i})[1]["messageId"] for i in range(5)]
    assert client.flush()
    stored = by_message_id(collector.events(limit=0))
    assert set(stored) == set(sent)
    assert all(len(copies) == 1 for copies in stored.values())
    assert collector.stats()["requests"] == 3
    assert client.stats()["retried"] == 2
    assert client.stats()["delivered"] == 5
    assert errors == []


def test_429_with_retry_after_is_honoured(collector, make_client):
    client = make_client(upload_interval=30)
    collector.set_faults([{"status": 429, "retry_after": "1", "times": 1}])
    started = time.monotonic()
    client.track("u", "Throttled")
    assert client.flush()
    elapsed = time.monotonic() - started
    assert len(collector.events(event="Throttled")) == 1
    # Event.wait(1.0) may wake a hair early on a coarse clock; the tiny backoff policy alone would
    # have retried within 50 ms.
    assert elapsed >= 0.98
    assert collector.stats()["requests"] == 2


def test_400_reports_the_batch_and_the_next_batch_still_goes_out(collector, make_client):
    reports = []
    client = make_client(on_error=lambda e, items: reports.append((e, items)), upload_interval=30)
    collector.set_faults([{"status": 400, "times": 1}])
    rejected = [client.track("u", "Rejected", {"i": i})[1] for i in range(3)]
    assert client.flush()
    assert len(reports) == 1
    error, items = reports[0]
    assert isinstance(error, APIError)
    assert error.status == 400
    assert isinstance(items, list) and all(isinstance(item, dict) for item in items)
    assert [item["messageId"] for item in items] == [m["messageId"] for m in rejected]
    assert items == rejected
    assert collector.stats()["requests"] == 1  # not retried
    assert client.stats()["failed"] == 3

    _, accepted = client.track("u", "Accepted")
    assert client.flush()
    assert [event["messageId"] for event in collector.events()] == [accepted["messageId"]]
    assert len(reports) == 1


def test_exhausted_retries_report_the_batch(collector, make_client, caplog):
    reports = []
    client = make_client(
        on_error=lambda e, items: reports.append((e, items)), retries=2, upload_interval=30
    )
    collector.set_faults([{"status": 503, "times": 10}])
    sent = [client.track("u", "Lost", {"i": i})[1]["messageId"] for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="segment"):
        assert client.flush()
    assert collector.stats()["requests"] == 3  # max_retries=2: three tries in all
    assert len(reports) == 1
    error, items = reports[0]
    assert isinstance(error, APIError) and error.status == 503
    assert [item["messageId"] for item in items] == sent
    assert collector.stats()["messages"] == 0
    assert any("could not deliver 4" in record.getMessage() for record in caplog.records)


def test_on_error_raising_does_not_kill_the_uploader(collector, make_client, caplog):
    calls = []

    def on_error(error, items):
        calls.append(error)
        raise RuntimeError("handler is broken")

    client = make_client(on_error=on_error, upload_interval=30)
    collector.set_faults([{"status": 400, "times": 1}])
    with caplog.at_level(logging.WARNING, logger="segment"):
        client.track("u", "First")
        assert client.flush()
    assert len(calls) == 1
    assert any(t.is_alive() for t in client.pipeline._threads)
    logged = [r for r in caplog.records if "on_error handler raised" in r.getMessage()]
    assert logged and logged[0].exc_info and logged[0].exc_info[0] is RuntimeError

    client.track("u", "Second")
    assert client.flush()
    assert [event["event"] for event in collector.events()] == ["Second"]


# -- gzip ---------------------------------------------------------------------------------------


def test_batches_arrive_in_the_order_tracked(collector, make_client):
    # Each POST is held 20 ms, so the queue fills up behind the uploader.
    collector.set_faults([{"status": 200, "delay": 0.02, "times": 1000}])
    client = make_client(retries=0, upload_size=50, max_queue_size=10_000)
    ids = [f"m-{n:05d}" for n in range(3000)]
    for message_id in ids:
        client.track("u", "Ordered", message_id=message_id)
    assert client.flush(timeout=60)
    stored = [event["messageId"] for event in collector.events(limit=0, order="asc")]
    assert stored == ids


def test_gzip_end_to_end(collector, make_client):
    client = make_client(gzip=True, upload_size=20, upload_interval=30)
    sent = [client.track("u", "Zipped ✓", {"i": i, "pad": "z" * 500})[1] for i in range(50)]
    assert client.flush()
    stored = {event["messageId"]: event for event in collector.events(limit=0)}
    assert set(stored) == {message["messageId"] for message in sent}
    assert all(wire(stored[m["messageId"]]) == sent_part(m) for m in sent)
    assert collector.stats()["rejected"] == 0


def test_gzip_request_is_really_compressed(collector, make_client):
    client = make_client(gzip=True, sync_mode=True)
    session = client.transport._session()  # sync mode posts from this thread's session
    seen = []
    original_send = session.send

    def recording_send(request, **kwargs):
        seen.append(request)
        return original_send(request, **kwargs)

    session.send = recording_send
    ok, _ = client.track("u", "Compressed", {"pad": "q" * 5000})
    assert ok is True
    (request,) = seen
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.body[:2] == b"\x1f\x8b"
    assert len(request.body) < 5000
    assert len(collector.events(event="Compressed")) == 1


# -- sync mode, send=False ----------------------------------------------------------------------


def _uploader_threads():
    return {t for t in threading.enumerate() if t.name.startswith("analytics-uploader-")}


def test_sync_mode_posts_on_the_callers_thread(collector, make_client):
    before = _uploader_threads()
    client = make_client(sync_mode=True)
    threads = []
    original = client.transport.post_once

    def recording(body):
        threads.append(threading.current_thread())
        return original(body)

    client.transport.post_once = recording
    ok, sent = client.track("u", "Synchronous")
    assert ok is True
    assert collector.stats()["messages"] == 1  # stored before the call returned
    (stored,) = collector.events()
    assert stored["messageId"] == sent["messageId"]
    assert threads == [threading.current_thread()]
    assert client.pipeline._threads == []
    assert _uploader_threads() - before == set()


def test_sync_mode_failure_returns_false_and_calls_on_error(collector, make_client):
    reports = []
    client = make_client(sync_mode=True, on_error=lambda e, items: reports.append((e, items)))
    collector.set_faults([{"status": 400, "times": 1}])
    ok, sent = client.track("u", "Refused")
    assert ok is False
    assert len(reports) == 1
    error, items = reports[0]
    assert isinstance(error, APIError) and error.status == 400
    assert items == [sent]
    assert collector.stats()["messages"] == 0

    ok, _ = client.track("u", "Fine")
    assert ok is True
    assert collector.stats()["messages"] == 1


def test_sync_mode_retries_then_succeeds(collector, make_client):
    client = make_client(sync_mode=True)
    collector.set_faults([{"status": 502, "times": 2}])
    ok, _ = client.track("u", "Eventually")
    assert ok is True
    assert collector.stats() == {"requests": 3, "batches": 1, "messages": 1, "rejected": 0}


def test_send_false_sends_nothing_but_still_validates(collector, make_client):
    before = _uploader_threads()
    client = make_client(send=False)
    ok, message = client.track("u", "Not sent", {"a": 1})
    assert ok is True
    assert message["event"] == "Not sent"
    assert client.identify("u", {"b": 2})[0] is True
    with pytest.raises(ValidationError, match="user_id or anonymous_id"):
        client.track(event="No identity")
    with pytest.raises(ValidationError, match="event"):
        client.track("u", 123)
    with pytest.raises(ValidationError, match="traits"):
        client.identify("u", ["not", "a", "dict"])
    with pytest.raises(ValidationError, match="bogus"):
        client.track("u", "E", bogus=1)
    assert client.flush() is True
    assert client.pipeline._threads == []
    assert _uploader_threads() - before == set()
    assert collector.stats()["requests"] == 0


def test_send_false_needs_no_write_key(collector):
    client = Client(send=False)
    assert client.track("u", "Keyless")[0] is True
    with pytest.raises(ValidationError, match="write_key"):
        Client(host=collector.url)


# -- several clients, module-level API ----------------------------------------------------------


def test_clients_with_different_write_keys_side_by_side(collector, make_client):
    first = make_client("key-one")
    second = make_client("key-two", gzip=True)
    third = make_client("key-three", sync_mode=True)
    for index in range(5):
        first.track("u1", "One", {"i": index})
        second.track("u2", "Two", {"i": index})
        third.track("u3", "Three", {"i": index})
    assert first.flush() and second.flush()
    for key, event in (("key-one", "One"), ("key-two", "Two"), ("key-three", "Three")):
        stored = collector.events(write_key=key)
        assert len(stored) == 5
        assert {e["event"] for e in stored} == {event}
        assert {e["_write_key_fingerprint"] for e in stored} == {fingerprint(key)}


def test_module_level_api(collector):
    assert analytics_core.default_client is None
    analytics_core.write_key = "module-key"
    analytics_core.host = collector.url
    analytics_core.upload_interval = 30
    # As in analytics-python, flush() builds default_client from the settings.
    assert analytics_core.flush() is True
    assert analytics_core.default_client is not None

    ok, sent = analytics_core.track("f4ca124298", "Signed Up", {"plan": "Enterprise"})
    assert ok is True
    client = analytics_core.default_client
    assert isinstance(client, Client)
    assert client.pipeline.upload_interval == 30
    client.transport.retry = fast_retry()
    analytics_core.identify("f4ca124298", {"email": "a@example.com"})
    analytics_core.page("f4ca124298", "Docs", "Home")
    analytics_core.screen("f4ca124298", name="Main")
    analytics_core.group("f4ca124298", "g-1")
    analytics_core.alias("anon", "f4ca124298")
    assert analytics_core.default_client is client  # built once, reused
    assert analytics_core.flush() is True
    stored = collector.events(limit=0)
    assert len(stored) == 6
    assert {event["_write_key_fingerprint"] for event in stored} == {fingerprint("module-key")}
    assert {event["type"] for event in stored} == {
        "track",
        "identify",
        "page",
        "screen",
        "group",
        "alias",
    }
    (track,) = collector.events(type="track")
    assert wire(track) == sent_part(sent)


def test_every_client_option_of_ours_is_a_module_setting_too(collector):
    # The settings beyond analytics-python's reach the default client as well: a job worker
    # sets a short exit bound with the module-level API it uses everywhere else.
    analytics_core.write_key = "module-key"
    analytics_core.host = collector.url
    analytics_core.shutdown_timeout = 2
    analytics_core.on_full = "block"
    analytics_core.on_full_timeout = 3
    analytics_core.track("u", "Configured")
    client = analytics_core.default_client
    assert (client.shutdown_timeout, client.on_full, client.on_full_timeout) == (2, "block", 3)


def test_module_level_api_without_write_key_raises(collector):
    analytics_core.host = collector.url
    with pytest.raises(ValidationError, match="write_key"):
        analytics_core.track("u", "No key")
    assert collector.stats()["requests"] == 0


# -- data-dependent refusals --------------------------------------------------------------------


def test_queue_full(collector, make_client, caplog):
    reports = []
    client = make_client(
        max_queue_size=5,
        upload_size=1,
        upload_interval=0,
        on_error=lambda e, items: reports.append((e, items)),
    )
    # The first request is stored but answered late; meanwhile the queue fills up.
    collector.set_faults([{"status": 200, "delay": 1.0, "times": 1}])
    with caplog.at_level(logging.WARNING, logger="segment"):
        results = [client.track("u", "Crowded", {"i": i}) for i in range(15)]
    accepted = [message for ok, message in results if ok]
    refused = [message for ok, message in results if not ok]
    assert len(refused) >= 15 - 5  # five held at most, the one in flight included
    assert client.stats()["dropped"] == len(refused)
    assert len(reports) == len(refused)
    assert all(isinstance(error, QueueFullError) for error, _ in reports)
    assert [items for _, items in reports] == [[message] for message in refused]
    assert any("queue is full" in record.getMessage() for record in caplog.records)

    assert client.flush()
    stored = {event["messageId"] for event in collector.events(limit=0)}
    assert stored == {message["messageId"] for message in accepted}


def test_message_over_32kb_is_refused(collector, make_client, caplog):
    reports = []
    client = make_client(on_error=lambda e, items: reports.append((e, items)))
    with caplog.at_level(logging.WARNING, logger="segment"):
        ok, message = client.track("u", "Huge", {"blob": "x" * 40_000})
    assert ok is False
    assert message["event"] == "Huge"
    assert len(reports) == 1
    error, items = reports[0]
    assert isinstance(error, MessageTooLargeError)
    assert items == [message]
    warnings = [r for r in caplog.records if r.name == "segment" and r.levelno == logging.WARNING]
    assert any(message["messageId"] in r.getMessage() for r in warnings)
    assert client.stats()["dropped"] == 1

    ok, _ = client.track("u", "Small")
    assert ok is True
    assert client.flush()
    assert [event["event"] for event in collector.events()] == ["Small"]


def test_message_just_under_32kb_is_delivered(collector, make_client):
    client = make_client()
    ok, message = client.track("u", "Nearly huge", {"blob": "x" * 30_000})
    assert ok is True
    assert client.flush()
    (stored,) = collector.events()
    assert len(stored["properties"]["blob"]) == 30_000


# -- at exit (real subprocesses) ----------------------------------------------------------------


def _run_script(source, timeout=30):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(ROOT),
    )


def test_atexit_delivers_everything(collector):
    script = f"""
        import analytics_core as analytics
        analytics.write_key = "exit-key"
        analytics.host = {collector.url!r}
        analytics.upload_interval = 30
        for i in range(57):
            analytics.track("exiting-user", "At exit", {{"i": i}})
        client = analytics.Client("exit-key-2", host={collector.url!r}, upload_interval=30)
        client.identify("exiting-user", {{"n": 1}})
        print("queued", analytics.default_client.pipeline.pending())
    """
    result = _run_script(script)
    assert result.returncode == 0, result.stderr
    assert "queued 57" in result.stdout  # nothing was sent before exit
    stored = collector.events(user_id="exiting-user", limit=0)
    assert len(stored) == 58
    assert sorted(e["properties"]["i"] for e in stored if e["type"] == "track") == list(range(57))
    assert len({e["messageId"] for e in stored}) == 58


@pytest.mark.slow
def test_atexit_with_the_collector_down_reports_and_exits():
    dead = f"http://127.0.0.1:{free_port()}"
    script = f"""
        import analytics_core as analytics

        def on_error(error, items):
            print("on_error", type(error).__name__, len(items), flush=True)

        client = analytics.Client("down-key", host={dead!r}, on_error=on_error,
                                  shutdown_timeout=1, upload_interval=30)
        for i in range(9):
            client.track("u", "Undeliverable", {{"i": i}})
    """
    result = _run_script(script, timeout=30)  # default retries alone would take minutes
    assert result.returncode == 0, result.stderr
    reported = re.findall(r"on_error (\w+) (\d+)", result.stdout)
    assert reported, result.stdout + result.stderr
    assert sum(int(count) for _, count in reported) == 9
