"""Delivering from Celery worker processes before they end.

A process of the prefork pool (billiard) leaves through ``os._exit()`` once it is recycled
(``worker_max_tasks_per_child``, ``worker_max_memory_per_child``) or the worker shuts down, and
billiard calls that before any ``atexit`` hook or multiprocessing finalizer could run. Celery
sends ``worker_process_shutdown`` in the process just before, so that is where it delivers.
``worker_shutdown`` (the worker's main process, after its pool stopped) covers the solo and
threads pools of a worker that does not exit normally afterwards: a restart on SIGHUP
``exec()``s the process from an ``atexit`` hook that runs before ours.

:mod:`analytics_core.lifecycle` calls :func:`connect_exit_hooks` by itself when a client is made
(or inherited through a fork) in a process where Celery is loaded.
"""

from typing import Any

from celery import signals

from analytics_core import lifecycle

__all__ = ["connect_exit_hooks", "connect_fork_preparation"]

_UID = "analytics_celery.deliver"


def connect_exit_hooks() -> None:
    """Deliver what every client of a worker process holds before it ends (idempotent)."""
    # weak=False: the receivers are module functions, but say so; dispatch_uid: connect once.
    signals.worker_process_shutdown.connect(_deliver, weak=False, dispatch_uid=_UID)
    signals.worker_shutdown.connect(_deliver, weak=False, dispatch_uid=_UID)


def connect_fork_preparation() -> None:
    """In the worker's main process, before its pool forks: import what sending needs once,
    so that each pool process (a new one per recycle) inherits it (idempotent)."""
    signals.worker_init.connect(_prepare, weak=False, dispatch_uid=_UID + ".prepare")


def _prepare(sender: Any = None, **kwargs: Any) -> None:
    lifecycle.prepare_for_forks()


def _deliver(sender: Any = None, **kwargs: Any) -> None:
    lifecycle.deliver_before_exit()
