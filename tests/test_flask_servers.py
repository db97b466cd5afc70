"""End to end: analytics_flask under real servers, against the real collector.

Each test starts a server on 127.0.0.1 (the app is ``tests/flask_apps/tracking.py``), sends
requests that each track one event, stops the server, and checks the collector received exactly
one event per request, with the request's context. The client is told to hold events for a minute
(``UPLOAD_INTERVAL``), so what arrives was delivered by the shutdown path under test, not by the
uploader's timer.
"""

import json
import os
import shutil
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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

WRITE_KEY = "flask-e2e-key"
USER_AGENT = "flask-e2e/1.0"
APP_MODULE = ROOT / "tests" / "flask_apps" / "tracking.py"


def app_env(collector, *paths: str, **settings: str):
    """The environment of a server running the tracking app, ``settings`` as ANALYTICS_* keys."""
    extra = {
        "TESTAPP_ANALYTICS_WRITE_KEY": WRITE_KEY,
        "TESTAPP_ANALYTICS_HOST": collector.url,
        "TESTAPP_ANALYTICS_UPLOAD_INTERVAL": "60",
        "TESTAPP_ANALYTICS_UPLOAD_SIZE": "1000",
    }
    extra.update({f"TESTAPP_ANALYTICS_{key}": value for key, value in settings.items()})
    return python_env(extra, *paths)


class Browser:
    """A visitor with analytics.js's cookie: its anonymous id, URL-encoded and JSON-quoted."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.anonymous_id = str(uuid.uuid4())
        self.headers = {
            "User-Agent": USER_AGENT,
            "Cookie": "ajs_anonymous_id=" + quote(json.dumps(self.anonymous_id)),
        }

    def _get(self, session: requests.Session, number: int) -> int:
        response = session.get(
            f"{self.server.url}/track/{number}", headers=self.headers, timeout=10
        )
        response.raise_for_status()
        body = response.json()
        assert body["ok"] is True
        return body["pid"]

    def visit(self, numbers: List[int], concurrency: int = 1) -> Set[int]:
        """GET /track/<n> for each number; the pids of the processes that answered."""
        if concurrency == 1:
            return {self._get(self.server.session, number) for number in numbers}

        def one(number: int) -> int:
            with requests.Session() as session:
                session.trust_env = False
                return self._get(session, number)

        with ThreadPoolExecutor(concurrency) as pool:
            return set(pool.map(one, numbers))


def assert_delivered_exactly(collector, browser: Browser, numbers: List[int]) -> None:
    events = collector.wait_for(len(numbers), timeout=5, anonymous_id=browser.anonymous_id)
    # Each request's event arrived, and arrived once.
    assert sorted(event["properties"]["n"] for event in events) == sorted(numbers)
    assert len({event["messageId"] for event in events}) == len(numbers)
    port = browser.server.port
    for event in events:
        number = event["properties"]["n"]
        assert event["event"] == "Server Event"
        assert event["_write_key_fingerprint"] == fingerprint(WRITE_KEY)
        context = event["context"]
        assert context["ip"] == "127.0.0.1"
        assert context["userAgent"] == USER_AGENT
        assert context["page"]["path"] == f"/track/{number}"
        assert context["page"]["url"] == f"http://127.0.0.1:{port}/track/{number}"


def gunicorn(collector, *options: str) -> ServerProcess:
    port = free_port()
    command = executable("gunicorn") + [
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "10",
        *gunicorn_no_control_socket(),
        *options,
        "tests.flask_apps.tracking:app",
    ]
    return ServerProcess(command, port, env=app_env(collector))


@pytest.mark.parametrize(
    ("options", "concurrency"),
    [
        pytest.param(["--workers", "2"], 1, id="sync-workers"),
        pytest.param(["--workers", "1", "-k", "gthread", "--threads", "4"], 4, id="gthread"),
        pytest.param(["--workers", "2", "--preload"], 1, id="preload"),
    ],
)
def test_gunicorn_delivers_everything_on_sigterm(collector, options, concurrency):
    with gunicorn(collector, *options) as server:
        browser = Browser(server)
        numbers = list(range(30))
        pids = browser.visit(numbers, concurrency)
        assert server.process.pid not in pids  # workers answered, not the master
        assert collector.events(limit=0, anonymous_id=browser.anonymous_id) == []
        assert server.stop(signal.SIGTERM) == 0, server.output()
    assert_delivered_exactly(collector, browser, numbers)


def test_gunicorn_max_requests_recycling_loses_nothing(collector):
    with gunicorn(collector, "--workers", "2", "--max-requests", "5") as server:
        browser = Browser(server)
        numbers = list(range(30))
        pids = browser.visit(numbers)
        assert len(pids) >= 4, "workers should have been recycled"
        assert server.stop(signal.SIGTERM) == 0, server.output()
    assert_delivered_exactly(collector, browser, numbers)


# -- the Flask development server with its reloader ----------------------------------------------


def flask_run(collector, tmp_path: Path, **settings: str) -> ServerProcess:
    """``flask run --reload`` serving a copy of the tracking app, which the test may touch."""
    shutil.copy(APP_MODULE, tmp_path / "reload_app.py")
    port = free_port()
    command = executable("flask") + ["--app", "reload_app", "run", "--reload"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess(command, port, env=app_env(collector, str(tmp_path), **settings))


def reload(server: ServerProcess, source: Path, old_pids: Set[int]) -> int:
    """Touch ``source`` and wait until a new child process serves; its pid."""
    stamp = max(source.stat().st_mtime, time.time()) + 2
    os.utime(source, (stamp, stamp))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            pid = int(server.get("/pid", timeout=1).text)
            if pid not in old_pids:
                return pid
        except requests.RequestException:
            pass  # between the old child's exit and the new one's start
        time.sleep(0.05)
    raise AssertionError(f"no reload within 15 s:\n{server.output()}")


def test_flask_dev_server_delivers_across_a_reload_and_a_sigterm(collector, tmp_path):
    # SIGTERM makes the reloader's parent SIGKILL the serving child: only because the extension
    # delivers each request's events before answering under the development server does nothing
    # get lost here.
    with flask_run(collector, tmp_path) as server:
        browser = Browser(server)
        first = browser.visit(list(range(15)))
        reload(server, tmp_path / "reload_app.py", first)
        browser.visit(list(range(15, 30)))
        server.stop(signal.SIGTERM)
    assert_delivered_exactly(collector, browser, list(range(30)))


def test_flask_dev_server_delivers_at_exit_on_reload_and_ctrl_c(collector, tmp_path):
    # Without the per-request flush the queue waits for the process's exit: a reload exits the
    # child normally, and so does Ctrl-C (SIGINT to the whole process group, as a terminal sends).
    with flask_run(collector, tmp_path, FLUSH_EACH_REQUEST="false") as server:
        browser = Browser(server)
        first = browser.visit(list(range(15)))
        assert collector.events(limit=0, anonymous_id=browser.anonymous_id) == []
        reload(server, tmp_path / "reload_app.py", first)
        collector.wait_for(15, timeout=5, anonymous_id=browser.anonymous_id)
        browser.visit(list(range(15, 30)))
        os.killpg(server.process.pid, signal.SIGINT)
        server.wait(45)
    assert_delivered_exactly(collector, browser, list(range(30)))
