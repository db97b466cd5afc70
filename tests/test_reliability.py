"""Reliability end to end: the client against the REAL collector process with planned faults.

tests/test_delivery.py and tests/test_lifecycle.py hold the basics (one retry, one 429, one 400,
one fork). This module makes the stronger claims of issue 4, each counted in what the collector
stored:

- a collector failing for a while loses nothing and stores every event once per messageId;
  an answer lost after storing gives a duplicate, and only ever under the same messageId;
- ``Retry-After`` (seconds or an HTTP date) is waited out, measured on the monotonic clock;
- with the collector down or slower than ``timeout``, calls stay quick, the queue stays within
  ``max_queue_size`` and every event is either delivered or handed to ``on_error``, exactly;
- a batch refused with a 4xx is reported and the batches after it still go out;
- forked processes (children and grandchildren, while another thread tracks) all deliver;
- sixteen threads tracking while a seventeenth flushes lose nothing and never deadlock.
"""

import email.utils
import gc
import math
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections import Counter

import pytest

from analytics_core import APIError, Client, QueueFullError
from tests.support.wire import sent_part, wire

WRITE_KEY = "wk-reliability"
# A sanity bound for one call, not a benchmark: a call that waited on the network would take
# a timeout (seconds), a call that does not takes microseconds.
CALL_BOUND = 0.05


@pytest.fixture
def clients(collector):
    """Build clients with a short retry backoff; every one is shut down after the test."""
    made = []

    def build(host=None, **options):
        client = Client(WRITE_KEY, host=host or collector.url, **options)
        # The default backoff starts at 0.5 s; the claims here do not depend on its size.
        client.transport.retry.base = 0.01
        client.transport.retry.cap = 0.05
        made.append(client)
        return client

    yield build
    for client in made:
        client.shutdown(timeout=2)


def copies_by_message_id(events):
    result = {}
    for event in events:
        result.setdefault(event["messageId"], []).append(event)
    return result


def unused_port():
    """A 127.0.0.1 port nobody listens on (bound, then released): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_user():
    return "user-" + uuid.uuid4().hex[:12]


# -- a failing collector ---------------------------------------------------------------------------


def test_500s_for_a_while_then_every_event_arrives_exactly_once(collector, clients):
    reports = []
    client = clients(
        upload_size=20,
        upload_interval=30,
        thread=2,
        on_error=lambda error, items: reports.append((error, items)),
    )
    collector.set_faults([{"status": 500, "times": 5}])
    sent = [client.track(unique_user(), "Retried", {"i": index})[1] for index in range(300)]
    assert client.flush(timeout=30)

    stored = collector.events(limit=0)
    copies = copies_by_message_id(stored)
    assert len(stored) == 300
    assert set(copies) == {message["messageId"] for message in sent}
    assert all(len(events) == 1 for events in copies.values())
    assert all(wire(copies[message["messageId"]][0]) == sent_part(message) for message in sent)
    stats = collector.stats()
    assert stats["requests"] - stats["batches"] == 5  # the five 500s, answered and not stored
    assert stats["batches"] >= 300 // 20
    assert reports == []
    counters = client.stats()
    assert (counters["delivered"], counters["failed"], counters["retried"]) == (300, 0, 5)
    assert collector.faults() == []


def test_an_answer_lost_after_storing_duplicates_only_under_the_same_message_id(collector, clients):
    # The collector stores the first batch, then answers after the client's timeout: the client
    # cannot know it arrived and sends it again. That is the one way to get a duplicate.
    client = clients(timeout=0.5, upload_size=10, upload_interval=30)
    collector.set_faults([{"status": 200, "delay": 1.5, "times": 1}])
    sent = [client.track(unique_user(), "Maybe twice", {"i": index})[1] for index in range(30)]
    assert client.flush(timeout=30)

    copies = copies_by_message_id(collector.events(limit=0))
    assert set(copies) == {message["messageId"] for message in sent}
    counts = Counter(len(events) for events in copies.values())
    assert counts == {2: 10, 1: 20}  # the first batch twice, the others once
    for message in sent:
        # Every copy is the message as sent: a duplicate is a resend, never a different event.
        assert all(wire(event) == sent_part(message) for event in copies[message["messageId"]])
    twice = {message_id for message_id, events in copies.items() if len(events) == 2}
    assert twice == {message["messageId"] for message in sent[:10]}
    counters = client.stats()
    assert (counters["delivered"], counters["failed"], counters["retried"]) == (30, 0, 1)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_retry_after_is_waited_out_then_everything_is_delivered(collector, clients, form):
    client = clients(upload_size=10, upload_interval=30)
    if form == "seconds":
        # Two throttled answers in a row, each asking for a second: at least two seconds.
        faults = [{"status": 429, "retry_after": "1", "times": 2}]
        retries = 2
        started_wall = time.time()
        started = time.monotonic()
        expected_wait = 2.0
    else:
        # An HTTP date has whole seconds: ask for the next second but one (1 to 2 s from now).
        target = math.ceil(time.time()) + 1
        faults = [{"status": 429, "retry_after": email.utils.formatdate(target, usegmt=True)}]
        retries = 1
        started_wall = time.time()
        started = time.monotonic()
        expected_wait = target - started_wall
    collector.set_faults(faults)
    sent = [client.track(unique_user(), "Throttled", {"i": index})[1] for index in range(30)]
    assert client.flush(timeout=30)
    elapsed = time.monotonic() - started

    # The backoff alone (base 10 ms) would have retried within a fraction of a second.
    assert elapsed >= expected_wait - 0.05, (elapsed, expected_wait)
    assert elapsed < expected_wait + 10, (elapsed, expected_wait)
    copies = copies_by_message_id(collector.events(limit=0))
    assert set(copies) == {message["messageId"] for message in sent}
    assert all(len(events) == 1 for events in copies.values())
    assert client.stats()["retried"] == retries
    assert collector.stats()["requests"] == 3 + retries


# -- a collector that is down or too slow: quick calls, bounded memory, exact accounting -----------


class Ledger:
    """What the client reported to on_error, message by message."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reports = []  # (error, messageId)

    def on_error(self, error, items):
        with self.lock:
            self.reports.extend((error, item["messageId"]) for item in items)

    def ids(self, refused):
        """messageIds reported for a full queue (refused=True) or for failed delivery."""
        return [
            message_id
            for error, message_id in self.reports
            if isinstance(error, QueueFullError) == refused
        ]


def track_and_watch(client, count, max_queue_size, pause=0.0):
    """Track ``count`` events; assert each call is quick and the messages held (waiting or in
    flight) never exceed ``max_queue_size``."""
    results = []
    slowest = 0.0
    peak = 0
    # A full collection of the test session's heap takes tens of milliseconds and may fall
    # inside any call; it says nothing about the client, so it is kept out of the timings.
    gc.disable()
    try:
        for index in range(count):
            started = time.monotonic()
            results.append(client.track("watched-user", "Watched", {"i": index}))
            slowest = max(slowest, time.monotonic() - started)
            peak = max(peak, client.stats()["queued"])
            if pause:
                time.sleep(pause)
    finally:
        gc.enable()
    assert slowest < CALL_BOUND, f"a track() took {slowest * 1000:.1f} ms"
    assert peak <= max_queue_size, peak
    return results


def assert_every_event_accounted(client, results, ledger):
    """Each call either was refused (False, on_error) or accepted and then delivered or
    reported to on_error; the counters say the same, exactly."""
    accepted = [message["messageId"] for ok, message in results if ok]
    refused = [message["messageId"] for ok, message in results if not ok]
    assert all(ok in (True, False) for ok, _ in results)
    assert len(accepted) + len(refused) == len(results)
    assert len(set(accepted) | set(refused)) == len(results)
    assert sorted(ledger.ids(refused=True)) == sorted(refused)  # each refusal reported once
    failed = ledger.ids(refused=False)
    assert len(failed) == len(set(failed))  # no accepted message reported twice
    assert set(failed) <= set(accepted)
    stats = client.stats()
    assert stats["queued"] == 0
    assert stats["dropped"] == len(refused)
    assert stats["failed"] == len(failed)
    assert stats["delivered"] + stats["failed"] == len(accepted)
    return accepted, refused, failed


def test_collector_down_calls_stay_quick_queue_bounded_and_every_event_is_accounted(clients):
    ledger = Ledger()
    client = clients(
        host=f"http://127.0.0.1:{unused_port()}",
        max_queue_size=100,
        upload_size=20,
        upload_interval=0.01,
        max_retries=2,
        timeout=1,
        on_error=ledger.on_error,
    )
    results = track_and_watch(client, 3000, max_queue_size=100)
    assert client.flush(timeout=30)

    accepted, refused, failed = assert_every_event_accounted(client, results, ledger)
    assert refused and accepted  # both paths were exercised
    assert sorted(failed) == sorted(accepted)  # nothing can have been delivered
    assert client.stats()["delivered"] == 0
    delivery_errors = [e for e, _ in ledger.reports if not isinstance(e, QueueFullError)]
    assert delivery_errors and not any(isinstance(e, APIError) for e in delivery_errors)
    assert all(thread.is_alive() for thread in client.pipeline._threads)


def test_collector_slower_than_timeout_calls_stay_quick_and_every_event_is_accounted(
    collector, clients
):
    ledger = Ledger()
    client = clients(
        max_queue_size=100,
        upload_size=20,
        upload_interval=0.01,
        max_retries=1,
        timeout=0.3,
        on_error=ledger.on_error,
    )
    # The first four requests are answered after a second: past the 0.3 s timeout, so two
    # batches fail (each tried twice) while the caller keeps tracking; then it recovers.
    collector.set_faults([{"status": 200, "delay": 1.0, "times": 4}])
    results = track_and_watch(client, 600, max_queue_size=100, pause=0.002)
    assert client.flush(timeout=30)

    accepted, refused, failed = assert_every_event_accounted(client, results, ledger)
    assert refused and failed and client.stats()["delivered"]
    stored = {event["messageId"] for event in collector.events(limit=0)}
    # What was not reported was delivered. (A batch stored before its answer timed out is
    # stored and reported: the client cannot tell, and on_error errs on the side of telling.)
    assert set(accepted) - set(failed) <= stored
    assert stored <= set(accepted)


@pytest.mark.parametrize("status", [400, 413])
def test_a_refused_batch_goes_to_on_error_and_the_next_batches_still_go_out(
    collector, clients, status
):
    reports = []
    client = clients(
        upload_size=10,
        upload_interval=30,
        on_error=lambda error, items: reports.append((error, items)),
    )
    # One uploader sends the batches in queue order: the second one is refused.
    collector.set_faults([{"status": 200, "times": 1}, {"status": status, "times": 1}])
    sent = [client.track(unique_user(), "Batched", {"i": index})[1] for index in range(50)]
    assert client.flush(timeout=30)

    assert len(reports) == 1
    error, items = reports[0]
    assert isinstance(error, APIError) and error.status == status
    assert items == sent[10:20]
    copies = copies_by_message_id(collector.events(limit=0))
    assert set(copies) == {message["messageId"] for message in sent[:10] + sent[20:]}
    assert all(len(events) == 1 for events in copies.values())
    assert collector.stats()["requests"] == 5  # a 4xx is not retried
    counters = client.stats()
    assert (counters["delivered"], counters["failed"], counters["retried"]) == (40, 10, 0)


# -- fork ------------------------------------------------------------------------------------------


def _grandchild(client, user, child):
    for index in range(20):
        client.track(user, "Grandchild", {"child": child, "i": index, "pid": os.getpid()})


def _child(client, user, child):
    """Track, fork a grandchild, track again; exit without flushing (the exit hook delivers)."""
    for index in range(20):
        client.track(user, "Child Before", {"child": child, "i": index, "pid": os.getpid()})
    grandchild = multiprocessing.get_context("fork").Process(
        target=_grandchild, args=(client, user, child)
    )
    grandchild.start()
    for index in range(20):
        client.track(user, "Child After", {"child": child, "i": index, "pid": os.getpid()})
    grandchild.join(60)
    if grandchild.exitcode != 0:
        raise SystemExit(f"grandchild exited with {grandchild.exitcode}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_parent_children_and_grandchildren_all_deliver_while_a_thread_tracks(collector):
    user = unique_user()
    # A short interval: the parent's uploader is busy sending while the children are forked.
    client = Client(WRITE_KEY, host=collector.url, upload_interval=0.01, upload_size=7)
    stop = threading.Event()
    background = []

    def keep_tracking():
        index = 0
        while not stop.is_set():
            ok, _ = client.track(user, "Parent Thread", {"i": index})
            assert ok
            background.append(index)
            index += 1
            time.sleep(0.001)

    tracker = threading.Thread(target=keep_tracking, name="reliability-tracker")
    try:
        for index in range(30):
            client.track(user, "Parent Before", {"i": index})
        tracker.start()
        context = multiprocessing.get_context("fork")
        children = [
            context.Process(target=_child, args=(client, user, child)) for child in range(3)
        ]
        for child in children:
            child.start()
        for index in range(30):
            client.track(user, "Parent After", {"i": index})
        for child in children:
            child.join(60)
        assert [child.exitcode for child in children] == [0, 0, 0]
        stop.set()
        tracker.join(10)
        assert not tracker.is_alive()
        assert client.flush(timeout=30)
    finally:
        stop.set()
        client.shutdown(timeout=5)

    expected = 30 + 30 + len(background) + 3 * (20 + 20 + 20)
    collector.wait_for(expected, user_id=user, timeout=10)
    time.sleep(0.3)  # let a duplicate, if any, land before counting
    events = collector.events(limit=0, user_id=user)
    assert len(events) == expected
    assert len({event["messageId"] for event in events}) == expected
    seen = Counter(
        (event["event"], event["properties"].get("child"), event["properties"]["i"])
        for event in events
    )
    assert max(seen.values()) == 1
    for name in ("Child Before", "Child After", "Grandchild"):
        assert {(c, i) for e, c, i in seen if e == name} == {
            (child, index) for child in range(3) for index in range(20)
        }
    assert sorted(i for e, _, i in seen if e == "Parent Thread") == background
    pids = {event["properties"].get("pid") for event in events} - {None}
    assert len(pids) == 6  # three children and three grandchildren, each its own process


# -- threads ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sixteen_threads_track_while_another_flushes(collector):
    threads, per_thread = 16, 2000
    client = Client(
        WRITE_KEY,
        host=collector.url,
        max_queue_size=threads * per_thread + 1000,  # room for all: nothing may be refused
        upload_size=500,
        upload_interval=0.05,
        thread=2,
    )
    start = threading.Barrier(threads + 1)
    done = threading.Event()
    results = [[] for _ in range(threads)]
    flushes = []

    def track(number):
        start.wait(10)
        user = f"thread-{number}"
        for index in range(per_thread):
            ok, message = client.track(user, "Concurrent", {"thread": number, "i": index})
            results[number].append((ok, message["messageId"]))

    def flush_repeatedly():
        start.wait(10)
        while not done.is_set():
            flushes.append(client.flush(timeout=30))

    workers = [threading.Thread(target=track, args=(n,)) for n in range(threads)]
    flusher = threading.Thread(target=flush_repeatedly)
    try:
        for thread in [*workers, flusher]:
            thread.start()
        for thread in workers:
            thread.join(60)
        assert not any(thread.is_alive() for thread in workers), "a tracking thread hung"
        done.set()
        flusher.join(60)
        assert not flusher.is_alive(), "flush() hung"
        assert client.flush(timeout=60)
    finally:
        done.set()
        client.shutdown(timeout=5)

    assert flushes and all(flushes)
    assert all(len(rows) == per_thread and all(ok for ok, _ in rows) for rows in results)
    sent = [message_id for rows in results for _, message_id in rows]
    assert len(set(sent)) == threads * per_thread
    stats = client.stats()
    assert (stats["delivered"], stats["failed"], stats["dropped"]) == (len(sent), 0, 0)
    assert collector.stats()["messages"] == len(sent)
    events = collector.events(limit=0)
    assert sorted(event["messageId"] for event in events) == sorted(sent)
    per_user = Counter(event["userId"] for event in events)
    assert per_user == {f"thread-{n}": per_thread for n in range(threads)}
    indexes = {}
    for event in events:
        indexes.setdefault(event["properties"]["thread"], set()).add(event["properties"]["i"])
    assert all(found == set(range(per_thread)) for found in indexes.values())
