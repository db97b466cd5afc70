"""A stalled uploader's backlog is kept packed (compressed in runs), and nothing about what is
delivered, reported or kept in the spool changes: same messages, same bytes, same order."""

import json
import time

import pytest

from analytics_core import Client, packing
from analytics_core.encoding import MAX_MESSAGE_BYTES
from analytics_core.transport import RetryPolicy

pytestmark = pytest.mark.analytics_send


def test_pack_and_unpack_give_back_every_byte_in_order():
    messages = [
        b'{"type":"track","event":"A"}',
        json.dumps({"text": "héllo ✓ \U0001f600", "n": 1}, ensure_ascii=False).encode(),
        b"x" * (MAX_MESSAGE_BYTES - 1),  # the largest message the queue holds
        b"{}",
    ]
    run = packing.pack(messages)
    assert run.count == 4
    assert packing.unpack(run) == messages


@pytest.fixture
def clients():
    made = []
    yield made
    for client in made:
        client.shutdown(timeout=5)


def stalled_client(clients, collector, hold, **options):
    """A client whose first POST the collector holds for ``hold`` seconds (answering 200)."""
    collector.set_faults([{"status": 200, "delay": hold, "times": 1}])
    options.setdefault("host", collector.url)
    client = Client("wk-packed", max_queue_size=20_000, **options)
    client.transport.retry = RetryPolicy(max_retries=3, base=0.01, cap=0.05)
    clients.append(client)
    client.track("first", "Held", {"i": -1})
    client.flush(timeout=0.3)  # the uploader takes it and waits in the held POST
    deadline = time.monotonic() + 5
    while collector.stats()["requests"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.15)  # past STALL_AFTER: the uploader counts as stalled now
    return client


def test_a_stalled_backlog_is_packed_and_delivered_complete_and_in_order(clients, collector):
    client = stalled_client(clients, collector, hold=2.0)
    results = [client.track(f"user-{i % 7}", "Backlog", {"i": i}) for i in range(3000)]
    assert all(ok for ok, _ in results)
    pipeline = client.pipeline
    assert pipeline._packed, "a stalled uploader's backlog should have been packed"
    assert client.stats()["queued"] == 3001
    assert client.flush(timeout=30)
    stored = collector.events(limit=0)
    assert len(stored) == 3001
    # Stored in the order they were sent (the collector lists the newest first).
    order = [event["properties"]["i"] for event in reversed(stored)]
    assert order == list(range(-1, 3000))
    sent_ids = [message["messageId"] for _, message in results]
    assert [event["messageId"] for event in reversed(stored)][1:] == sent_ids
    stats = client.stats()
    assert (stats["delivered"], stats["dropped"], stats["failed"]) == (3001, 0, 0)


def test_a_shutdown_during_a_stall_reports_packed_messages_intact(clients, collector):
    reported = []
    client = stalled_client(
        clients, collector, hold=3.0, on_error=lambda error, items: reported.extend(items)
    )
    for i in range(1500):
        client.track("u", "Stranded", {"i": i, "text": "packed ✓"})
    assert client.pipeline._packed
    assert client.shutdown(timeout=0.5) is False
    # The held batch (message -1) and every waiting one, unpacked, in order, as they were.
    numbers = [item["properties"]["i"] for item in reported]
    assert numbers == list(range(-1, 1500))
    assert all(item["properties"].get("text", "packed ✓") == "packed ✓" for item in reported)
    assert client.stats()["failed"] == 1501


def test_a_stalled_backlog_with_a_spool_is_packed_and_the_spool_emptied(
    clients, collector, tmp_path
):
    path = str(tmp_path / "spool.db")
    client = stalled_client(clients, collector, hold=1.5, persist=path)
    for i in range(2000):
        client.track("u", "Spooled", {"i": i})
    assert client.pipeline._packed
    assert client.flush(timeout=30)
    assert collector.stats()["messages"] == 2001
    assert client.pipeline.spool.pending_count() == 0
