"""A Celery app whose task tracks, for tests/test_jobs_celery.py.

``celery -A tests.job_apps.celery_app worker ...`` with ``JOBS_BROKER`` (a Redis URL) and the
variables of :mod:`tests.job_apps.shared`; ``JOBS_MAX_TASKS`` and ``JOBS_MAX_MEMORY_KB`` turn on
recycling, ``JOBS_TASK_CONTEXT=1`` the task context, and ``JOBS_EARLY=<user>`` tracks once when
the worker imports this module, so that the worker's main process has clients before it forks
its pool. Nothing else configures analytics: the task uses the module-level API (or a Client)
as a new user would.
"""

import os
import time

from celery import Celery

from tests.job_apps import shared

app = Celery("jobs", broker=os.environ["JOBS_BROKER"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=int(os.environ.get("JOBS_MAX_TASKS", "0")) or None,
    worker_max_memory_per_child=int(os.environ.get("JOBS_MAX_MEMORY_KB", "0")) or None,
    worker_hijack_root_logger=False,
)

if os.environ.get("JOBS_EARLY"):
    for _index, _api in enumerate(shared.APIS):
        shared.track(os.environ["JOBS_EARLY"], "Worker Started", _index, _api)

if os.environ.get("JOBS_TASK_CONTEXT"):
    import analytics_celery

    analytics_celery.setup(app, task_context=True)


@app.task(name="jobs.track")
def track(user: str, index: int, delay: float = 0.0, api: str = "module") -> int:
    """Track one event for ``user`` through ``api`` (see :func:`shared.client`), then take
    ``delay`` seconds (a task still running when the worker is told to stop)."""
    assert shared.track(user, "Task Done", index, api)
    time.sleep(delay)
    return os.getpid()
