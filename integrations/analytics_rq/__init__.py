"""analytics_core for RQ workers.

RQ's default worker forks a work horse for each job, and the horse leaves through ``os._exit()``
as soon as the job is done: no ``atexit`` hook runs there, and whatever the job tracked in its
last ``upload_interval`` would be lost. These worker classes deliver it first (RQ's documented
``--worker-class`` extension point)::

    rq worker --worker-class analytics_rq.Worker

or, for a worker class of your own, mix :class:`DeliverBeforeExit` in before RQ's class.
:class:`SimpleWorker` runs jobs in the worker's own process, which exits normally (``atexit``
delivers): it is there so that one name fits both.
"""

from typing import Any

from rq.worker import SimpleWorker as _SimpleWorker
from rq.worker import Worker as _Worker

from analytics_core import lifecycle

__all__ = ["DeliverBeforeExit", "SimpleWorker", "Worker"]


class DeliverBeforeExit:
    """A mixin for an RQ worker class: a work horse delivers what its job tracked (within the
    clients' ``shutdown_timeout``; what is not delivered goes to ``on_error``) before it exits.

    The worker imports the HTTP stack and the spool's ``sqlite3`` once, when it is made, so that
    its work horses inherit them rather than each import them (about 150 ms a job here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lifecycle.prepare_for_forks()

    # RQ calls perform_job() in the work horse, right before os._exit(); its arguments differ
    # between RQ versions (2.x: job, queue; 3.x: job, queue, execution).
    def perform_job(self, *args: Any, **kwargs: Any) -> bool:
        """Run the job as RQ does; in a work horse, deliver before it exits."""
        try:
            return super().perform_job(*args, **kwargs)  # type: ignore[misc]
        finally:
            if getattr(self, "is_horse", False):
                lifecycle.deliver_before_exit()


class Worker(DeliverBeforeExit, _Worker):
    """RQ's default (forking) worker, whose work horse delivers before it exits."""


class SimpleWorker(DeliverBeforeExit, _SimpleWorker):
    """RQ's SimpleWorker (jobs run in the worker process; its normal exit delivers)."""
