"""Celery workers deliver every event accepted in a task: a real ``celery worker`` process with
a real Redis broker, each pool, recycled pool processes and a warm shutdown (SIGTERM).

The task (tests/job_apps/celery_app.py) uses the module-level API as a new user would, or a
Client of its own (every other task), with a minute's upload interval: what arrives was
delivered by the hooks that run when a process ends. The ground truth is the done file, where
each task writes a line once it has tracked.
"""

import signal
import subprocess
import sys
import uuid

import pytest
from celery import Celery

from tests.job_apps.constants import APIS
from tests.job_apps.harness import (
    JobFiles,
    WorkerProcess,
    closed_url,
    delivered_indexes,
    unique_user,
    wait_until,
)
from tests.job_apps.redis_server import redis_server
from tests.support.servers import python_env

pytestmark = pytest.mark.slow

TASKS = 4


# One real redis-server for the module; a machine without it fails here, naming the fix.
redis = pytest.fixture(scope="module", name="redis")(redis_server)


@pytest.fixture
def broker(redis):
    """The broker's URL, with no task left over from another test."""
    redis.flush()
    return redis.url


def send_tasks(broker, user, count=TASKS, delay=0.0):
    """Queue ``count`` tasks for ``user``, alternately through the module-level API and a
    Client; their task ids, in order."""
    app = Celery("jobs-client", broker=broker)
    try:
        return [
            app.send_task("jobs.track", args=[user, index, delay, APIS[index % 2]]).id
            for index in range(count)
        ]
    finally:
        app.close()


def start_worker(files, host, broker, pool, **env):
    command = [sys.executable, "-m", "celery", "-A", "tests.job_apps.celery_app", "worker"]
    command += ["--pool", pool, "--concurrency", "2", "--loglevel", "INFO"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    command += ["--hostname", f"jobs-{uuid.uuid4().hex[:8]}@localhost"]
    return WorkerProcess(command, files.env(host, JOBS_BROKER=broker, **env))


def ran(files, user):
    """The indexes of ``user``'s tasks that tracked, sorted."""
    return sorted(int(index) for _, index, *_ in files.done_lines(user))


def warm_shutdown(worker, timeout=30):
    worker.signal(signal.SIGTERM)
    code = worker.wait(timeout)
    assert code == 0, worker.output()


@pytest.mark.parametrize(
    "recycling",
    # 1 KB: every process is over it after its first task, and replaced.
    [{"JOBS_MAX_TASKS": "1"}, {"JOBS_MAX_MEMORY_KB": "1"}],
    ids=["max_tasks_per_child", "max_memory_per_child"],
)
def test_prefork_recycled_processes_deliver_as_they_exit(collector, tmp_path, broker, recycling):
    files = JobFiles(tmp_path)
    user = unique_user()
    send_tasks(broker, user)
    worker = start_worker(files, collector.url, broker, "prefork", **recycling)
    try:
        wait_until(lambda: len(files.done_lines(user)) == TASKS, 30, "the tasks ran")
        # Each process that ran a task is replaced after it: its events leave as it exits,
        # long before the worker stops.
        events = collector.wait_for(TASKS, timeout=15, user_id=user)
        assert len({pid for pid, *_ in files.done_lines(user)}) == TASKS, "not recycled"
        warm_shutdown(worker)
    finally:
        worker.close()
    events = collector.events(limit=0, user_id=user)
    assert delivered_indexes(events) == list(range(TASKS))
    assert not any("task" in event["context"] for event in events)  # not turned on here
    assert not files.reported()


@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_warm_shutdown_delivers_every_accepted_event(collector, tmp_path, broker, pool):
    files = JobFiles(tmp_path)
    user = unique_user()
    # Tasks still running when SIGTERM comes: a warm shutdown lets them finish.
    send_tasks(broker, user, delay=1.0)
    worker = start_worker(files, collector.url, broker, pool)
    try:
        wait_until(lambda: len(files.done_lines(user)) >= 1, 30, "a task started")
        warm_shutdown(worker)
    finally:
        worker.close()
    tracked = ran(files, user)
    assert tracked, "no task ran"
    delivered = delivered_indexes(collector.events(limit=0, user_id=user))
    assert delivered == tracked, worker.output()
    assert not files.reported()


def test_cold_shutdown_delivers_what_the_terminated_tasks_accepted(collector, tmp_path, broker):
    # SIGQUIT: Celery terminates the pool processes in the middle of their tasks (SIGTERM);
    # each delivers what its task accepted before it dies (analytics_core.signals).
    files = JobFiles(tmp_path)
    user = unique_user()
    send_tasks(broker, user, count=2, delay=60.0)
    worker = start_worker(files, collector.url, broker, "prefork")
    try:
        wait_until(lambda: len(files.done_lines(user)) == 2, 30, "both tasks started")
        worker.signal(signal.SIGQUIT)
        worker.wait(20)
    finally:
        worker.close()
    assert delivered_indexes(collector.events(limit=0, user_id=user)) == [0, 1], worker.output()


@pytest.mark.parametrize(
    ("pool", "recycling"),
    [("prefork", {"JOBS_MAX_TASKS": "1"}), ("solo", {})],
    ids=["prefork-recycled", "solo"],
)
def test_what_cannot_be_delivered_reaches_on_error(tmp_path, broker, pool, recycling):
    files = JobFiles(tmp_path)
    user = unique_user()
    send_tasks(broker, user)
    worker = start_worker(files, closed_url(), broker, pool, **recycling)
    try:
        wait_until(lambda: len(files.done_lines(user)) == TASKS, 30, "the tasks ran")
        warm_shutdown(worker)
    finally:
        worker.close()
    assert files.reported(user) == {index: 1 for index in range(TASKS)}


def test_task_context_names_the_task(collector, tmp_path, broker):
    # Also: clients made in the worker's main process before it forks its pool (JOBS_EARLY).
    files = JobFiles(tmp_path)
    user = unique_user()
    ids = send_tasks(broker, user)
    worker = start_worker(
        files,
        collector.url,
        broker,
        "prefork",
        JOBS_TASK_CONTEXT="1",
        JOBS_MAX_TASKS="2",
        JOBS_EARLY=f"{user}-early",
    )
    try:
        wait_until(lambda: len(files.done_lines(user)) == TASKS, 30, "the tasks ran")
        warm_shutdown(worker)
    finally:
        worker.close()
    events = collector.events(limit=0, user_id=user, order="asc")
    assert delivered_indexes(events) == list(range(TASKS))
    tasks = {event["properties"]["index"]: event["context"]["task"] for event in events}
    assert tasks == {index: {"name": "jobs.track", "id": ids[index]} for index in range(TASKS)}
    early = collector.events(limit=0, user_id=f"{user}-early")
    assert delivered_indexes(early) == [0, 1]
    assert not any("task" in event["context"] for event in early)
    assert not files.reported()


PREPARED = """
import sys
import celery
import analytics_celery

app = celery.Celery("prepared")
analytics_celery.setup(app)
needed = ("requests", "sqlite3")
before = [name for name in needed if name in sys.modules]
celery.signals.worker_init.send(sender=None)  # what the worker's main process sends
print(before, [name for name in needed if name in sys.modules])
"""


def test_the_worker_imports_what_a_first_send_needs_before_its_pool_forks():
    # Each pool process (one more per recycle) then inherits requests and sqlite3 instead of
    # importing them for its first send.
    done = subprocess.run(
        [sys.executable, "-c", PREPARED], env=python_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] ['requests', 'sqlite3']"
