"""``persist=``: the durable spool end to end, with real processes and the real collector."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analytics_core import Client, ValidationError

ROOT = Path(__file__).resolve().parents[1]
WRITE_KEY = "wk-persist"


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def clients():
    made = []
    yield made
    for client in made:
        client.shutdown(timeout=2)
        client.pipeline.close_spool()


def make(clients, **options):
    client = Client(WRITE_KEY, **options)
    clients.append(client)
    return client


def stored_ids(collector):
    return [event["messageId"] for event in collector.events(limit=0)]


def test_persist_is_validated(tmp_path):
    with pytest.raises(ValidationError, match="sync_mode"):
        Client(WRITE_KEY, persist=str(tmp_path / "s.db"), sync_mode=True)
    with pytest.raises(ValidationError, match="persist"):
        Client(WRITE_KEY, persist=42)


def test_sigkill_mid_stream_then_a_restarted_process_delivers_every_accepted_event(
    collector, tmp_path
):
    spool = tmp_path / "spool.db"
    count = 1500
    # The first batches are answered slowly, so the process dies with most events undelivered.
    collector.set_faults([{"status": 200, "delay": 1.5, "times": 2}])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.persist_scripts.track_and_hang", collector.url, str(spool)]
        + [str(count)],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == f"tracked {count} refused 0", line
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        process.stdout.close()
    before = set(stored_ids(collector))
    assert len(before) < count  # killed mid-stream: not everything got out

    restarted = Client(WRITE_KEY, host=collector.url, persist=str(spool))
    try:
        assert restarted.flush(timeout=30)
        stats = restarted.stats()
    finally:
        restarted.shutdown(timeout=5)
        restarted.pipeline.close_spool()
    ids = stored_ids(collector)
    assert set(ids) == {f"m-{number}" for number in range(count)}
    # Duplicates only of a batch whose answer the killed process never saw: same messageId.
    assert len(ids) - len(set(ids)) <= 2 * 100
    assert stats["recovered"] >= count - len(before)
    assert stats["queued"] == 0


def test_a_full_queue_spills_into_the_spool_and_nothing_is_dropped(clients, collector, tmp_path):
    collector.set_faults([{"status": 200, "delay": 0.5, "times": 1}])
    client = make(
        clients,
        host=collector.url,
        persist=str(tmp_path / "spool.db"),
        max_queue_size=10,
        upload_size=10,
        upload_interval=0.01,
    )
    results = [client.track("u", "Spilled", {"n": n}, message_id=f"s-{n}")[0] for n in range(400)]
    assert all(results)
    middle = client.stats()
    assert middle["dropped"] == 0
    assert middle["accepted"] + middle["recovered"] == (
        middle["queued"] + middle["delivered"] + middle["failed"]
    )
    assert client.flush(timeout=30)
    assert sorted(stored_ids(collector)) == sorted(f"s-{n}" for n in range(400))
    stats = client.stats()
    assert (stats["accepted"], stats["delivered"], stats["queued"]) == (400, 400, 0)
    assert client.pipeline.spool.pending_count() == 0


def test_a_rejected_batch_is_reported_and_leaves_the_spool(clients, collector, tmp_path):
    reports = []
    collector.set_faults([{"status": 400, "times": 1}])
    client = make(
        clients,
        host=collector.url,
        persist=str(tmp_path / "spool.db"),
        upload_interval=30,
        on_error=lambda error, items: reports.extend(items),
    )
    for number in range(3):
        client.track("u", "Refused", {"n": number})
    assert client.flush(timeout=10)
    assert len(reports) == 3
    assert client.pipeline.spool.pending_count() == 0
    client.track("u", "Accepted")
    assert client.flush(timeout=10)
    assert [event["event"] for event in collector.events(limit=0)] == ["Accepted"]
    assert client.pipeline.spool.pending_count() == 0


def test_undelivered_at_shutdown_is_reported_and_sent_by_the_next_client(
    collector, tmp_path, caplog
):
    spool = str(tmp_path / "spool.db")
    reports = []
    down = Client(
        WRITE_KEY,
        host=f"http://127.0.0.1:{closed_port()}",
        persist=spool,
        max_retries=1000,
        upload_interval=0.01,
        on_error=lambda error, items: reports.extend(item["messageId"] for item in items),
    )
    sent = [
        down.track("u", "Kept", {"n": n}, message_id=f"k-{n}")[1]["messageId"] for n in range(5)
    ]
    started = time.monotonic()
    assert down.shutdown(timeout=0.5) is False
    assert time.monotonic() - started < 10
    down.pipeline.close_spool()
    assert sorted(reports) == sorted(sent)  # reported, as without a spool...
    warnings = [
        record.getMessage() for record in caplog.records if "deliver" in record.getMessage()
    ]
    assert warnings and all("kept in the spool" in text for text in warnings), warnings

    later = Client(WRITE_KEY, host=collector.url, persist=spool)
    try:
        assert later.flush(timeout=10)
        assert later.stats()["recovered"] == 5
    finally:
        later.shutdown(timeout=5)
        later.pipeline.close_spool()
    assert sorted(stored_ids(collector)) == sorted(sent)  # ...and still delivered, once


def test_another_write_key_never_sends_the_spools_messages(collector, tmp_path):
    spool = str(tmp_path / "spool.db")
    first = Client(
        WRITE_KEY, host=f"http://127.0.0.1:{closed_port()}", persist=spool, max_retries=0
    )
    first.track("u", "Mine", message_id="mine-1")
    first.shutdown(timeout=0.5)
    first.pipeline.close_spool()
    other = Client("wk-other", host=collector.url, persist=spool)
    try:
        assert other.flush(timeout=5)
        assert other.stats()["recovered"] == 0
    finally:
        other.shutdown(timeout=2)
        other.pipeline.close_spool()
    assert stored_ids(collector) == []
    owner = Client(WRITE_KEY, host=collector.url, persist=spool)
    try:
        assert owner.flush(timeout=5)
    finally:
        owner.shutdown(timeout=2)
        owner.pipeline.close_spool()
    assert stored_ids(collector) == ["mine-1"]


def test_a_shutdown_leaves_the_rows_of_a_process_that_just_ended_to_the_next_one(
    collector, tmp_path, monkeypatch
):
    # gunicorn's graceful stop with the API failing: a worker dies while another is shutting
    # down. The one shutting down must not take the dead one's rows, only to report them as
    # failed a second time at its deadline: they wait for the next process.
    from analytics_core import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "SPOOL_CHECK_INTERVAL", 0.02)
    spool = str(tmp_path / "spool.db")
    dead = subprocess.Popen(
        [sys.executable, "-m", "tests.persist_scripts.track_and_hang"]
        + [f"http://127.0.0.1:{closed_port()}", spool, "40"],
        cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        text=True,
    )
    reports = []
    try:
        assert dead.stdout.readline().strip() == "tracked 40 refused 0"
        # Each POST fails after 0.1 s: the uploader goes from batch to batch, refilling between.
        collector.set_faults([{"status": 500, "delay": 0.1, "times": 10_000}])
        leaving = Client(
            WRITE_KEY,
            host=collector.url,
            persist=spool,
            max_retries=0,
            on_error=lambda error, items: reports.extend(item["messageId"] for item in items),
        )
        # It looks for ended owners at each refill (the next look is not 5 s away).
        leaving.pipeline.spool.adopt_interval = 0.0
        leaving.pipeline.spool._next_adoption = 0.0
        mine = [f"mine-{n}" for n in range(1000)]
        for message_id in mine:
            leaving.track("u", "Mine", message_id=message_id)
        shutting_down = threading.Thread(target=leaving.shutdown, kwargs={"timeout": 2.0})
        shutting_down.start()
        time.sleep(0.3)  # the shutdown is under way, batches still failing one by one
    finally:
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        dead.stdout.close()
    shutting_down.join(10)
    leaving.pipeline.close_spool()
    assert sorted(reports) == sorted(mine)  # its own, once; none of the dead process's

    collector.set_faults([])
    later = Client(WRITE_KEY, host=collector.url, persist=spool)
    try:
        assert later.flush(timeout=20)
        assert later.stats()["recovered"] == 1040  # the dead one's, and what failed here
    finally:
        later.shutdown(timeout=5)
        later.pipeline.close_spool()
    assert set(stored_ids(collector)) == {f"m-{n}" for n in range(40)} | set(mine)
