"""What a full queue does (``on_full``), the client's counters, and the bounded sync_mode."""

import logging
import socket
import threading
import time

import pytest

from analytics_core import Client, QueueFullError, ValidationError
from analytics_core.transport import RetryPolicy

# These tests are about delivery: their messages really go out (the pytest plugin
# captures every other test's).
pytestmark = pytest.mark.analytics_send


def fast(client, retries=3):
    client.transport.retry = RetryPolicy(max_retries=retries, base=0.01, cap=0.05)
    return client


@pytest.fixture
def clients():
    made = []
    yield made
    for client in made:
        client.shutdown(timeout=2)


def make(clients, collector, **options):
    options.setdefault("host", collector.url)
    client = fast(Client("wk-policy", **options))
    clients.append(client)
    return client


def assert_balanced(stats):
    finished = stats["queued"] + stats["delivered"] + stats["failed"]
    assert stats["accepted"] + stats["recovered"] == finished, stats


def test_on_full_is_validated():
    with pytest.raises(ValidationError, match="on_full"):
        Client("k", on_full="wait")
    with pytest.raises(ValidationError, match="on_full_timeout"):
        Client("k", on_full="block", on_full_timeout=-1)


def test_block_loses_nothing_from_a_tight_loop_with_a_tiny_queue(clients, collector):
    client = make(clients, collector, max_queue_size=20, on_full="block")
    results = [client.track("importer", "Imported", {"row": row}) for row in range(3000)]
    assert all(ok for ok, _ in results)
    assert client.flush(timeout=30)
    assert collector.stats()["messages"] == 3000
    stats = client.stats()
    assert (stats["accepted"], stats["delivered"], stats["dropped"]) == (3000, 3000, 0)
    assert_balanced(stats)


def test_a_tight_loop_outrunning_the_network_is_slowed_not_dropped(clients, collector):
    # Each POST takes 20 ms: 100 events per 20 ms is far slower than a tight loop. With the
    # default on_full (drop), the caller is paced once the queue is three quarters full, so
    # nothing is lost; each paced call waits at most PACE_WAIT.
    client = make(clients, collector, max_queue_size=1000)
    collector.set_faults([{"status": 200, "delay": 0.02, "times": 1000}])
    results = [client.track("importer", "Imported", {"row": row})[0] for row in range(6000)]
    assert results.count(False) == 0
    assert client.flush(timeout=60)
    assert collector.stats()["messages"] == 6000
    stats = client.stats()
    assert (stats["accepted"], stats["delivered"], stats["dropped"]) == (6000, 6000, 0)
    assert_balanced(stats)


def test_while_the_api_fails_a_full_queue_still_drops(clients, collector):
    # Pacing only slows a caller while batches get delivered: with every POST failing (and
    # retried), the queue fills and overflow is dropped and reported as before.
    reports = []
    client = make(
        clients, collector, max_queue_size=200, on_error=lambda error, items: reports.extend(items)
    )
    collector.set_faults([{"status": 500, "times": 1000}])
    results = [client.track("u", "Refused", {"i": i})[0] for i in range(2000)]
    assert results.count(False) >= 1000
    assert client.stats()["dropped"] == results.count(False)
    collector.clear_faults()
    assert client.flush(timeout=30)
    assert_balanced(client.stats())


def test_block_gives_up_after_on_full_timeout_and_reports(clients, collector):
    reports = []
    client = make(
        clients,
        collector,
        max_queue_size=2,
        upload_size=1,
        upload_interval=0,
        on_full="block",
        on_full_timeout=0.3,
        on_error=lambda error, items: reports.append((error, items)),
    )
    # The first batch is answered late; the queue fills behind it and stays full (the message
    # in flight counts against max_queue_size: two held in memory at most).
    collector.set_faults([{"status": 200, "delay": 3.0, "times": 1}])
    outcomes = []
    started = time.monotonic()
    for number in range(3):
        outcomes.append(client.track("u", "Waiting", {"n": number})[0])
    elapsed = time.monotonic() - started
    assert outcomes == [True, True, False]
    assert elapsed >= 0.29  # it waited for room before refusing
    ((error, items),) = reports
    assert isinstance(error, QueueFullError)
    assert "on_full_timeout=0.3" in str(error)
    assert items[0]["properties"] == {"n": 2}
    assert client.flush(timeout=10)
    assert collector.stats()["messages"] == 2
    stats = client.stats()
    assert (stats["accepted"], stats["delivered"], stats["dropped"]) == (2, 2, 1)


def test_drop_is_the_default_and_warnings_are_rate_limited(clients, collector, caplog):
    reports = []
    client = make(
        clients,
        collector,
        max_queue_size=5,
        upload_size=1,
        upload_interval=0,
        on_error=lambda error, items: reports.extend(items),
    )
    collector.set_faults([{"status": 200, "delay": 1.0, "times": 1}])
    with caplog.at_level(logging.WARNING, logger="segment"):
        results = [client.track("u", "Crowded", {"i": i})[0] for i in range(500)]
    refused = results.count(False)
    assert refused >= 500 - 5 - 1
    assert len(reports) == refused == client.stats()["dropped"]
    full = [record for record in caplog.records if "queue is full" in record.getMessage()]
    assert len(full) == 1  # one line, not one per refused message
    assert client.flush(timeout=10)
    assert_balanced(client.stats())


def test_counters_add_up_through_retries_rejections_and_delivery(clients, collector):
    failed_items = []
    client = make(
        clients,
        collector,
        upload_size=10,
        upload_interval=30,
        on_error=lambda error, items: failed_items.extend(items),
    )
    collector.set_faults([{"status": 500, "times": 2}, {"status": 400, "times": 1}])
    for number in range(30):
        client.track("u", "Counted", {"n": number})
    middle = client.stats()
    assert_balanced(middle)
    assert middle["accepted"] == 30
    assert client.flush(timeout=10)
    stats = client.stats()
    assert stats == {
        "accepted": 30,
        "recovered": 0,
        "queued": 0,
        "delivered": 20,
        "failed": 10,
        "dropped": 0,
        "retried": 2,
    }
    assert len(failed_items) == 10
    assert collector.stats()["messages"] == 20


def test_an_on_error_that_tracks_never_blocks_the_uploader(clients, collector):
    # Blocking inside the uploader would stall the only thread that can make room.
    seen = []
    holder = {}

    def on_error(error, items):
        seen.append(error)
        holder["client"].track("u", "Failure Noted")

    client = make(
        clients,
        collector,
        max_queue_size=1,
        upload_size=1,
        upload_interval=0,
        on_full="block",
        on_full_timeout=30,
        on_error=on_error,
    )
    holder["client"] = client
    collector.set_faults([{"status": 400, "times": 1}])
    client.track("u", "Rejected")
    finished = threading.Event()
    threading.Thread(target=lambda: (client.flush(timeout=20), finished.set())).start()
    assert finished.wait(15)
    assert seen


def test_sync_mode_with_the_collector_down_is_bounded_by_timeout(clients):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    errors = []
    client = Client(
        "wk-sync",
        host=f"http://127.0.0.1:{port}",
        sync_mode=True,
        timeout=0.5,
        max_retries=10,
        on_error=lambda error, items: errors.append(error),
    )
    clients.append(client)
    started = time.monotonic()
    ok, _ = client.track("u", "Unsent")
    elapsed = time.monotonic() - started
    assert ok is False
    # Ten retries with backoff from 0.5 s would take minutes; the deadline cuts them at ~0.5 s.
    assert elapsed < 3.0
    assert len(errors) == 1
    stats = client.stats()
    assert (stats["accepted"], stats["failed"], stats["delivered"]) == (1, 1, 0)
    assert_balanced(stats)


def test_sync_mode_delivery_is_counted(clients, collector):
    client = make(clients, collector, sync_mode=True)
    assert client.track("u", "Direct")[0]
    stats = client.stats()
    assert (stats["accepted"], stats["delivered"], stats["queued"]) == (1, 1, 0)
    assert collector.stats()["messages"] == 1
