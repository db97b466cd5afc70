"""Real web servers (gunicorn, uvicorn, runserver, flask run) as subprocesses for end-to-end tests.

Each server binds to 127.0.0.1 on a free port, is waited for until it answers HTTP, and is
stopped by the test with a chosen signal; :meth:`ServerProcess.stop` always reaps it (SIGKILL
as the last resort) so no test leaves a server behind.
"""

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from signal import SIGTERM
from typing import Dict, List, Optional, Sequence, Tuple

import requests

__all__ = ["ROOT", "ServerProcess", "free_port", "gunicorn_no_control_socket", "python_env"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_env(extra: Optional[Dict[str, str]] = None, *paths: str) -> Dict[str, str]:
    """The environment for a child Python: this checkout (and ``paths``) importable,
    unbuffered output, no proxy that could capture 127.0.0.1."""
    env = dict(os.environ)
    search = [str(ROOT), str(ROOT / "integrations"), *paths, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, search))
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def default_sigint() -> None:
    """In a child before exec: Ctrl-C (SIGINT) acts as in a terminal.

    A test run started in the background by a non-interactive shell (``make test &``, some CI
    runners) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: the
    Ctrl-C tests would wait for a server that cannot hear them.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ServerProcess:
    """Start ``command`` (a server listening on ``port``) and wait until ``ready_path`` answers.

    Output goes to a temporary file, read back by :meth:`output` to explain failures.
    """

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        *,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        ready_path: str = "/",
        start_timeout: float = 30.0,
        new_session: bool = True,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env if env is not None else python_env(),
            cwd=cwd or str(ROOT),
            # Its own process group, so a reloader's child is signalled and reaped with it.
            start_new_session=new_session,
            preexec_fn=default_sigint,
        )
        self.session = requests.Session()
        self.session.trust_env = False
        self._wait_ready(ready_path, start_timeout)

    def _wait_ready(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                self.session.get(self.url + path, timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.output()}")

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET ``path`` on the server (10 s timeout unless given)."""
        kwargs.setdefault("timeout", 10)
        return self.session.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        """POST to ``path`` on the server (10 s timeout unless given)."""
        kwargs.setdefault("timeout", 10)
        return self.session.post(self.url + path, **kwargs)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the server's main process only."""
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the server to exit; its return code."""
        return self.process.wait(timeout)

    # The default is the module constant: in this class body `signal` is the method above.
    def stop(self, signum: int = SIGTERM, timeout: float = 30.0) -> Optional[int]:
        """Signal, wait up to ``timeout``, then kill the whole process group; the return code."""
        self.session.close()
        if self.process.poll() is None:
            self.signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self._kill_group()
        return self.process.returncode

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        """Everything the server printed so far."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def close(self) -> None:
        """Stop the server if needed and release the log file."""
        self.stop()
        self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def executable(name: str) -> List[str]:
    """The command that runs console script ``name`` from this interpreter's environment."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        raise RuntimeError(f"{name} is not installed next to {sys.executable}; run `make test`")
    return [path]


@functools.cache
def gunicorn_no_control_socket() -> Tuple[str, ...]:
    """``("--no-control-socket",)`` for a gunicorn that has a control socket, else ``()``.

    The control socket's default path is shared by every gunicorn of this user, so tests running
    side by side would trip over each other's. gunicorn has one only since 25.1, and an older
    one (23 is the last for Python 3.9) refuses the option.
    """
    from gunicorn.config import KNOWN_SETTINGS

    if any(setting.name == "control_socket" for setting in KNOWN_SETTINGS):
        return ("--no-control-socket",)
    return ()
