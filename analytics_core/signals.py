"""Delivering the queue when the process is stopped with SIGTERM, leaving the process as it was.

analytics_core delivers what is queued from an ``atexit`` hook, and two common deaths by SIGTERM
skip it: the default disposition (a script, a management command, uvicorn's gunicorn worker,
a multiprocessing child) kills in the kernel, and uvicorn, after its graceful shutdown, puts
back the disposition it found and raises SIGTERM again to die by it.

What must not change for the program (DESIGN.md, "The host process is left as it was"): a
process that dies by SIGTERM still dies by SIGTERM (``-15`` to ``subprocess``, 143 in a shell),
at most ``shutdown_timeout`` later; a second SIGTERM kills at once; no exception is raised into
the program (its ``except BaseException`` sees nothing); no signal stays blocked; a handler the
program or its server installed still runs, and still kills when it re-raises.

So when the first client that sends from a background queue is made in the main thread
(:func:`analytics_core.lifecycle.register`; Django's AppConfig also calls it), the SIGTERM
disposition found then decides:

- **The default**: our handler. On the first SIGTERM it puts the default back (a second SIGTERM
  kills at once), delivers from a helper thread while the main thread waits in the handler (at
  most the largest ``shutdown_timeout`` and a grace), then raises SIGTERM again: the process dies
  by the signal and the program never ran another line. Delivering on the main thread itself
  could deadlock on a lock the interrupted code holds. If the main thread was interrupted inside
  analytics_core, it may hold the queue's lock, which the delivery needs: it is let run until
  that outermost call returns (a profile hook on the main thread catches the return), at most
  ``_LEAVE_LIMIT`` seconds, then delivery starts anyway.
  A SIGTERM that comes just as the main thread enters a blocking wait would leave the handler
  pending for good: :mod:`analytics_core.sigterm_watch` wakes the main thread then.
- **A handler** (a server's, the program's): wrapped. While it runs, ``signal.raise_signal`` and
  ``os.kill`` are replaced: its re-raise of SIGTERM with the default disposition (the "clean up,
  restore the default, ``signal.raise_signal``" idiom, or ``os.kill`` of its own pid) delivers
  the queue as above, then kills. The signal mask is never touched: a subprocess the handler
  starts can be terminated as usual. Otherwise nothing else happens.
- **uvicorn's handler** (an app that uvicorn imports inside ``Server.capture_signals``: several
  workers, ``--reload``, a program that runs ``Server`` itself, or a client made at the first
  request): wrapped as above; and that server's ``shutdown`` is wrapped so that after a SIGTERM
  the queue is delivered once the graceful shutdown is over, before uvicorn puts its saved
  disposition back and re-raises. During that delivery a second SIGTERM kills at once.
- Ignored, installed outside Python, off the main thread, no ``pthread_sigmask`` (Windows):
  nothing is changed.

A SIGTERM with the default disposition that comes while the main thread is delivering at exit
already (the ``atexit`` hook) lets that delivery finish, then ends the process by the signal.

Opt out with the environment variable ``ANALYTICS_CORE_SIGTERM_HOOK=0`` (read when a client is
made), or undo with :func:`uninstall_sigterm_handler`.
"""

import _thread
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
from types import CodeType, FrameType
from typing import Any, Callable, Iterator, List, Optional

from . import sigterm_watch
from .shutdown import shutdown_clients
from .threads import start_bare_thread

__all__ = ["OPT_OUT_VARIABLE", "install_sigterm_handler", "uninstall_sigterm_handler"]

logger = logging.getLogger("segment")

Handler = Callable[[int, Optional[FrameType]], Any]

OPT_OUT_VARIABLE = "ANALYTICS_CORE_SIGTERM_HOOK"
"""Set to ``0`` (or ``false``, ``no``, ``off``) to leave SIGTERM alone."""
_OFF = frozenset({"0", "false", "no", "off"})

_REPLACED = "_analytics_core_replaced"  # on our handlers: the disposition they replaced
_WRAPPED = "_analytics_core_wrapped"  # on a uvicorn Server.shutdown we wrapped

_GRACE = 0.5
"""Seconds the main thread waits beyond ``shutdown_timeout`` for the delivery to report."""

_LEAVE_LIMIT = 0.5
"""Seconds the main thread may run on to leave analytics_core before delivery starts anyway."""

# Modules of analytics_core that run the program's code for their whole life: being inside
# them says nothing about holding a lock of ours.
_PROGRAM_RUNNERS = (
    "analytics_core.cli",
    "analytics_core.collector",
    "analytics_core.demo",
    "analytics_core.pytest_plugin",
    "analytics_core.signals",
)


# -- installing --------------------------------------------------------------------------------


def install_sigterm_handler() -> bool:
    """Install the SIGTERM handling the module docstring explains; False if left unchanged."""
    if os.environ.get(OPT_OUT_VARIABLE, "").strip().lower() in _OFF:
        return False
    if not hasattr(signal, "pthread_sigmask"):
        return False  # no way to hold a re-raised signal back (Windows)
    if threading.current_thread() is not threading.main_thread():
        return False  # signal.signal() works in the main thread only
    previous = signal.getsignal(signal.SIGTERM)
    if hasattr(previous, _REPLACED) or previous == signal.SIG_IGN or previous is None:
        # Ours already; ignored on purpose; or a handler installed outside Python, which we
        # could not chain to.
        return False
    if previous == signal.SIG_DFL:
        handler: Handler = _on_sigterm
    else:
        handler = _wrap(previous)
    setattr(handler, _REPLACED, previous)
    signal.signal(signal.SIGTERM, handler)
    if handler is _on_sigterm:
        # Standing for the default, it must run even when the signal comes just as the main
        # thread enters a blocking wait (a program's own handler keeps Python's behaviour).
        sigterm_watch.watch(_on_sigterm_installed)
    logger.debug("analytics: SIGTERM now delivers the queue before the process ends")
    return True


def uninstall_sigterm_handler() -> bool:
    """Put back the SIGTERM disposition ours replaced, if ours is still the one installed (in
    the main thread only); False if there was nothing to undo."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if not hasattr(current, _REPLACED):
        return False
    signal.signal(signal.SIGTERM, getattr(current, _REPLACED))
    sigterm_watch.unwatch()
    return True


# -- the default disposition -------------------------------------------------------------------


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    """The handler that stands for the default disposition: deliver, then die by the signal."""
    sigterm_watch.handler_started()
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM kills at once from here on
    _stop(signum, frame)


def _on_sigterm_installed() -> bool:
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


# -- a handler that was there ------------------------------------------------------------------


class _Seen:
    """Whether the wrapped handler was called for SIGTERM (read by the uvicorn hook)."""

    received = False


def _wrap(previous: Handler) -> Handler:
    seen = _Seen()

    def on_sigterm(signum: int, frame: Optional[FrameType]) -> Any:
        seen.received = True
        with _re_raise_delivers_first(signum, frame):
            return previous(signum, frame)

    _hook_uvicorn(previous, seen)
    return on_sigterm


# The functions a handler re-raises with, as they were before any handler ran: _die uses them.
_raise_signal = signal.raise_signal
_kill = os.kill


@contextlib.contextmanager
def _re_raise_delivers_first(signum: int, frame: Optional[FrameType]) -> Iterator[None]:
    """While the program's handler runs: its re-raise of ``signum`` with the default
    disposition ("clean up, restore the default, ``signal.raise_signal``", or ``os.kill`` of
    its own pid) delivers the queue first, then kills exactly as it would have.

    ``signal.raise_signal`` and ``os.kill`` are replaced for the handler's duration only. The
    signal mask is left alone: a blocked SIGTERM would be inherited by every subprocess the
    handler starts (its cleanup helpers), which ``terminate()`` could then never stop.
    """
    own_pid = os.getpid()

    def is_the_re_raise(sig: int) -> bool:
        return sig == signum and signal.getsignal(sig) == signal.SIG_DFL

    def raise_signal(sig: int) -> None:
        if is_the_re_raise(sig):
            _stop(sig, frame)  # delivers, then dies by the signal
            return
        _raise_signal(sig)

    def kill(pid: int, sig: int) -> None:
        if pid == own_pid and is_the_re_raise(sig):
            _stop(sig, frame)
            return
        _kill(pid, sig)

    signal.raise_signal, os.kill = raise_signal, kill  # type: ignore[assignment]
    try:
        yield
    finally:
        signal.raise_signal, os.kill = _raise_signal, _kill  # type: ignore[assignment]


def _hook_uvicorn(previous: Handler, seen: _Seen) -> None:
    """Deliver at the end of uvicorn's graceful shutdown when it came from SIGTERM.

    uvicorn installs ``Server.handle_exit`` for the time it serves; once its ``shutdown()``
    coroutine is over it puts back the disposition it found (usually the default) and raises
    the signal again, which kills before ``atexit``. The server is the bound handler's
    ``__self__``; its ``shutdown`` is wrapped on that instance only.
    """
    server = getattr(previous, "__self__", None)
    if server is None or not type(server).__module__.startswith("uvicorn."):
        return
    shutdown = getattr(server, "shutdown", None)
    import inspect  # only under uvicorn; most processes never need it

    if not inspect.iscoroutinefunction(shutdown) or getattr(shutdown, _WRAPPED, False):
        return

    @functools.wraps(shutdown)
    async def shutdown_then_deliver(*args: Any, **kwargs: Any) -> Any:
        try:
            return await shutdown(*args, **kwargs)
        finally:
            if seen.received:
                _deliver_where_a_second_sigterm_kills()

    setattr(shutdown_then_deliver, _WRAPPED, True)
    server.shutdown = shutdown_then_deliver


def _deliver_where_a_second_sigterm_kills() -> None:
    """Deliver now; meanwhile SIGTERM has its default action (only the main thread can
    change that; elsewhere a second SIGTERM goes to whatever is installed)."""
    if threading.current_thread() is not threading.main_thread():
        _deliver(time.monotonic())
        return
    current = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        _deliver(time.monotonic())
    finally:
        signal.signal(signal.SIGTERM, current)


# -- delivering, then dying --------------------------------------------------------------------


def _stop(signum: int, frame: Optional[FrameType]) -> None:
    """Deliver, then end the process by ``signum``: in the main thread, in a handler, with the
    signal's disposition the default already.

    Returns only when the main thread was inside analytics_core, where it may hold the lock the
    delivery needs: it runs on until it leaves (see :class:`_Deferred`), and ends there.
    """
    started = time.monotonic()
    exiting = _frame_of(frame, shutdown_clients.__code__)
    if exiting is not None:
        # Already delivering at exit (atexit, a multiprocessing finalizer), within its own
        # bound: let that finish rather than start another, then end by the signal.
        _Deferred(signum, exiting, started, deliver=False).arm()
        return
    watched = _outermost_own_frame(frame)
    if watched is None:
        _deliver(started)
        _die(signum)
        return
    _Deferred(signum, watched, started, deliver=True).arm()


def _sending_clients() -> List[Any]:
    from . import lifecycle  # here: lifecycle imports this module

    return [
        client
        for client in list(getattr(lifecycle, "_clients", ()))
        if client.send and not client.sync_mode
    ]


def _deliver(started: float) -> None:
    """Deliver every client's queue from a helper thread and wait for it, until ``started``
    plus the largest ``shutdown_timeout`` (and a grace for the report). Never raises."""
    try:
        clients = _sending_clients()
    except Exception:
        logger.exception("analytics: could not list the clients to deliver at SIGTERM")
        return
    if not clients:
        return
    # Time the main thread spent leaving analytics_core counts against the bound.
    timeout = max(
        0.0, max(client.shutdown_timeout for client in clients) - (time.monotonic() - started)
    )
    finished = _thread.allocate_lock()
    finished.acquire()

    def deliver() -> None:
        try:
            shutdown_clients(clients, timeout)
        finally:
            finished.release()

    # A bare thread: threading.Thread.start() takes a lock of the threading module that the
    # interrupted main thread may hold (it was stopped between any two bytecodes).
    try:
        start_bare_thread(deliver)
    except RuntimeError:  # the interpreter is finalizing: no thread can start any more
        return
    # Interrupted (Ctrl-C while waiting): stop waiting; the process is ending anyway.
    with contextlib.suppress(BaseException):
        finished.acquire(timeout=timeout + _GRACE)


def _die(signum: int) -> None:
    """End the process by ``signum``'s default action (no ``atexit``, status ``-signum``)."""
    # Unblocked in this thread only, in case the program blocked it: the signal must act now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    _raise_signal(signum)
    # Still alive: the disposition was changed since (by the program, whose choice it is).


def _frame_of(frame: Optional[FrameType], code: CodeType) -> Optional[FrameType]:
    """The innermost frame running ``code`` on the interrupted stack, if any."""
    while frame is not None:
        if frame.f_code is code:
            return frame
        frame = frame.f_back
    return None


def _outermost_own_frame(frame: Optional[FrameType]) -> Optional[FrameType]:
    """The outermost frame of analytics_core's own code on the interrupted stack, if any."""
    found = None
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if (name == "analytics_core" or name.startswith("analytics_core.")) and not (
            name.startswith(_PROGRAM_RUNNERS)
        ):
            found = frame
        frame = frame.f_back
    return found


class _Deferred:
    """Deliver (if ``deliver``) and die once the main thread returns from ``watched`` (the
    locks taken below it are released then); when delivering, also from a helper thread after
    ``_LEAVE_LIMIT`` seconds, if that comes first. (Not delivering, ``watched`` is the delivery
    at exit, which keeps its own bound.)

    The main thread stops running the program as soon as it leaves ``watched``: it waits
    there for the delivery, then dies.
    """

    def __init__(self, signum: int, watched: FrameType, started: float, deliver: bool) -> None:
        self.signum = signum
        self.watched = watched
        self.started = started
        self.deliver = deliver
        self.claimed = _thread.allocate_lock()
        self.finished = _thread.allocate_lock()
        self.finished.acquire()
        self.previous_profile = sys.getprofile()

    def arm(self) -> None:
        sys.setprofile(self.on_event)  # the calling thread's only: the main thread
        if self.deliver:
            with contextlib.suppress(RuntimeError):  # finalizing: the return will do
                start_bare_thread(self.after_limit)

    def on_event(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "return" and frame is self.watched:
            sys.setprofile(self.previous_profile)
            self.run()

    def after_limit(self) -> None:
        # Give up waiting for the main thread to leave analytics_core: deliver from here.
        time.sleep(_LEAVE_LIMIT)
        self.run()

    def run(self) -> None:
        if self.claimed.acquire(blocking=False):
            try:
                if self.deliver:
                    _deliver(self.started)
            finally:
                self.finished.release()
        else:  # the other way got here first: wait for its delivery, then end as it does
            with contextlib.suppress(BaseException):  # interrupted: end now
                self.finished.acquire(timeout=_bound_for_waiting(self.started))
        _die(self.signum)


def _bound_for_waiting(started: float) -> float:
    try:
        clients = _sending_clients()
    except Exception:
        return _GRACE
    longest = max((client.shutdown_timeout for client in clients), default=0.0)
    return max(0.0, longest - (time.monotonic() - started)) + _GRACE
