"""Delivering the queue when the process is stopped with SIGTERM.

analytics_core delivers what is queued from an ``atexit`` hook, which runs when the interpreter
exits normally (gunicorn's workers leave through ``sys.exit``, so that is enough there). Two
common ways of stopping a process skip it, both measured in tests (tests/test_django_servers.py,
tests/test_reliability_servers.py):

- uvicorn handles SIGTERM gracefully, then restores the handler that was there before it
  started (the default) and raises SIGTERM again so that the process dies "by the signal". That
  death runs no ``atexit`` hook: every event of the last ``upload_interval`` is lost.
- A process whose SIGTERM disposition is the default (a script, a management command, uvicorn's
  gunicorn worker, which resets it before uvicorn takes over) is killed on the spot, also
  without ``atexit``.

So when the first client that sends from a background queue is made in the main thread
(:func:`analytics_core.lifecycle.register`; Django's AppConfig also calls it when the app is
ready), the SIGTERM handler is wrapped:

- If a server installed a handler (uvicorn, gunicorn's workers), it still gets the signal, but
  SIGTERM is blocked on the main thread first. A server that re-raises SIGTERM after its graceful
  shutdown (uvicorn) then leaves the signal pending instead of dying, returns from its main
  function, and the process exits normally through ``atexit``. A second SIGTERM from outside is
  delivered to another thread and still reaches the server's handler.
- If the disposition was the default, SIGTERM raises ``SystemExit(143)`` (128 + SIGTERM, the
  status a shell reports for a process killed by it) in the main thread, as Django's autoreloader
  does: the stack unwinds and ``atexit`` delivers the queue. Delivering from inside the handler
  instead could deadlock on a lock the interrupted code holds.

A SIGTERM that was ignored stays ignored, and nothing is changed outside the main thread.
"""

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Optional

__all__ = ["install_sigterm_handler"]

logger = logging.getLogger("segment")

_MARK = "_analytics_core_sigterm"


def _wrap_server_handler(previous: Callable[[int, Optional[FrameType]], Any]) -> Callable:
    def on_sigterm(signum: int, frame: Optional[FrameType]) -> Any:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        return previous(signum, frame)

    return on_sigterm


def _exit_on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    # Once is enough: a second SIGTERM during the delivery at exit kills as the default would.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(128 + signum)


def install_sigterm_handler() -> bool:
    """Wrap the SIGTERM handler as the module docstring explains; False if left unchanged."""
    if threading.current_thread() is not threading.main_thread():
        return False  # signal.signal() works in the main thread only
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (AttributeError, ValueError):  # a platform without SIGTERM
        return False
    if getattr(previous, _MARK, False) or previous == signal.SIG_IGN:
        return False
    if callable(previous):
        handler = _wrap_server_handler(previous)
    elif previous == signal.SIG_DFL:
        handler = _exit_on_sigterm
    else:  # None: a handler installed outside Python, which we cannot chain to
        return False
    setattr(handler, _MARK, True)
    signal.signal(signal.SIGTERM, handler)
    logger.debug("analytics: SIGTERM now delivers the queue before the process ends")
    return True
