"""Waking a main thread that would sleep through its SIGTERM.

Our SIGTERM handler stands for the default disposition, which kills wherever the process is.
A Python handler only runs when the main thread next checks for signals: when the signal comes
just before the main thread enters a blocking wait (the C code of ``lock.acquire()``,
``sem_wait``, a ``recv``), that wait is not interrupted, and the handler may never run. Seen: a
multiprocessing worker about to wait for the queue's lock, which its parent holds for good once
it terminates the pool, so ``Pool.terminate()`` waited forever for a worker that its SIGTERM
should have ended (about one ``with Pool()`` in a hundred, on a busy machine).

So while our handler is installed, the signal module's wakeup file descriptor (CPython writes
each caught signal's number to it, from whatever thread the signal interrupted) is a pipe that
a thread of ours reads. On a SIGTERM byte, the main thread gets :data:`START_LIMIT` seconds to
start the handler; if it has not, the watcher sends SIGTERM to the main thread itself, which
interrupts the wait so that the handler runs, and does so again until it has.

The wakeup descriptor is process-wide and has one owner: it is only taken when nobody holds it,
and whoever sets it later (an asyncio loop adding signal handlers) simply takes it over. A
forked child gets its own pipe and watcher (the parent's are not shared). A child forked by C
code that runs no at-fork hooks (``subprocess`` with a user or group change) shares the pipe
until it calls ``exec``: a SIGTERM that reaches it in that moment would wake the parent's
watcher, which sends SIGTERM to the parent only if the parent's handler is still waiting to
run; the kernel makes that moment microseconds long.
"""

import contextlib
import os
import signal
import threading
import time
from typing import Callable, Optional, Tuple

from .threads import start_thread

__all__ = ["START_LIMIT", "handler_started", "unwatch", "watch"]

START_LIMIT = 0.2
"""Seconds the main thread gets to start the SIGTERM handler on its own before it is woken."""

_SIGTERM_BYTE = int(signal.SIGTERM) if hasattr(signal, "SIGTERM") else None

# The pipe of this process (read end, write end), the handler watched, and whether it started.
_pipe: Optional[Tuple[int, int]] = None
_pipe_pid = 0
_is_installed: Optional[Callable[[], bool]] = None
_started = False
_at_fork_registered = False


def handler_started() -> None:
    """Called first thing by the SIGTERM handler: it runs, no waking needed (a plain flag: it
    is set inside a signal handler, where taking a lock could deadlock)."""
    global _started
    _started = True


def watch(is_installed: Callable[[], bool]) -> bool:
    """From the main thread, once our handler is installed: watch for SIGTERMs it does not get
    to handle (``is_installed`` says whether it still is). False when the wakeup descriptor
    belongs to someone else or the platform has none."""
    global _is_installed, _at_fork_registered, _started
    if _SIGTERM_BYTE is None or not hasattr(signal, "pthread_kill"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    _is_installed, _started = is_installed, False
    if not _at_fork_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _at_fork_registered = True
    return _open()


def unwatch() -> None:
    """From the main thread: give back the wakeup descriptor if it is still ours; the watcher
    ends when it reads the end of the pipe."""
    global _is_installed
    _is_installed = None
    _close()


def _open() -> bool:
    global _pipe, _pipe_pid, _started
    if _pipe is not None and _pipe_pid == os.getpid():
        return True
    read_end, write_end = os.pipe()  # both ends close on exec
    os.set_blocking(write_end, False)  # required: the C signal handler must never block
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(read_end)
        os.close(write_end)
        return False
    if previous != -1:  # someone else's (an event loop's): leave it to them
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
        return False
    _pipe, _pipe_pid, _started = (read_end, write_end), os.getpid(), False
    try:
        start_thread(_watch_pipe, (read_end,), "analytics-sigterm-watch")
    except RuntimeError:  # the interpreter is ending: no thread, no watch
        _close()
        return False
    return True


def _close() -> None:
    global _pipe
    if _pipe is None:
        return
    read_end, write_end = _pipe
    _pipe = None
    _give_back_wakeup_fd(write_end)
    os.close(write_end)  # the watcher reads the end of the pipe, closes its end and ends


def _give_back_wakeup_fd(ours: int) -> None:
    """Unset the wakeup descriptor if it is ``ours``; someone's who took it over stays."""
    try:
        current = signal.set_wakeup_fd(-1)
        if current not in (-1, ours):
            signal.set_wakeup_fd(current)
    except (ValueError, OSError):  # not the main thread: nothing we may change
        pass


def _after_fork_in_child() -> None:
    # The pipe and its watcher belong to the parent: a byte written here would wake the
    # parent's watcher. This process gets its own if our handler is still installed.
    global _pipe
    inherited, _pipe = _pipe, None
    if inherited is None:
        return
    _give_back_wakeup_fd(inherited[1])
    for descriptor in inherited:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    if _is_installed is not None and _is_installed():
        _open()


def _watch_pipe(read_end: int) -> None:
    try:
        while True:
            data = os.read(read_end, 512)
            if not data:
                return  # the write end was closed: unwatched
            if _SIGTERM_BYTE in data:
                _wake_until_handled()
    except OSError:
        return
    finally:
        with contextlib.suppress(OSError):
            os.close(read_end)


def _wake_until_handled() -> None:
    # Should the handler start between the check and the kill, the kill finds the default
    # disposition it puts back and ends the process, as SIGTERM would have without us.
    waited_since = time.monotonic()
    while not _started and _is_installed is not None and _is_installed():
        if time.monotonic() - waited_since >= START_LIMIT:
            # Interrupts the main thread's wait; its C code then runs the pending handler.
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
            waited_since = time.monotonic()
        time.sleep(0.02)
