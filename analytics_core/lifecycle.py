"""Process lifecycle: deliver at exit, and give a forked child a working queue and uploader.

Clients are tracked in a WeakSet, so a client the program dropped is not kept alive by us.
"""

import atexit
import logging
import os
import sys
import threading
import weakref
from typing import Any

from . import ids, signals
from .shutdown import shutdown_clients

logger = logging.getLogger("segment")

_clients: "weakref.WeakSet[Any]" = weakref.WeakSet()
_registered = False
_register_lock = threading.Lock()


def register(client: Any) -> None:
    """Remember ``client`` for the exit and fork hooks (installed once, on first use)."""
    global _registered
    with _register_lock:
        _clients.add(client)
        if client.send and not client.sync_mode:
            # Servers that die by SIGTERM skip atexit (see signals.py); in the main thread only.
            signals.install_sigterm_handler()
        if _registered:
            return
        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
        _registered = True


def _at_exit() -> None:
    shutdown_clients(list(_clients))


def _after_fork_in_child() -> None:
    # The child inherits the parent's queue but not its threads. The parent still delivers those
    # messages, so the child starts empty (no duplicates) with fresh locks and a fresh id source.
    global _register_lock
    _register_lock = threading.Lock()
    ids.reset_after_fork()
    for client in list(_clients):
        client.pipeline.reset_after_fork()
    _hook_multiprocessing_exit()


class _Marker:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_marker = _Marker()
_multiprocessing_hooked = False


def _hook_multiprocessing_exit() -> None:
    # A multiprocessing child leaves through os._exit(), so atexit never runs there; its own
    # finalizers do. They are cleared right after the fork, so register ours from its after-fork
    # callbacks (once: a grandchild inherits the registration).
    global _multiprocessing_hooked
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None or _multiprocessing_hooked:
        return
    mp_util.register_after_fork(_marker, _add_multiprocessing_finalizer)
    _multiprocessing_hooked = True


def _add_multiprocessing_finalizer(_unused: Any) -> None:
    sys.modules["multiprocessing.util"].Finalize(None, _at_exit, exitpriority=100)
