"""End to end: analytics_asgi under real servers, against the real collector.

Each test starts a server on 127.0.0.1 (the apps are in ``tests/asgi_apps/tracking.py``), sends
requests that each track one event, stops the server gracefully, and checks that the collector
received exactly one event per request, with the request's context. The client holds events
for a minute, so what arrives was delivered by the shutdown path.

Why this needs the lifespan: uvicorn (alone, as ``--workers`` children, or as gunicorn's worker)
handles SIGTERM / SIGINT gracefully, restores the previous handler (the default) and raises the
signal again, so the process dies by it and analytics_core's ``atexit`` hook never runs. The
middleware delivers at the lifespan shutdown, which uvicorn runs after the last request.
"""

import importlib.util
import json
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import List, Set
from urllib.parse import quote

import pytest
import requests

from analytics_core.collector.access import write_key_fingerprint as fingerprint

from .support.servers import (
    ROOT,
    ServerProcess,
    executable,
    free_port,
    gunicorn_no_control_socket,
    python_env,
)

pytestmark = pytest.mark.slow

WRITE_KEY = "asgi-e2e-key"
USER_AGENT = "asgi-e2e/1.0"
REQUESTS = 30


def app_env(collector) -> dict:
    return python_env({"TESTAPP_WRITE_KEY": WRITE_KEY, "TESTAPP_COLLECTOR_URL": collector.url})


def uvicorn_command(app: str, port: int, *options: str) -> List[str]:
    command = executable("uvicorn") + [f"tests.asgi_apps.tracking:{app}"]
    return command + [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *options,
    ]


def uvicorn(collector, app: str = "app", *options: str, env=None) -> ServerProcess:
    port = free_port()
    command = uvicorn_command(app, port, *options)
    return ServerProcess(command, port, env=env or app_env(collector), ready_path="/health")


def gunicorn(collector, *options: str) -> ServerProcess:
    port = free_port()
    command = executable("gunicorn") + ["--bind", f"127.0.0.1:{port}", "--graceful-timeout", "10"]
    command += [*gunicorn_no_control_socket(), *options, "tests.asgi_apps.tracking:app"]
    return ServerProcess(command, port, env=app_env(collector), ready_path="/health")


class Browser:
    """A visitor with analytics.js's cookie: its anonymous id, URL-encoded and JSON-quoted."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.anonymous_id = str(uuid.uuid4())
        self.headers = {
            "User-Agent": USER_AGENT,
            "Cookie": "ajs_anonymous_id=" + quote(json.dumps(self.anonymous_id)),
        }

    def _get(self, number: int) -> int:
        with requests.Session() as session:
            session.trust_env = False
            url = f"{self.server.url}/track/{number}"
            response = session.get(url, headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()["pid"]

    def visit(self, numbers: List[int], concurrency: int = 4) -> Set[int]:
        """GET /track/<n> for each number, a few at a time; the pids that answered."""
        with ThreadPoolExecutor(concurrency) as pool:
            return set(pool.map(self._get, numbers))


def assert_delivered_exactly(collector, browser: Browser, numbers: List[int]) -> None:
    events = collector.wait_for(len(numbers), timeout=5, anonymous_id=browser.anonymous_id)
    assert sorted(event["properties"]["number"] for event in events) == sorted(numbers)
    assert len({event["messageId"] for event in events}) == len(numbers)  # none twice
    port = browser.server.port
    for event in events:
        number = event["properties"]["number"]
        assert event["event"] == "Request Tracked"
        assert event["_write_key_fingerprint"] == fingerprint(WRITE_KEY)
        context = event["context"]
        assert context["ip"] == "127.0.0.1"
        assert context["userAgent"] == USER_AGENT
        assert context["page"]["path"] == f"/track/{number}"
        assert context["page"]["url"] == f"http://127.0.0.1:{port}/track/{number}"


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 10.0) -> None:
    """Probe until ``count`` different worker processes answered: all of them serve."""
    seen: Set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {seen} answered:\n{server.output()}"
        with requests.Session() as session:  # a new connection each time
            session.trust_env = False
            seen.add(session.get(f"{server.url}/health", timeout=5).text)


def serve_and_stop(
    collector, server: ServerProcess, signum: int = signal.SIGTERM, workers: int = 1
) -> Set[int]:
    """Send the requests, check nothing was sent yet, stop the server; the pids that answered."""
    with server:
        wait_for_workers(server, workers)
        browser = Browser(server)
        numbers = list(range(REQUESTS))
        pids = browser.visit(numbers)
        assert collector.events(limit=0, anonymous_id=browser.anonymous_id) == []
        server.stop(signum)
        assert server.process.poll() is not None, server.output()
        output = server.output()
    assert "Traceback" not in output, output
    assert_delivered_exactly(collector, browser, numbers)
    return pids


@pytest.mark.parametrize(
    ("app", "signum"),
    [
        pytest.param("app", signal.SIGTERM, id="starlette-sigterm"),
        pytest.param("app", signal.SIGINT, id="starlette-ctrl-c"),
        # A bare ASGI app that does not speak lifespan: the middleware answers it for the app.
        pytest.param("raw_app", signal.SIGTERM, id="raw-app-sigterm"),
    ],
)
def test_uvicorn_single_process(collector, app, signum):
    server = uvicorn(collector, app)
    pids = serve_and_stop(collector, server, signum)
    assert pids == {server.process.pid}


def test_uvicorn_workers_sigterm_to_the_master(collector):
    server = uvicorn(collector, "app", "--workers", "2")
    pids = serve_and_stop(collector, server, workers=2)
    # Both children answered (each delivered its own queue), the master did not.
    assert len(pids) == 2 and server.process.pid not in pids, pids
    assert server.process.returncode == 0, server.output()


@pytest.mark.skipif(
    importlib.util.find_spec("uvicorn.workers") is None,
    reason="uvicorn.workers.UvicornWorker is not in the installed uvicorn",
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_gunicorn_uvicorn_worker_sigterm_to_the_master(collector):
    server = gunicorn(collector, "--workers", "2", "-k", "uvicorn.workers.UvicornWorker")
    pids = serve_and_stop(collector, server, workers=2)
    assert len(pids) == 2 and server.process.pid not in pids, pids
    assert server.process.returncode == 0, server.output()


MISSING_SPOOL = "/nonexistent-analytics-dir/spool.db"


def test_uvicorn_stops_at_startup_naming_a_spool_it_cannot_open(collector, tmp_path):
    # Before, uvicorn's default lifespan mode took the error for "lifespan unsupported", started,
    # and answered every request with a 500.
    env = {**app_env(collector), "TESTAPP_PERSIST": MISSING_SPOOL}
    done = subprocess.run(
        uvicorn_command("app", free_port()),
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Application startup failed" in output, output
    assert f"the directory {MISSING_SPOOL.rsplit('/', 1)[0]!r} does not exist" in output, output
    assert WRITE_KEY not in output


def test_uvicorn_without_lifespan_serves_requests_despite_a_spool_it_cannot_open(collector):
    env = {**app_env(collector), "TESTAPP_PERSIST": MISSING_SPOOL}
    server = uvicorn(collector, "app", "--lifespan", "off", env=env)
    try:
        statuses = [server.get(f"/track/{number}").status_code for number in range(3)]
    finally:
        server.stop()
    output = server.output()
    assert statuses == [200, 200, 200], output
    # Logged when each middleware was built (the module has two: app and raw_app), never as
    # a request's traceback.
    assert output.count("does not exist") == 2, output
    assert "Traceback" not in output, output
    assert collector.events(limit=0) == []  # its client sends nothing
