"""The collector holds up under load: 1,000 events/s from several client processes at once,
with a hostile client hammering it meanwhile, and not one event lost or stored twice.

Everything is real: the collector is its own process with a SQLite file, each client is its
own process using ``analytics_core.Client`` (two with background batching, two in sync_mode,
so one HTTP request per event), and the hostile client sends malformed requests on raw
sockets. The rate is the senders' schedule; the test checks they kept it, so the load was real.
"""

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from analytics_core.collector.access import write_key_fingerprint as fingerprint

from .support.collector_process import CollectorProcess

ROOT = Path(__file__).resolve().parents[1]
SENDER = ROOT / "tests" / "collector_scripts" / "paced_sender.py"
SECONDS = 4.0
# name, events/s, mode: 1,000 events/s together, 500 of them as single-event requests.
SENDERS = [("a", 250, "batched"), ("b", 250, "batched"), ("c", 250, "sync"), ("d", 250, "sync")]

HOSTILE = [
    b"\x00\xff garbage\r\n\r\n",
    b'POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n{"bat',
    b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n[]",
    b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\x01",
]


def hostile_client(port, stop, answers):
    """Send malformed requests in a loop until ``stop``; record the status of each answer."""
    while not stop.is_set():
        for data in HOSTILE:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                head = sock.recv(64)
            answers.append(head.split(b" ", 2)[1] if head.startswith(b"HTTP/") else head)
        stop.wait(0.02)


@pytest.mark.slow
def test_a_thousand_events_per_second_from_several_clients_none_lost():
    with CollectorProcess() as collector:
        port = int(collector.url.rsplit(":", 1)[1])
        stop, answers = threading.Event(), []
        attacker = threading.Thread(target=hostile_client, args=(port, stop, answers))
        attacker.start()
        processes = [
            subprocess.Popen(
                [sys.executable, str(SENDER), collector.url, name, str(rate), str(SECONDS), mode],
                cwd=str(ROOT),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, rate, mode in SENDERS
        ]
        try:
            outputs = [process.communicate(timeout=120) for process in processes]
        finally:
            stop.set()
            attacker.join(10)
            for process in processes:
                process.kill()
        reports = []
        for (out, err), process in zip(outputs, processes):
            assert process.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))

        for report, (_, rate, _) in zip(reports, SENDERS):
            assert report["errors"] == [] and report["flushed"] is True, report["errors"]
            assert len(report["sent"]) == report["total"] == int(rate * SECONDS)
            # The schedule was kept (a late call catches up), so the offered load was real.
            assert report["offered_s"] < SECONDS * 1.1, report["offered_s"]

        sent = [message_id for report in reports for message_id in report["sent"]]
        assert len(sent) == len(set(sent)) == 1000 * SECONDS
        stored = collector.events(limit=0)
        stored_ids = [event["messageId"] for event in stored]
        assert len(stored_ids) == len(set(stored_ids))  # nothing stored twice
        assert set(stored_ids) == set(sent)  # nothing lost, nothing extra
        assert {event["_write_key_fingerprint"] for event in stored} == {
            fingerprint(f"wk-load-{n}") for n, *_ in SENDERS
        }

        # The hostile client was refused every time and the server never went down.
        assert answers and all(status == b"400" for status in answers), set(answers)
        assert collector.process.poll() is None
