"""Process lifecycle: deliver before the process ends, and give a forked child a working queue.

Every way a process ends calls :func:`analytics_core.shutdown.shutdown_clients` with the
clients of this process (:func:`deliver_before_exit`); what differs is which hook gets to run:

- A normal exit (a script, a server that returns, a ``spawn`` child of multiprocessing):
  ``atexit``.
- A child of multiprocessing (``fork`` and ``forkserver`` children, the workers of ``Pool`` and
  ``ProcessPoolExecutor``) leaves through ``os._exit()``, which skips ``atexit``; before that it
  runs multiprocessing's finalizers (``multiprocessing.util.Finalize`` with an exit priority).
  Ours is registered in the child: when its first client is made there, or, for a client made
  before the fork, from multiprocessing's after-fork callbacks (the child's finalizer registry
  is cleared after the fork, then those run). A ``spawn`` child runs them too, then ``atexit``:
  the second delivery finds nothing left. billiard (Celery's fork of multiprocessing) is handled
  the same way; billiard 4 shares multiprocessing's registries.
- A process of Celery's prefork pool: billiard's pool worker calls ``os._exit()`` itself, before
  any finalizer runs (measured: tests/test_jobs_celery.py), and Celery sends its
  ``worker_process_shutdown`` signal in the child just before. When Celery is loaded in a process
  that has a client, :mod:`analytics_celery` is told to listen for it: no set-up line needed.
- An RQ work horse calls ``os._exit()`` right after the job; ``analytics_rq.Worker`` (RQ's
  ``--worker-class``) delivers first.
- SIGTERM: :mod:`analytics_core.signals`.
- SIGKILL, or ``os._exit()`` called by the program itself: nothing can run. ``persist=`` keeps
  accepted messages in a spool file that the next process sends.

Clients are tracked in a WeakSet, so a client the program dropped is not kept alive by us.
"""

import atexit
import importlib
import logging
import os
import sys
import threading
import weakref
from typing import Any, Dict, Optional

from . import ids, signals
from .shutdown import shutdown_clients

__all__ = ["deliver_before_exit", "register"]

logger = logging.getLogger("segment")

_clients: "weakref.WeakSet[Any]" = weakref.WeakSet()
_registered = False
_register_lock = threading.Lock()

# The multiprocessing-like libraries whose children end through their finalizers, by the name
# of the package that has ``process`` and ``util`` modules.
_PROCESS_LIBRARIES = ("multiprocessing", "billiard")

# Job frameworks whose pool processes end in a way only the framework announces: when one is
# loaded in a process with a client, its integration's hook is installed (module, function).
_FRAMEWORK_HOOKS = {"celery": ("analytics_celery.worker", "connect_exit_hooks")}

# id(Finalize class) -> pid of the process whose finalizer registry holds our finalizer (a
# fork copies the registry, but multiprocessing clears it in the new child).
_finalizer_pids: Dict[int, int] = {}
# ids of the after-fork registration functions that hold ours (a fork keeps it: once is enough).
_after_fork_hooked: Dict[int, bool] = {}
_frameworks_hooked: Dict[str, bool] = {}

FINALIZER_PRIORITY = 100
"""The exit priority of our finalizer: higher runs first, so delivery (and ``on_error``, which
may put to a multiprocessing queue) happens before multiprocessing ends its own pools, managers
and queues (priority 15 and below)."""


def register(client: Any) -> None:
    """Remember ``client`` for the exit and fork hooks (installed once, on first use)."""
    global _registered
    with _register_lock:
        _clients.add(client)
        if client.send and not client.sync_mode:
            # Servers that die by SIGTERM skip atexit (see signals.py); in the main thread only.
            signals.install_sigterm_handler()
            _hook_process_end()
        if _registered:
            return
        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
        _registered = True


def deliver_before_exit(timeout: Optional[float] = None) -> bool:
    """Deliver what every client of this process holds and stop their uploaders, because the
    process is about to end (what cannot be delivered in time goes to ``on_error``).

    For an integration's hook that runs just before a process leaves through ``os._exit()``
    (a job worker's pool process, a work horse). ``timeout``: seconds for all clients together;
    None: their largest ``shutdown_timeout``. A client used afterwards starts again. Never
    raises; True when everything was delivered or reported in time.
    """
    try:
        return shutdown_clients(list(_clients), timeout=timeout)
    except Exception:  # a hook at exit must never raise into the process's own shutdown
        logger.exception("analytics: delivering before the process ends failed")
        return False


def prepare_for_forks() -> None:
    """Import now what a client first needs to send: the HTTP stack (requests and urllib3) and
    the spool's ``sqlite3``. For a job worker's main process, which forks a process per job (or
    per few tasks): each child then inherits them instead of importing them again, which cost
    every RQ work horse about 150 ms here. Never raises."""
    try:
        from . import spool, transport  # noqa: F401 - the import is the point

        transport.load_http()
    except Exception:  # only a head start: the child imports what it needs anyway
        logger.debug("analytics: could not import ahead of forks", exc_info=True)


def _at_exit() -> None:
    deliver_before_exit()


def _after_fork_in_child() -> None:
    # The child inherits the parent's queue but not its threads. The parent still delivers those
    # messages, so the child starts empty (no duplicates) with fresh locks and a fresh id source.
    global _register_lock
    _register_lock = threading.Lock()
    ids.reset_after_fork()
    for client in list(_clients):
        client.pipeline.reset_after_fork()
    if _clients:
        _hook_after_forkers()
        _hook_frameworks()
        _warn_in_a_work_horse_that_cannot_deliver()


def _hook_process_end() -> None:
    """Make sure this process delivers however it ends: its library's finalizer when it is a
    multiprocessing or billiard child, the framework's own hook in a job worker."""
    for library in _PROCESS_LIBRARIES:
        util = _child_util(library)
        if util is not None:
            _add_finalizer(util)
    _hook_frameworks()
    _warn_in_a_work_horse_that_cannot_deliver()


def _child_util(library: str) -> Any:
    """``library``'s util module if this process is a child that ``library`` started."""
    process = sys.modules.get(f"{library}.process")
    util = sys.modules.get(f"{library}.util")
    if process is None or util is None:
        return None
    try:
        current = process.current_process()
    except Exception:
        return None
    # The main process has no parent pid; a process the library started has its parent's. A
    # bare os.fork() keeps the parent's process object, and is handled by the after-fork hook.
    if getattr(current, "_parent_pid", None) is None:
        return None
    return util


def _add_finalizer(util: Any) -> None:
    finalize = getattr(util, "Finalize", None)
    if finalize is None:
        return
    pid = os.getpid()
    if _finalizer_pids.get(id(finalize)) == pid:
        return  # billiard 4 re-exports multiprocessing's: one registry, one finalizer
    finalize(None, _at_exit, exitpriority=FINALIZER_PRIORITY)
    _finalizer_pids[id(finalize)] = pid


class _Marker:
    """A weak-referenceable key for a library's after-fork registry (kept alive by this module),
    naming the library whose finalizer the callback adds."""

    def __init__(self, library: str) -> None:
        self.library = library


_markers = {library: _Marker(library) for library in _PROCESS_LIBRARIES}


def _hook_after_forkers() -> None:
    # In a child just forked with clients already made: if a multiprocessing-like library forked
    # it, that library clears the finalizers the child inherited, then runs its after-fork
    # callbacks, so ours adds the finalizer then. A grandchild inherits the registration.
    for library in _PROCESS_LIBRARIES:
        util = sys.modules.get(f"{library}.util")
        register_after_fork = getattr(util, "register_after_fork", None)
        if register_after_fork is None or _after_fork_hooked.get(id(register_after_fork)):
            continue
        register_after_fork(_markers[library], _finalizer_after_fork)
        _after_fork_hooked[id(register_after_fork)] = True


def _finalizer_after_fork(marker: _Marker) -> None:
    util = sys.modules.get(f"{marker.library}.util")
    if util is not None:
        _add_finalizer(util)


def _hook_frameworks() -> None:
    for framework, (module, function) in _FRAMEWORK_HOOKS.items():
        if framework not in sys.modules or _frameworks_hooked.get(framework):
            continue
        _frameworks_hooked[framework] = True  # once, even if the integration cannot load
        try:
            getattr(importlib.import_module(module), function)()
        except Exception:
            logger.warning(
                "analytics: could not install the %s exit hook (%s); events accepted in its "
                "pool processes may be lost when they exit",
                framework,
                module,
                exc_info=True,
            )


# RQ's worker methods that are on the stack in a work horse (forking it, or running its job).
_RQ_HORSE_FRAMES = frozenset({"fork_work_horse", "main_work_horse"})
_warned_about_rq = False


def _warn_in_a_work_horse_that_cannot_deliver() -> None:
    """In an RQ work horse of a worker class that does not deliver before ``os._exit()`` (plain
    ``rq worker``): say so, once per process, rather than lose the job's events silently."""
    global _warned_about_rq
    if _warned_about_rq or "rq.worker" not in sys.modules:
        return
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in _RQ_HORSE_FRAMES:
            worker = frame.f_locals.get("self")
            names = {cls.__name__ for cls in type(worker).__mro__}
            if "DeliverBeforeExit" not in names:
                _warned_about_rq = True
                spooled = bool(_clients) and all(
                    client.pipeline.spool is not None for client in list(_clients)
                )
                fate = (
                    "waits in the spool until the next process opens it" if spooled else "is lost"
                )
                logger.warning(
                    "analytics: this RQ work horse leaves through os._exit() as soon as the job "
                    "is done, so what the job tracked %s; run the worker with "
                    "`rq worker --worker-class analytics_rq.Worker` (see the README)",
                    fate,
                )
            return
        frame = frame.f_back
