"""The SIGTERM handling analytics_django installs (analytics_core/signals.py), in child processes.

The end-to-end tests in test_django_servers.py show it in uvicorn and gunicorn; these show the
two mechanisms alone, with nothing but the signal module: a server's handler that re-raises
SIGTERM with the default disposition, and a process with the default disposition.
"""

import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from analytics_core.signals import install_sigterm_handler
from tests.support.servers import ROOT, python_env

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signals only")


def run_child(code):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        env=python_env(),
        cwd=str(ROOT),
    )


def test_a_server_that_re_raises_sigterm_still_exits_through_atexit():
    # The shape of uvicorn: handle SIGTERM gracefully, restore the previous disposition (the
    # default), raise SIGTERM again to die by it.
    result = run_child(
        """
        import atexit, os, signal
        from analytics_core.signals import install_sigterm_handler

        atexit.register(lambda: print("atexit ran", flush=True))
        received = []
        original = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
        assert install_sigterm_handler()
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [signal.SIGTERM], received
        print("graceful shutdown", flush=True)
        signal.signal(signal.SIGTERM, original)
        signal.raise_signal(signal.SIGTERM)
        print("still alive after the re-raise", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "graceful shutdown",
        "still alive after the re-raise",
        "atexit ran",
    ]


def test_the_default_disposition_becomes_an_exit_through_atexit():
    result = run_child(
        """
        import atexit, os, signal, time
        from analytics_core.signals import install_sigterm_handler

        atexit.register(lambda: print("atexit ran", flush=True))
        assert install_sigterm_handler()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("not reached", flush=True)
        """
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stdout.splitlines() == ["atexit ran"]


def test_without_the_handler_the_default_disposition_skips_atexit():
    # The problem being solved, measured: SIGTERM's default action runs no atexit hook.
    result = run_child(
        """
        import atexit, os, signal, time
        atexit.register(lambda: print("atexit ran", flush=True))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        """
    )
    assert result.returncode == -signal.SIGTERM
    assert result.stdout == ""


def test_an_ignored_sigterm_stays_ignored_and_install_is_idempotent():
    saved = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        assert install_sigterm_handler() is False
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert install_sigterm_handler() is True
        assert install_sigterm_handler() is False  # already ours: not wrapped twice
    finally:
        signal.signal(signal.SIGTERM, saved)


def test_nothing_is_installed_outside_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(install_sigterm_handler()))
    thread.start()
    thread.join()
    assert results == [False]
