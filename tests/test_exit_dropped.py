"""A client the program no longer refers to delivers what it queued, then its uploader thread
ends and its connection (and spool) are closed; the exit still waits for one that is delivering.

Before: the idle uploader thread referred to the client, so a dropped client lived for ever
(50 dropped clients: 50 threads and 50 connections left open, all 50 clients alive).
"""

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from analytics_core import Client

from .support.servers import ROOT, python_env

pytestmark = pytest.mark.analytics_send

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")


def uploaders():
    return {t for t in threading.enumerate() if t.name.startswith("analytics-uploader-")}


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@needs_proc
@pytest.mark.parametrize("persist", [False, True], ids=["memory", "persist"])
def test_dropped_clients_deliver_then_free_threads_sockets_and_themselves(
    collector, tmp_path, persist
):
    collector.stats()  # the collector's own session has its connection open from here on
    threads_before, fds_before = uploaders(), open_fds()
    refs = []
    for index in range(50):
        options = {"persist": str(tmp_path / f"spool-{index}.db")} if persist else {}
        # A long interval: only the drop makes them send now.
        client = Client("key", host=collector.url, upload_interval=30, **options)
        client.track("u", "Dropped", {"index": index})
        refs.append(weakref.ref(client))
        del client
    assert all(ref() is None for ref in refs)  # freed at once: nothing of ours refers to it
    assert len(collector.wait_for(50, timeout=10)) == 50
    assert wait_until(lambda: not uploaders() - threads_before), uploaders() - threads_before
    collector.stats()
    assert wait_until(lambda: open_fds() <= fds_before), (open_fds(), fds_before)


def test_a_dropped_client_that_never_sent_has_nothing_to_free(collector):
    before = uploaders()
    ref = weakref.ref(Client("key", host=collector.url))
    assert ref() is None
    assert uploaders() - before == set()


def test_a_client_in_a_reference_cycle_is_freed_by_the_garbage_collector(collector):
    # on_error refers to the client: only the garbage collector can free it, from whichever
    # thread it interrupts (maybe the uploader itself, holding its lock).
    before = uploaders()
    owner = Owner(collector.url)
    owner.client.track("u", "In a cycle")
    collector.set_faults([{"status": 400}])  # refused: on_error must still be reachable
    ref = weakref.ref(owner.client)
    del owner
    assert ref() is not None
    gc.collect()
    assert wait_until(lambda: Owner.reported == [["In a cycle"]])
    assert wait_until(lambda: not uploaders() - before)
    gc.collect()
    assert ref() is None


class Owner:
    """Holds a client whose on_error is one of its own methods: a reference cycle."""

    reported: list = []

    def __init__(self, host):
        Owner.reported = []
        self.client = Client("key", host=host, upload_interval=30, on_error=self.on_error)

    def on_error(self, error, items):
        Owner.reported.append([item["event"] for item in items])


def test_a_dropped_client_still_delivers_what_was_in_flight(collector):
    collector.set_faults([{"status": 200, "delay": 0.5}])
    before = uploaders()
    client = Client("key", host=collector.url, upload_interval=0.01)
    pipeline = client.pipeline
    client.track("u", "First")
    assert wait_until(lambda: pipeline.counts()["in_flight"] == 1)
    client.track("u", "Second")
    del client
    events = collector.wait_for(2, timeout=10)
    assert sorted(event["event"] for event in events) == ["First", "Second"]
    assert wait_until(lambda: not uploaders() - before)


def test_client_as_a_context_manager(collector):
    before = uploaders()
    with Client("key", host=collector.url, upload_interval=30) as client:
        client.track("u", "In a with block")
    assert [event["event"] for event in collector.events()] == ["In a with block"]
    assert not uploaders() - before
    assert client.stats()["delivered"] == 1


_CHILD = """
import atexit, json, time
REPORTS = []
atexit.register(lambda: print("REPORTED " + json.dumps(REPORTS), flush=True))
import analytics_core
client = analytics_core.Client(
    "key", host={host!r}, upload_interval=0.01, shutdown_timeout=1,
    on_error=lambda error, items: REPORTS.extend(item["event"] for item in items),
)
client.track("u", "From a dropped client")
while client.pipeline.counts()["in_flight"] == 0:
    time.sleep(0.01)
del client
print("EXIT_AT", time.monotonic(), flush=True)
"""


def run_child(host):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD.format(host=host))],
        capture_output=True,
        text=True,
        timeout=60,
        env=python_env(),
        cwd=str(ROOT),
    )
    ended = time.monotonic()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (exit_at,) = [float(line.split()[1]) for line in lines if line.startswith("EXIT_AT ")]
    (reported,) = [json.loads(line[9:]) for line in lines if line.startswith("REPORTED ")]
    return ended - exit_at, reported


@pytest.mark.slow
def test_the_exit_waits_for_a_dropped_client_that_is_delivering(collector):
    collector.set_faults([{"status": 200, "delay": 0.5}])
    took, reported = run_child(collector.url)
    assert reported == []
    (event,) = collector.wait_for(1)
    assert event["event"] == "From a dropped client"
    assert took < 1.0 + 1.0


@pytest.mark.slow
def test_the_exit_reports_what_a_dropped_client_could_not_deliver(collector):
    collector.set_faults([{"status": 503, "delay": 60, "times": 5}])
    took, reported = run_child(collector.url)
    assert reported == ["From a dropped client"]
    assert took < 1.0 + 1.0
