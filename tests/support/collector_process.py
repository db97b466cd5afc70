"""The collector as a real subprocess, for end-to-end tests.

A real process (not a thread) means the client under test shares nothing with the server:
no GIL contention, no shared module state, and SIGTERM / restart behave as in production.
"""

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import requests

__all__ = ["CollectorProcess"]

_LISTENING_PREFIX = "analytics-core collector listening on "
# The repository root, so the child imports this checkout even when it is not installed.
_ROOT = Path(__file__).resolve().parents[2]


class CollectorProcess:
    """Run ``python -m analytics_core.collector --port 0`` and talk to it over HTTP.

    With no ``db`` a temporary SQLite file is used and removed on :meth:`stop`; pass a path to
    keep events across a restart.
    """

    def __init__(
        self,
        db: Optional[str] = None,
        *,
        write_key: Optional[str] = None,
        faults: bool = True,
        start_timeout: float = 10.0,
        extra_args: Optional[List[str]] = None,
    ) -> None:
        self._tmpdir: Optional[str] = None
        if db is None:
            self._tmpdir = tempfile.mkdtemp(prefix="analytics-collector-")
            db = os.path.join(self._tmpdir, "events.db")
        self.db = db
        # Closed in stop(): it must outlive __init__ to explain a failed start.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        command = [sys.executable, "-m", "analytics_core.collector"]
        command += ["--host", "127.0.0.1", "--port", "0", "--db", db]
        if write_key is not None:
            command += ["--write-key", write_key]
        if faults:
            command.append("--faults")
        command += extra_args or []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=str(_ROOT),
        )
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        # Keep draining stdout for the child's whole life, so a full pipe can never block it.
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        self.url = self._wait_for_url(start_timeout)
        self.session = requests.Session()
        # The proxy lookup in the environment is slow and must not route 127.0.0.1 anywhere.
        self.session.trust_env = False
        if write_key is not None:  # reads and deletes need the collector's key
            self.session.auth = (write_key, "")

    # -- lifecycle -------------------------------------------------------------------------

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._lines.put(None)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                self._kill()
                raise RuntimeError(
                    f"the collector did not start within {timeout}s:\n{self._stderr_text()}"
                ) from None
            if line is None:  # stdout closed: the child exited
                self._kill()
                raise RuntimeError(f"the collector exited at start-up:\n{self._stderr_text()}")
            if line.startswith(_LISTENING_PREFIX):
                return line[len(_LISTENING_PREFIX) :].strip()

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-4000:]

    def stderr_text(self) -> str:
        """What the collector wrote to stderr so far (the last 4000 characters); read it
        before :meth:`stop`, which closes the file."""
        return self._stderr_text()

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM the collector, wait, kill it if it hangs; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        if hasattr(self, "session"):
            self.session.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        return self.process.returncode

    def __enter__(self) -> "CollectorProcess":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- the collector's read and fault APIs -------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.url + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def events(self, **filters: Any) -> List[Dict[str, Any]]:
        """Stored messages, newest first (``limit=0`` for all; default is the newest 1000)."""
        params = {name: value for name, value in filters.items() if value is not None}
        return self._call("GET", "/v1/events", params=params)

    def stats(self) -> Dict[str, int]:
        """``{"requests", "batches", "messages", "rejected"}``."""
        return self._call("GET", "/v1/stats")

    def clear(self) -> None:
        """Delete every stored message and reset the counters."""
        self._call("DELETE", "/v1/events")

    def set_faults(self, plans: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Replace the fault plan; each plan is ``{status, retry_after, delay, times}``."""
        return self._call("POST", "/_faults", json=plans)

    def faults(self) -> List[Dict[str, Any]]:
        """The faults still planned."""
        return self._call("GET", "/_faults")

    def clear_faults(self) -> None:
        """Drop every planned fault."""
        self._call("DELETE", "/_faults")

    def wait_for(self, count: int, timeout: float = 10.0, **filters: Any) -> List[Dict[str, Any]]:
        """Poll until at least ``count`` messages are stored; return them, oldest first.

        Raises ``AssertionError`` with what did arrive if the count is not reached in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            # The counter is cheap to poll, and it always equals the number of stored rows.
            stored = len(self.events(limit=0, **filters)) if filters else self.stats()["messages"]
            if stored >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        events = self.events(limit=0, order="asc", **filters)
        if len(events) < count:
            raise AssertionError(f"expected {count} messages within {timeout}s, got {len(events)}")
        return events
