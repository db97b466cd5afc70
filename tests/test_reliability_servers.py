"""Reliability under real servers: plain WSGI / ASGI apps that use analytics_core directly.

The framework integrations have their own end-to-end tests (test_*_servers.py), where the
integration delivers at a worker's shutdown. Here no integration helps: the apps in
``tests/reliability_apps/`` call the module-level API, and only analytics_core's own exit and
fork handling stands between the events and their loss. Each app holds events for a minute,
so what reaches the collector was delivered when the server stopped.
"""

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import List, Set

import pytest
import requests

from .support.servers import (
    ServerProcess,
    executable,
    free_port,
    gunicorn_no_control_socket,
    python_env,
)

pytestmark = pytest.mark.slow

WRITE_KEY = "wk-reliability-servers"
REQUESTS = 24


def app_env(collector, run: str) -> dict:
    return python_env(
        {
            "RELIABILITY_WRITE_KEY": WRITE_KEY,
            "RELIABILITY_COLLECTOR_URL": collector.url,
            "RELIABILITY_RUN": run,
        }
    )


def get_pid(url: str) -> int:
    """One request on a new connection (so any worker may take it); the pid that answered."""
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(url, timeout=10)
    response.raise_for_status()
    if "/track/" in url:
        body = response.json()
        assert body["ok"] is True
        return body["pid"]
    return int(response.text)


def send_requests(server: ServerProcess, numbers: List[int]) -> Set[int]:
    """GET /track/<n> for every number, four at a time; the pids that answered."""
    with ThreadPoolExecutor(4) as pool:
        return set(pool.map(get_pid, [f"{server.url}/track/{n}" for n in numbers]))


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 15.0) -> Set[int]:
    """Probe until ``count`` different processes answered: all workers are serving."""
    seen: Set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {seen} answered:\n{server.output()}"
        seen.add(get_pid(server.url + "/"))
    return seen


def stored_exactly(collector, run: str, count: int, timeout: float = 5.0):
    """The run's events once ``count`` arrived, checked again after a pause for stragglers."""
    collector.wait_for(count, timeout=timeout, anonymous_id=run)
    time.sleep(0.3)
    events = collector.events(limit=0, anonymous_id=run)
    assert len(events) == count, [event["event"] for event in events]
    assert len({event["messageId"] for event in events}) == count
    return events


def test_gunicorn_preload_delivers_every_request_and_the_masters_event_once(collector):
    run = str(uuid.uuid4())
    port = free_port()
    command = executable("gunicorn") + [
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--worker-class",
        "sync",
        "--preload",
        "--graceful-timeout",
        "10",
        *gunicorn_no_control_socket(),
        "tests.reliability_apps.preload_wsgi:app",
    ]
    numbers = list(range(REQUESTS))
    with ServerProcess(command, port, env=app_env(collector, run)) as server:
        master = server.process.pid
        workers = wait_for_workers(server, 2)
        assert master not in workers
        answered = send_requests(server, numbers)
        assert answered <= workers
        assert collector.events(limit=0, anonymous_id=run) == []  # all still queued
        assert server.stop(signal.SIGTERM) == 0, server.output()
        output = server.output()
    assert "Traceback" not in output, output

    events = stored_exactly(collector, run, REQUESTS + 1)
    (preloaded,) = [event for event in events if event["event"] == "Preloaded"]
    assert preloaded["properties"]["pid"] == master  # sent by the master, not by a worker
    tracked = [event for event in events if event["event"] == "Request"]
    assert sorted(event["properties"]["number"] for event in tracked) == numbers
    assert {event["properties"]["pid"] for event in tracked} == answered


@pytest.mark.parametrize(
    "signum",
    [
        pytest.param(signal.SIGINT, id="sigint"),
        # uvicorn re-raises SIGTERM after its graceful shutdown, which would skip atexit: the
        # client is made at the first request, under uvicorn's handler, so analytics_core.signals
        # delivers at the end of uvicorn's shutdown, before the re-raise kills.
        pytest.param(signal.SIGTERM, id="sigterm"),
    ],
)
def test_uvicorn_plain_asgi_app_delivers_what_was_queued_when_stopped(collector, signum):
    run = str(uuid.uuid4())
    port = free_port()
    command = executable("uvicorn") + [
        "tests.reliability_apps.plain_asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ]
    numbers = list(range(REQUESTS))
    with ServerProcess(command, port, env=app_env(collector, run)) as server:
        answered = send_requests(server, numbers)
        assert answered == {server.process.pid}
        assert collector.events(limit=0, anonymous_id=run) == []  # all still queued
        server.stop(signum)
        assert server.process.poll() is not None, server.output()
        output = server.output()

    events = stored_exactly(collector, run, REQUESTS, timeout=3.0)
    assert sorted(event["properties"]["number"] for event in events) == numbers
    assert "Traceback" not in output, output
