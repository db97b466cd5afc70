"""Multiprocessing workers that track, as a user's script would run them.

``python -m tests.job_apps.mp_jobs METHOD WHEN USER KIND...``

- METHOD: the start method, ``fork``, ``forkserver`` or ``spawn``;
- WHEN: ``before`` (the parent tracks through both APIs, so its clients exist before the workers
  start) or ``inside`` (the first client of each worker is made inside it);
- KIND: ``process`` (``Process`` start/join), ``pool`` (``Pool.close()/join()``),
  ``maxtasks`` (``Pool(maxtasksperchild=1)``), ``executor`` (``ProcessPoolExecutor``),
  ``terminate`` (``Pool.terminate()`` right after the results came back), ``with_pool``
  (``with Pool() as pool``, whose exit is ``terminate()``), ``terminate_busy``
  (``Pool.terminate()`` while each worker is in a job that tracked and now sleeps: SIGTERM).

Kind K tracks ``JOBS`` events for user ``USER-K`` (``WORKERS`` for ``terminate_busy``), even
indexes through the module-level API, odd ones through a Client; the parent's own events are for
``USER-parent``.
Prints one line per kind: ``KIND <seconds the pool took to end> <pids>``.
"""

import concurrent.futures
import multiprocessing
import os
import sys
import time

from tests.job_apps import shared
from tests.job_apps.constants import APIS
from tests.job_apps.constants import MP_JOBS as JOBS
from tests.job_apps.constants import MP_WORKERS as WORKERS


def job(user: str, index: int) -> int:
    """One unit of work: track an event."""
    assert shared.track(user, "Job Done", index, APIS[index % 2])
    return os.getpid()


def busy_job(user: str, index: int) -> int:
    """Track, then work for far longer than any test waits."""
    assert shared.track(user, "Job Done", index, APIS[index % 2])
    time.sleep(60)
    return os.getpid()


def run(context, kind: str, user: str) -> "tuple[float, set]":
    """Run JOBS jobs the way ``kind`` says; (seconds the ending took, worker pids)."""
    args = [(user, index) for index in range(JOBS)]
    if kind == "process":
        workers = [context.Process(target=job, args=arg) for arg in args]
        for worker in workers:
            worker.start()
        started = time.monotonic()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0, worker.exitcode
        return time.monotonic() - started, {worker.pid for worker in workers}
    if kind == "executor":
        with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=context) as executor:
            pids = set(executor.map(job, *zip(*args)))
            started = time.monotonic()
        return time.monotonic() - started, pids
    if kind == "with_pool":
        with context.Pool(WORKERS) as pool:
            pids = set(pool.starmap(job, args))
            started = time.monotonic()
        return time.monotonic() - started, pids
    if kind == "terminate_busy":
        pool = context.Pool(WORKERS)
        pool.starmap_async(busy_job, args[:WORKERS], chunksize=1)
        deadline = time.monotonic() + 30
        while len(_lines(os.environ["JOBS_DONE"], user)) < WORKERS:
            assert time.monotonic() < deadline, "the busy jobs did not start"
            time.sleep(0.02)
        pids = {int(line.split()[0]) for line in _lines(os.environ["JOBS_DONE"], user)}
        started = time.monotonic()
        pool.terminate()
        pool.join()
        return time.monotonic() - started, pids
    pool = context.Pool(WORKERS, maxtasksperchild=1 if kind == "maxtasks" else None)
    pids = set(pool.starmap(job, args, chunksize=1))
    started = time.monotonic()
    if kind == "terminate":
        pool.terminate()
    else:
        pool.close()
    pool.join()
    return time.monotonic() - started, pids


def _lines(path: str, user: str) -> "list[str]":
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as file:
        return [line for line in file if line.endswith(f" {user}\n")]


def main(argv: "list[str]") -> None:
    method, when, user, *kinds = argv
    context = multiprocessing.get_context(method)
    if when == "before":
        for index, api in enumerate(APIS):
            assert shared.track(f"{user}-parent", "Parent Before", index, api)
    for kind in kinds:
        took, pids = run(context, kind, f"{user}-{kind}")
        print(kind, f"{took:.2f}", ",".join(str(pid) for pid in sorted(pids)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
