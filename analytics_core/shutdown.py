"""Delivering what every client holds when the process is about to end.

One entry point for every way a process ends (``atexit``, a multiprocessing or billiard
finalizer, a job worker's hook, SIGTERM): :func:`shutdown_clients`.

The clients shut down side by side, each on a thread of its own, against one deadline: the
exit takes the timeout once, not once per client. A client whose uploader is stuck (a collector
that accepted the connection and never answers, a host name whose lookup never returns) does
not hold the others up, and what it still holds at the deadline, waiting or in flight, is
reported to its ``on_error`` then (with ``persist``, it also stays in the spool).
"""

import logging
import threading
import time
from typing import Any, Callable, Iterable, List, Optional

from .pipeline import ABORT_GRACE, draining
from .threads import start_thread

logger = logging.getLogger("segment")

__all__ = ["shutdown_clients"]

_SETTLE = 0.5
"""Seconds past the deadline a client's own shutdown gets to report what it gave up on (its
``on_error`` runs then), before this function reports it from here and returns."""


class _Task:
    """One pipeline's shutdown, run on its own thread."""

    def __init__(
        self, pipeline: Any, shut: Callable[[float], bool], shutdown_timeout: Optional[float]
    ) -> None:
        self.pipeline = pipeline
        self.shut = shut
        self.shutdown_timeout = shutdown_timeout
        self.finished = False
        self.thread: Optional[threading.Thread] = None

    def run(self, timeout: float) -> None:
        try:
            self.finished = bool(self.shut(timeout))
        except Exception:  # one broken client must not stop the others from delivering
            logger.exception("analytics: delivering at exit failed")


def _tasks(clients: Iterable) -> List[_Task]:
    tasks = []
    for client in clients:
        if client.send and not client.sync_mode:
            tasks.append(_Task(client.pipeline, client.shutdown, client.shutdown_timeout))
    seen = {id(task.pipeline) for task in tasks}
    # Dropped clients whose uploaders are still delivering what they held.
    for pipeline in draining():
        if id(pipeline) not in seen:
            tasks.append(_Task(pipeline, pipeline.shutdown, pipeline.shutdown_timeout))
    return tasks


def _default_timeout(tasks: List[_Task]) -> float:
    known = [task.shutdown_timeout for task in tasks if task.shutdown_timeout is not None]
    return max(known) if known else 0.0


def shutdown_clients(clients: Iterable, timeout: Optional[float] = None) -> bool:
    """Deliver what each client that sends from a background queue holds, then stop it; what
    is not delivered in time is reported to its ``on_error`` (or stays in its spool).

    ``timeout``: seconds for all of them together; None: the largest ``shutdown_timeout`` among
    them. Returns True when everything was delivered or reported in time. Never raises.
    """
    try:
        tasks = _tasks(clients)
    except Exception:
        logger.exception("analytics: delivering at exit failed")
        return False
    if not tasks:
        return True
    if timeout is None or timeout != timeout:  # NaN: a wait that would never end
        timeout = _default_timeout(tasks)
    timeout = max(0.0, timeout)
    # Infinity (asked for explicitly): no deadline (Python's waits cannot take it as a number;
    # a client's shutdown takes it as "wait until delivered").
    deadline = time.monotonic() + timeout if timeout < threading.TIMEOUT_MAX else None
    # Even one client shuts down on a thread of its own: when no uploader is alive its
    # shutdown sends from the thread that runs it, and a lookup that never returns would hold
    # the exit there.
    for task in tasks:
        # Started within microseconds of each other, all get the whole timeout (and their
        # reports say the same number); one that must run here gets what is left.
        try:
            thread = start_thread(task.run, (timeout,), "analytics-shutdown")
        except RuntimeError:  # no new threads (interpreter shutting down): one at a time
            task.run(timeout if deadline is None else max(0.0, deadline - time.monotonic()))
            continue
        task.thread = thread
    settle = None if deadline is None else deadline + ABORT_GRACE + _SETTLE
    for task in tasks:
        if task.thread is not None:
            task.thread.join(None if settle is None else max(0.0, settle - time.monotonic()))
    finished = True
    for task in tasks:
        if task.thread is not None and task.thread.is_alive():
            # Its shutdown is stuck (its own thread sends, or its on_error blocks): what it
            # still holds is reported from here, and the exit goes on.
            finished = False
            try:
                error = TimeoutError(f"shutdown: not delivered within {timeout:.3g}s")
                task.pipeline.give_up(error)
            except Exception:
                logger.exception("analytics: reporting what was not delivered at exit failed")
        finished = finished and task.finished
        try:
            task.pipeline.close_spool()
        except Exception:
            logger.exception("analytics: could not close the spool")
    return finished
