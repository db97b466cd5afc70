"""A real ``redis-server`` for the Celery and RQ tests: on a free 127.0.0.1 port, nothing
written to disk, stopped (and reaped) by :meth:`RedisServer.stop`.

Redis comes from Debian's ``redis-server`` package, which ``make test`` installs when it is
missing. A machine without it fails these tests with that message rather than skipping them:
a skipped delivery test would look like a passing one.
"""

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator, Optional

import pytest

from tests.support.servers import free_port

__all__ = ["RedisServer", "redis_server"]

MISSING = (
    "redis-server is not installed: `make test` installs Debian's redis-server package "
    "(or run `sudo apt-get install redis-server`)"
)


class RedisServer:
    """``redis-server --port <free> --bind 127.0.0.1 --save '' --appendonly no``."""

    def __init__(self, start_timeout: float = 10.0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(MISSING)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="analytics-redis-")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process: Optional[subprocess.Popen] = subprocess.Popen(
            [
                executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir.name,
                "--daemonize", "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        # Stopped at the latest when this interpreter exits: a run that fails before its
        # teardown must not leave a server behind.
        atexit.register(self.stop)
        self._wait_ready(start_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start-up:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """What redis-server printed."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def flush(self) -> None:
        """Empty every database: each test starts with no queued jobs."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(64).startswith(b"+OK")

    def stop(self) -> None:
        """Stop redis-server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        process, self.process = self.process, None
        if process is None:
            return  # stopped already
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._log.close()
        self._dir.cleanup()


def redis_server() -> Iterator[RedisServer]:
    """The body of a test module's ``redis`` fixture (module scope): a running server, stopped
    afterwards; the test fails, naming the fix, when redis-server is not installed."""
    try:
        server = RedisServer()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server
    server.stop()
