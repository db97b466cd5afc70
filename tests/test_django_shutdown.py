"""The SIGTERM handling analytics_django installs (analytics_core/signals.py), in child processes.

The end-to-end tests in test_django_servers.py show it in uvicorn and gunicorn, and
tests/test_signals.py every behaviour with a client that delivers; these show the two
mechanisms alone, with nothing but the signal module: a server's handler that re-raises SIGTERM
with the default disposition, and a process with the default disposition.
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


def test_a_handler_that_re_raises_after_returning_still_kills():
    # The shape of uvicorn without its Server: handle SIGTERM (the handler returns), restore
    # the previous disposition (the default), raise SIGTERM again to die by it. Nothing is
    # left blocked in between, and the re-raise kills as the program asked (it used to be held
    # back for good, and the program exited 0 later).
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
        print("blocked", sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), flush=True)
        signal.signal(signal.SIGTERM, original)
        signal.raise_signal(signal.SIGTERM)
        print("still alive after the re-raise", flush=True)
        """
    )
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert result.stdout.splitlines() == ["graceful shutdown", "blocked []"]


def test_the_default_disposition_still_kills_by_the_signal():
    # The process dies by SIGTERM as without the handler (it used to become SystemExit(143),
    # which `except BaseException` could swallow); with a client, its queue is delivered first
    # (tests/test_signals.py). The program's own atexit hooks do not run, as without it.
    result = run_child(
        """
        import atexit, os, signal, time
        from analytics_core.signals import install_sigterm_handler

        atexit.register(lambda: print("atexit ran", flush=True))
        assert install_sigterm_handler()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException as error:
            print("caught", repr(error), flush=True)
        print("not reached", flush=True)
        """
    )
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert result.stdout == ""


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
