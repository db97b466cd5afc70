"""multiprocessing workers deliver what they accepted before they leave (through os._exit).

Each case runs tests/job_apps/mp_jobs.py as a user's script would be run, with every start
method, clients made before the workers start or first inside them, and the module-level API
and a Client side by side (every other job). Nothing leaves a process before it ends (a
minute's upload interval), so every event that arrives was delivered by the exit hooks.
"""

import multiprocessing
import os
import subprocess
import sys

import pytest

import analytics_core
from tests.job_apps.constants import MP_JOBS as JOBS
from tests.job_apps.constants import MP_WORKERS as WORKERS
from tests.job_apps.constants import WRITE_KEY
from tests.job_apps.harness import JobFiles, closed_url, delivered_indexes, unique_user
from tests.support.servers import ROOT

KINDS = ["process", "pool", "maxtasks", "executor", "terminate", "with_pool", "terminate_busy"]
# terminate_busy runs one job per worker, each still running when terminate() comes.
EXPECTED = {kind: WORKERS if kind == "terminate_busy" else JOBS for kind in KINDS}
ENDING_BOUND = 5.0
"""Seconds a pool may take to end (terminate() included): delivery takes milliseconds here."""

# (start method, where the first client is made, kinds). forkserver and spawn children start
# without their parent's clients whatever it holds: one case each covers them. A spawn child
# ends as a script does (its finalizers, then sys.exit and atexit): fewer kinds, each a few
# interpreters to start.
CASES = [
    ("fork", "before", KINDS),
    ("fork", "inside", KINDS),
    ("forkserver", "before", KINDS),
    ("spawn", "before", ["maxtasks", "executor", "with_pool"]),
]


def run_script(files, host, method, when, user, kinds, timeout=120):
    """Run tests/job_apps/mp_jobs.py; {kind: (seconds its pool took to end, pids)}."""
    command = [sys.executable, "-m", "tests.job_apps.mp_jobs", method, when, user, *kinds]
    result = subprocess.run(
        command,
        env=files.env(host),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    return {kind: (float(took), pids) for kind, took, pids in lines}


@pytest.mark.slow
@pytest.mark.parametrize(("method", "when", "kinds"), CASES, ids=[f"{m}-{w}" for m, w, _ in CASES])
def test_every_worker_delivers_what_it_accepted(collector, tmp_path, method, when, kinds):
    files = JobFiles(tmp_path)
    user = unique_user()
    took = run_script(files, collector.url, method, when, user, kinds)
    for kind in kinds:
        events = collector.events(limit=0, user_id=f"{user}-{kind}")
        assert delivered_indexes(events) == list(range(EXPECTED[kind])), kind
        assert len({event["messageId"] for event in events}) == EXPECTED[kind], kind
        # terminate() (and with Pool()'s exit) must not hang on a worker's delivery.
        assert took[kind][0] < ENDING_BOUND, f"{kind}: the pool took {took[kind][0]:.1f}s to end"
    parent = collector.events(limit=0, user_id=f"{user}-parent")
    assert len(parent) == (2 if when == "before" else 0)
    assert not files.reported()


@pytest.mark.slow
# A spawn child ends as a script does (sys.exit after the finalizers): fork and forkserver are
# the children that leave through os._exit().
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_what_cannot_be_delivered_reaches_on_error(tmp_path, method):
    files = JobFiles(tmp_path)
    user = unique_user()
    took = run_script(files, closed_url(), method, "inside", user, KINDS)
    for kind in KINDS:
        expected = {index: 1 for index in range(EXPECTED[kind])}
        assert files.reported(f"{user}-{kind}") == expected, kind
        assert took[kind][0] < ENDING_BOUND, f"{kind}: the pool took {took[kind][0]:.1f}s to end"


# -- in the test process: forked workers of a test that sends, send ---------------------------


def configure(host):
    """The module-level API, as a user's app sets it, with no default client yet (the test
    Django project made one that does not send: the conftest puts it all back after the
    test)."""
    analytics_core.default_client = None
    analytics_core.write_key = WRITE_KEY
    analytics_core.host = host
    analytics_core.send = True
    analytics_core.upload_interval = 60


def _pool_job(user, index):
    ok, _ = analytics_core.track(user, "Pool Job", {"index": index, "pid": os.getpid()})
    return ok


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_forked_pool_workers_of_a_sending_test_send(collector):
    # The workers are forked from the pytest process, whose capture state they inherit: a test
    # that uses the collector sends, so theirs do too. Their first client is made inside them.
    configure(collector.url)
    user = unique_user()
    context = multiprocessing.get_context("fork")
    pool = context.Pool(2, maxtasksperchild=2)
    try:
        assert all(pool.starmap(_pool_job, [(user, index) for index in range(6)], chunksize=1))
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    events = collector.events(limit=0, user_id=user)
    assert delivered_indexes(events) == list(range(6))


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_forked_pool_workers_of_a_capturing_test_send_nothing(collector_process):
    # The other side: a test that does not opt in captures, and so do the workers it forks,
    # even though they deliver at exit.
    configure(collector_process.url)
    user = unique_user()
    context = multiprocessing.get_context("fork")
    pool = context.Pool(2, maxtasksperchild=2)
    try:
        assert all(pool.starmap(_pool_job, [(user, index) for index in range(4)], chunksize=1))
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    assert collector_process.events(limit=0, user_id=user) == []
