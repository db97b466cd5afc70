"""analytics_core for Celery workers.

Delivery needs no set-up: when a client is made (or inherited) in a process where Celery is
loaded, :mod:`analytics_core.lifecycle` installs this package's exit hooks, so a process of the
prefork pool delivers what it accepted before it is recycled or the worker shuts down.

One optional line puts each task into its messages' context::

    import analytics_celery

    analytics_celery.setup(app, task_context=True)  # context.task = {"name": ..., "id": ...}
"""

from typing import Any, Optional

from .task_context import TaskContext, connect_task_context
from .worker import connect_exit_hooks, connect_fork_preparation

__all__ = ["TaskContext", "connect_exit_hooks", "setup"]


def setup(app: Optional[Any] = None, *, task_context: bool = False) -> None:
    """Hook analytics_core into Celery: deliver before each worker process ends (which happens
    without this call too, once a client exists), and with ``task_context=True`` name the
    running task in each message's ``context.task`` (only ``app``'s tasks, when given).

    Call it where the Celery app is defined, so that the worker and its pool processes run it.
    The worker's main process then also imports what sending needs before its pool forks.
    """
    connect_exit_hooks()
    connect_fork_preparation()
    if task_context:
        connect_task_context(app)
