"""Process lifecycle with real processes: delivery at exit, after fork(), at shutdown."""

import multiprocessing
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from analytics_core import Client

# These tests are about delivery: their messages really go out (the pytest plugin
# captures every other test's).
pytestmark = pytest.mark.analytics_send

WRITE_KEY = "test-lifecycle-key"
ROOT = Path(__file__).resolve().parents[1]


def run_child(code, timeout=60):
    """Run ``code`` in a fresh interpreter that imports this checkout; return the result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(ROOT),
    )


def closed_port():
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uploader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("analytics-uploader-")]


def unique_user():
    return "user-" + uuid.uuid4().hex[:12]


# -- exit --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_atexit_delivers_what_was_queued(collector):
    user = unique_user()
    result = run_child(
        f"""
        from analytics_core import Client
        # A long interval and a large batch: nothing leaves before the interpreter exits.
        client = Client({WRITE_KEY!r}, host={collector.url!r}, upload_interval=60,
                        upload_size=1000)
        for index in range(37):
            ok, _ = client.track({user!r}, "At Exit", {{"index": index}})
            assert ok
        print("queued", client.stats()["queued"])
        """
    )
    assert result.returncode == 0, result.stderr
    assert "queued 37" in result.stdout
    events = collector.wait_for(37, user_id=user)
    assert sorted(event["properties"]["index"] for event in events) == list(range(37))
    assert len({event["messageId"] for event in events}) == 37


@pytest.mark.slow
def test_atexit_delivers_for_the_module_level_api(collector):
    user = unique_user()
    result = run_child(
        f"""
        import analytics_core as analytics
        analytics.write_key = {WRITE_KEY!r}
        analytics.host = {collector.url!r}
        analytics.upload_interval = 60
        for index in range(5):
            analytics.track({user!r}, "Module Exit", {{"index": index}})
        analytics.identify({user!r}, {{"plan": "pro"}})
        """
    )
    assert result.returncode == 0, result.stderr
    events = collector.wait_for(6, user_id=user)
    assert sorted(event["type"] for event in events) == ["identify"] + ["track"] * 5


@pytest.mark.slow
def test_exit_is_bounded_when_the_collector_is_unreachable():
    port = closed_port()
    started = time.monotonic()
    result = run_child(
        f"""
        from analytics_core import Client

        def on_error(error, items):
            print("on_error", type(error).__name__, len(items),
                  ",".join(sorted(item["event"] for item in items)), flush=True)

        client = Client({WRITE_KEY!r}, host="http://127.0.0.1:{port}", max_retries=1000,
                        shutdown_timeout=1, upload_interval=0.05, on_error=on_error)
        for name in ("A", "B", "C"):
            client.track("u", name)
        print("tracked", flush=True)
        """,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("on_error")]
    assert lines, result.stdout + result.stderr
    reported = []
    for line in lines:
        _, _, count, names = line.split(" ")
        assert int(count) == len(names.split(","))
        reported += names.split(",")
    assert sorted(reported) == ["A", "B", "C"]
    # With 1000 retries and backoff, an unbounded exit would take far longer than this.
    assert elapsed < 30, f"the child took {elapsed:.1f}s to exit"


# -- fork --------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_and_parent_each_deliver_their_own(collector):
    parent_user, child_user = unique_user(), unique_user()
    # A long interval keeps the pre-fork messages queued; flush() sends at once.
    client = Client(WRITE_KEY, host=collector.url, upload_interval=30)
    try:
        # Pre-fork messages wait in the queue (the uploader has not sent them yet) and the id
        # source holds unused random bytes: the child must send neither.
        for index in range(5):
            client.track(parent_user, "Before Fork", {"index": index})
        assert client.stats()["queued"] == 5
        pid = os.fork()
        if pid == 0:  # the child: no pytest machinery from here on
            code = 1
            try:
                for index in range(20):
                    client.track(child_user, "In Child", {"index": index})
                delivered = client.flush(timeout=20)
                stats = client.stats()
                code = 0 if delivered and stats["delivered"] == 20 else 2
            finally:
                os._exit(code)
        for index in range(20):
            client.track(parent_user, "After Fork", {"index": index})
        assert client.flush(timeout=20)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        client.shutdown(timeout=5)

    parent_events = collector.wait_for(25, user_id=parent_user)
    child_events = collector.wait_for(20, user_id=child_user)
    time.sleep(0.3)  # let any duplicate still on its way land before counting
    parent_events = collector.events(limit=0, user_id=parent_user)
    child_events = collector.events(limit=0, user_id=child_user)
    assert len(parent_events) == 25
    assert len(child_events) == 20
    before = sorted(e["properties"]["index"] for e in parent_events if e["event"] == "Before Fork")
    assert before == list(range(5))
    assert sorted(e["properties"]["index"] for e in child_events) == list(range(20))
    ids = [event["messageId"] for event in parent_events + child_events]
    assert len(set(ids)) == len(ids) == 45


def _worker(client, user, flush):
    for index in range(20):
        client.track(user, "Worker Event", {"index": index, "pid": os.getpid()})
    if flush:
        assert client.flush(timeout=20)


@pytest.mark.slow
@pytest.mark.parametrize("flush", [True, False], ids=["worker-flushes", "worker-just-returns"])
def test_multiprocessing_fork_workers(collector, flush):
    context = multiprocessing.get_context("fork")
    user = unique_user()
    client = Client(WRITE_KEY, host=collector.url, upload_interval=30)
    try:
        client.track(user, "Parent Before", {"index": -1})
        workers = [
            context.Process(target=_worker, args=(client, user, flush), name=f"worker-{n}")
            for n in range(3)
        ]
        for worker in workers:
            worker.start()
        client.track(user, "Parent After", {"index": -2})
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
        assert client.flush(timeout=20)
    finally:
        client.shutdown(timeout=5)
    events = collector.wait_for(62, user_id=user)
    time.sleep(0.3)
    events = collector.events(limit=0, user_id=user)
    assert len(events) == 62
    worker_events = [event for event in events if event["event"] == "Worker Event"]
    assert len({event["properties"]["pid"] for event in worker_events}) == 3
    per_worker = {}
    for event in worker_events:
        per_worker.setdefault(event["properties"]["pid"], []).append(event["properties"]["index"])
    assert all(sorted(indexes) == list(range(20)) for indexes in per_worker.values())
    assert len({event["messageId"] for event in events}) == 62


# -- join / shutdown ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["join", "shutdown"])
def test_join_and_shutdown_stop_the_uploaders_and_track_restarts(collector, method):
    user = unique_user()
    client = Client(WRITE_KEY, host=collector.url, upload_interval=0.05, thread=2)
    try:
        client.track(user, "First")
        threads = list(client.pipeline._threads)
        assert len(threads) == 2 and all(thread.is_alive() for thread in threads)
        assert getattr(client, method)() is True
        assert not any(thread.is_alive() for thread in threads)
        assert not any(thread in uploader_threads() for thread in threads)
        assert client.stats()["queued"] == 0
        (first,) = collector.wait_for(1, user_id=user)
        assert first["event"] == "First"

        ok, _ = client.track(user, "Second")
        assert ok
        assert client.flush(timeout=10)
        restarted = list(client.pipeline._threads)
        assert restarted and all(thread.is_alive() for thread in restarted)
        assert not set(restarted) & set(threads)
        events = collector.wait_for(2, user_id=user)
        assert [event["event"] for event in events] == ["First", "Second"]
    finally:
        client.shutdown(timeout=5)
    assert not any(thread.is_alive() for thread in restarted)


def test_module_level_join_stops_the_default_client(collector):
    import analytics_core as analytics

    user = unique_user()
    analytics.write_key = WRITE_KEY
    analytics.host = collector.url
    analytics.upload_interval = 0.05
    analytics.track(user, "Via Module")
    threads = list(analytics.default_client.pipeline._threads)
    assert threads
    assert analytics.join() is True
    assert not any(thread.is_alive() for thread in threads)
    collector.wait_for(1, user_id=user)


@pytest.mark.slow
def test_flush_times_out_on_a_slow_collector_then_succeeds(collector):
    user = unique_user()
    collector.set_faults([{"status": 200, "delay": 3, "times": 1}])
    client = Client(WRITE_KEY, host=collector.url, upload_interval=0.01, max_retries=0)
    try:
        client.track(user, "Slow")
        assert client.flush(timeout=0.5) is False
        assert client.stats()["queued"] == 1
        assert client.flush(timeout=20) is True
        assert client.stats() == {
            "accepted": 1,
            "recovered": 0,
            "queued": 0,
            "delivered": 1,
            "failed": 0,
            "dropped": 0,
            "retried": 0,
        }
    finally:
        client.shutdown(timeout=5)
    (event,) = collector.wait_for(1, user_id=user)
    assert event["event"] == "Slow"


def test_shutdown_reports_what_cannot_be_delivered():
    reported = []
    port = closed_port()
    client = Client(
        WRITE_KEY,
        host=f"http://127.0.0.1:{port}",
        max_retries=1000,
        upload_interval=0.01,
        on_error=lambda error, items: reported.extend(item["event"] for item in items),
    )
    for name in ("A", "B"):
        client.track("u", name)
    assert client.shutdown(timeout=0.5) is False
    assert sorted(reported) == ["A", "B"]
    assert client.stats()["failed"] == 2
    assert client.stats()["queued"] == 0
