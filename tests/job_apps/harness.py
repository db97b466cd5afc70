"""Helpers shared by the tests/test_jobs_*.py tests: the job processes' environment, and exact
checks of what arrived at the collector or reached ``on_error``."""

import collections
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

from tests.support.servers import ROOT, python_env

__all__ = [
    "JobFiles",
    "WorkerProcess",
    "closed_url",
    "delivered_indexes",
    "unique_user",
    "wait_until",
]


def unique_user(prefix: str = "job") -> str:
    """A user id no other test uses: each test finds its own events by it."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def closed_url() -> str:
    """A collector URL on a 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class JobFiles:
    """The files a job process writes (see tests/job_apps/shared.py) and its environment."""

    def __init__(self, directory: Path) -> None:
        self.errors = directory / "errors.txt"
        self.done = directory / "done.txt"

    def env(self, host: str, **extra: str) -> Dict[str, str]:
        """The environment of a job process that sends to ``host``."""
        env = python_env(
            {"JOBS_HOST": host, "JOBS_ERRORS": str(self.errors), "JOBS_DONE": str(self.done)}
        )
        # pytest-django exports the test project's settings module, and Celery would set that
        # Django project up in the worker (its analytics settings send nothing).
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update(extra)
        return env

    def done_lines(self, user: Optional[str] = None) -> List[List[str]]:
        """One ``[pid, index, accepted, user]`` per job that tracked (for ``user``)."""
        return [line for line in _lines(self.done) if user is None or line[3] == user]

    def reported(self, user: Optional[str] = None) -> "collections.Counter[int]":
        """How many times on_error was given each index (of ``user``'s messages)."""
        return collections.Counter(
            int(index) for who, index, *_ in _lines(self.errors) if user is None or who == user
        )


def delivered_indexes(events: Iterable[dict]) -> List[int]:
    """The ``index`` property of each event, sorted (duplicates kept, so they show)."""
    return sorted(event["properties"]["index"] for event in events)


def _lines(path: Path) -> List[List[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line]


class WorkerProcess:
    """A job worker (``celery worker``, ``rq worker``) as a real process in its own session:
    stopped with a chosen signal, and its whole group killed if it outlives the test."""

    def __init__(self, command: List[str], env: Dict[str, str]) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(ROOT),
            start_new_session=True,
        )

    def output(self) -> str:
        """Everything the worker printed so far."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-6000:]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the worker's main process."""
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the worker to exit; its return code (the output explains a time-out)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the worker did not exit within {timeout}s:\n{self.output()}"
            ) from None

    def close(self) -> None:
        """Kill whatever is left of the worker's process group and release the log."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)
