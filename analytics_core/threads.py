"""Starting analytics_core's own threads so that the program's signals never land on them.

Python runs signal handlers in the main thread only, but the kernel may hand a signal sent to
the process (``kill``, ``terminate()``, Ctrl-C) to any thread that does not block it. When it
picks one of ours, the handler is only flagged: a main thread asleep in a blocking call (a
multiprocessing worker waiting for a task, ``sem_wait``, a ``recv``) is not woken and never
runs it. Seen: ``Pool.terminate()`` waited forever for a worker whose SIGTERM went to its
uploader thread. A signal the main thread blocks on purpose would also be acted on behind its
back.

So every thread analytics_core starts blocks the asynchronous signals from its first
instruction: they are blocked in the starting thread around the start (a new thread inherits
its creator's mask) and the starting thread's mask is put back at once. A signal that comes in
that moment stays pending and is delivered as soon as the mask is back. Signals a thread raises
for itself (a fault, SIGPIPE, ``abort()``) are left alone.
"""

import _thread
import contextlib
import signal
import threading
from typing import Any, Callable, Iterator, Tuple

__all__ = ["ASYNC_SIGNALS", "start_bare_thread", "start_thread"]

# Signals the kernel sends to the thread that caused them: blocking those would turn a crash
# into a hang or hide an error.
_SYNCHRONOUS = frozenset(
    getattr(signal, name)
    for name in (
        "SIGKILL",
        "SIGSTOP",
        "SIGSEGV",
        "SIGBUS",
        "SIGFPE",
        "SIGILL",
        "SIGTRAP",
        "SIGSYS",
        "SIGABRT",
        "SIGPIPE",
        "SIGXFSZ",
        "SIGXCPU",
    )
    if hasattr(signal, name)
)

ASYNC_SIGNALS = (
    frozenset(signal.valid_signals()) - _SYNCHRONOUS
    if hasattr(signal, "pthread_sigmask")
    else frozenset()
)
"""The signals analytics_core's threads block: those sent to the process as a whole."""


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    if not ASYNC_SIGNALS:  # no pthread_sigmask (Windows): signals go to the main thread anyway
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, ASYNC_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def start_thread(target: Callable[..., Any], args: Tuple[Any, ...], name: str) -> threading.Thread:
    """Start a daemon ``threading.Thread`` running ``target(*args)`` that blocks the
    asynchronous signals; raises RuntimeError as ``Thread.start`` does (interpreter ending)."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    with _signals_blocked():
        thread.start()
    return thread


def start_bare_thread(function: Callable[[], Any]) -> None:
    """Start ``function`` on a ``_thread`` thread that blocks the asynchronous signals: for a
    signal handler, where ``threading``'s own locks may be held by the interrupted code."""
    with _signals_blocked():
        _thread.start_new_thread(function, ())
