"""The local collector as a subprocess, and the few HTTP calls the benchmark makes to it.

The collector gets its own process so its CPU never competes for a GIL with the client being
measured; on a 2-core machine that gives each side one core.
"""

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import requests

__all__ = ["CollectorProcess", "ROOT"]

# Printed by ``python -m analytics_core.collector`` once it listens (it may pick the port).
LISTENING_PREFIX = "analytics-core collector listening on "
ROOT = Path(__file__).resolve().parents[1]
"""The repository root: children run from here so they import this checkout."""


def child_env() -> Dict[str, str]:
    """The environment for every child process: this checkout first on the path, no buffering."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class CollectorProcess:
    """``python -m analytics_core.collector --port 0 --db :memory:`` and its read/fault API."""

    def __init__(self, *, faults: bool = False, start_timeout: float = 15.0) -> None:
        command = [sys.executable, "-m", "analytics_core.collector"]
        command += ["--host", "127.0.0.1", "--port", "0", "--db", ":memory:"]
        if faults:
            command.append("--faults")
        # A file, not a pipe, for stderr: nobody reads it until something goes wrong, and a full
        # pipe would block the collector.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._stderr, env=child_env(), cwd=str(ROOT)
        )
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        self.url = self._wait_for_url(start_timeout)
        self.session = requests.Session()
        # Never send 127.0.0.1 through a proxy from the environment.
        self.session.trust_env = False

    def _pump_stdout(self) -> None:
        # Drained for the child's whole life so a full stdout pipe can never block it.
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._lines.put(None)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"the collector did not start within {timeout:g} s") from None
            if line is None:
                text = self.stderr_text()
                self.stop()
                raise RuntimeError(f"the collector exited at start-up:\n{text}")
            if line.startswith(LISTENING_PREFIX):
                return line[len(LISTENING_PREFIX) :].strip()

    def stderr_text(self, limit: int = 4000) -> str:
        """The tail of the collector's stderr, to explain a failure."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-limit:]

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the collector (kill it if it hangs) and release its pipes."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self, "session"):
            self.session.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "CollectorProcess":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def stats(self) -> Dict[str, int]:
        """``{"requests", "batches", "messages", "rejected"}``; messages = rows stored."""
        return self._call("GET", "/v1/stats")

    def clear(self) -> None:
        """Delete every stored message and reset the counters."""
        self._call("DELETE", "/v1/events")

    def set_faults(self, plan: List[Dict[str, Any]]) -> None:
        """Replace the fault plan (only on a collector started with ``faults=True``)."""
        self._call("POST", "/_faults", json=plan)
