"""RQ workers deliver every event accepted in a job before the process that ran it exits: a
real ``rq worker`` with a real Redis, the default forking worker (a work horse forked per job,
which leaves through ``os._exit``) and ``SimpleWorker``.

The job (tests/job_apps/rq_jobs.py) uses the module-level API as a new user would, or a Client
of its own (every other job), with a minute's upload interval: what arrives was delivered by
the hooks that run when a process ends.
"""

import signal
import sys

import pytest
from redis import Redis
from rq import Queue

from analytics_core import Client
from tests.job_apps.constants import WRITE_KEY
from tests.job_apps.harness import (
    JobFiles,
    WorkerProcess,
    closed_url,
    delivered_indexes,
    unique_user,
    wait_until,
)
from tests.job_apps.redis_server import redis_server

pytestmark = pytest.mark.slow

JOBS = 5
QUEUE = "analytics-jobs"


# One real redis-server for the module; a machine without it fails here, naming the fix.
redis = pytest.fixture(scope="module", name="redis")(redis_server)


@pytest.fixture
def redis_url(redis):
    """The server's URL, with no job left over from another test."""
    redis.flush()
    return redis.url


def enqueue(redis_url, user, count=JOBS):
    """Queue ``count`` jobs for ``user``."""
    with Redis.from_url(redis_url) as connection:
        queue = Queue(QUEUE, connection=connection)
        for index in range(count):
            queue.enqueue("tests.job_apps.rq_jobs.track", user, index)


def rq_worker(files, host, redis_url, worker_class, *options, **env):
    command = [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url]
    command += ["--worker-class", worker_class, "--logging_level", "WARNING", *options, QUEUE]
    return WorkerProcess(command, files.env(host, **env))


def run_burst(files, host, redis_url, worker_class, user):
    worker = rq_worker(files, host, redis_url, worker_class, "--burst")
    try:
        code = worker.wait(60)
        assert code == 0, worker.output()
    finally:
        worker.close()
    assert len(files.done_lines(user)) == JOBS, worker.output()
    return worker


WORKERS = [
    "analytics_rq.Worker",  # the default forking worker, with the delivery before os._exit
    "analytics_rq.SimpleWorker",
    "rq.worker.SimpleWorker",  # leaves through a normal exit: atexit is enough
]


@pytest.mark.parametrize("worker_class", WORKERS)
def test_burst_worker_delivers_every_job_event(collector, tmp_path, redis_url, worker_class):
    files = JobFiles(tmp_path)
    user = unique_user()
    enqueue(redis_url, user)
    run_burst(files, collector.url, redis_url, worker_class, user)
    events = collector.events(limit=0, user_id=user)
    assert delivered_indexes(events) == list(range(JOBS))
    if worker_class == "analytics_rq.Worker":  # one work horse per job
        assert len({pid for pid, *_ in files.done_lines(user)}) == JOBS
    assert not files.reported()


def test_each_work_horse_delivers_before_it_exits(collector, tmp_path, redis_url):
    # A worker that is not in burst mode: each job's events arrive while it keeps running.
    files = JobFiles(tmp_path)
    user = unique_user()
    enqueue(redis_url, user)
    worker = rq_worker(files, collector.url, redis_url, "analytics_rq.Worker")
    try:
        wait_until(lambda: len(files.done_lines(user)) == JOBS, 30, "the jobs ran")
        events = collector.wait_for(JOBS, timeout=10, user_id=user)
        worker.signal(signal.SIGTERM)  # a warm shutdown
        assert worker.wait(30) == 0, worker.output()
    finally:
        worker.close()
    assert delivered_indexes(events) == list(range(JOBS))
    assert delivered_indexes(collector.events(limit=0, user_id=user)) == list(range(JOBS))


@pytest.mark.parametrize("worker_class", ["analytics_rq.Worker", "rq.worker.SimpleWorker"])
def test_what_cannot_be_delivered_reaches_on_error(tmp_path, redis_url, worker_class):
    files = JobFiles(tmp_path)
    user = unique_user()
    enqueue(redis_url, user)
    run_burst(files, closed_url(), redis_url, worker_class, user)
    assert files.reported(user) == {index: 1 for index in range(JOBS)}


def test_the_plain_forking_worker_says_it_loses_the_jobs_events(collector, tmp_path, redis_url):
    # RQ's own worker class: its work horse leaves through os._exit() right after the job, with
    # nothing of ours able to run. The events are lost (the README says to use the worker
    # class); what must not happen is losing them silently.
    files = JobFiles(tmp_path)
    user = unique_user()
    enqueue(redis_url, user)
    worker = run_burst(files, collector.url, redis_url, "rq.worker.Worker", user)
    assert collector.events(limit=0, user_id=user) == []
    warnings = worker.output().count("this RQ work horse leaves through os._exit()")
    assert warnings == JOBS, worker.output()  # one per work horse: one per job


@pytest.mark.parametrize(
    ("worker_class", "inherited"),
    [
        ("analytics_rq.Worker", ["requests", "sqlite3"]),
        ("rq.worker.Worker", []),  # the control: nothing else in a horse imports them
    ],
)
def test_work_horses_inherit_what_a_first_send_imports(
    tmp_path, redis_url, worker_class, inherited
):
    # Each work horse would otherwise import requests (and the spool's sqlite3) for its job's
    # first send: about 150 ms a job here. The worker imports them once, before it forks.
    files = JobFiles(tmp_path)
    with Redis.from_url(redis_url) as connection:
        job = Queue(QUEUE, connection=connection).enqueue(
            "tests.job_apps.rq_probe.modules_at_start"
        )
    worker = rq_worker(files, closed_url(), redis_url, worker_class, "--burst")
    try:
        assert worker.wait(60) == 0, worker.output()
    finally:
        worker.close()
    with Redis.from_url(redis_url) as connection:
        job.connection = connection
        assert job.return_value(refresh=True) == inherited


def test_with_a_spool_the_plain_forking_worker_says_the_events_wait_there(
    collector, tmp_path, redis_url
):
    # persist=: what a work horse of RQ's own class could not deliver is not lost but waits in
    # the spool; the warning says so, and the next process that opens the spool sends it.
    files = JobFiles(tmp_path)
    user = unique_user()
    spool = str(tmp_path / "spool.db")
    enqueue(redis_url, user)
    worker = rq_worker(
        files, collector.url, redis_url, "rq.worker.Worker", "--burst", JOBS_PERSIST=spool
    )
    try:
        assert worker.wait(60) == 0, worker.output()
    finally:
        worker.close()
    output = worker.output()
    assert output.count("what the job tracked waits in the spool until the next process") == JOBS
    assert "is lost" not in output
    later = Client(WRITE_KEY, host=collector.url, persist=spool)
    try:
        assert later.flush(timeout=20)
    finally:
        later.shutdown(timeout=5)
    assert delivered_indexes(collector.events(limit=0, user_id=user)) == list(range(JOBS))
