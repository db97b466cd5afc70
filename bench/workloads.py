"""One measurement of one library, run in a fresh subprocess; prints one JSON line.

``python -m bench.workloads --library core|segment --measure NAME --host URL [-n N] ...``

Each run imports only the library it measures (``analytics_core`` or ``segment.analytics``), so
neither pays for the other's imports, threads or memory. Both are driven the same way: a
``Client`` built with the same options, the same positional ``track(user_id, event, properties)``
call, and the same payload (:mod:`bench.payload`). The harness (:mod:`bench.run`) reads the JSON
line and checks the collector's stored count against ``accepted``.
"""

import argparse
import cProfile
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from typing import Any, Callable, Dict, List, Optional

import requests

from .payload import EVENT, USER_COUNT, WRITE_KEY, properties, user_ids

Result = Dict[str, Any]

LIBRARIES = ("core", "segment")
UPLOAD_SIZE = 100
"""Both libraries' default batch size; the memory measurement relies on it."""


def make_client(library: str, host: str, **options: Any) -> Any:
    """A ``Client`` of the chosen library, pointed at ``host``, with ``options`` on top."""
    if library == "core":
        import analytics_core as analytics
    elif library == "segment":
        from segment import analytics
    else:
        raise ValueError(f"unknown library {library!r}")
    return analytics.Client(WRITE_KEY, host=host, **options)


def library_version(library: str) -> str:
    """The version string of the library measured, for the results file."""
    if library == "core":
        import analytics_core

        return analytics_core.VERSION
    from segment.analytics.version import VERSION

    return VERSION


def _track_many(client: Any, count: int, props: Dict[str, Any]) -> int:
    """``count`` track calls sharing one properties dict; returns how many were refused."""
    ids = user_ids()
    track = client.track  # bound once: the lookup is not what is being measured
    refused = 0
    for index in range(count):
        if not track(ids[index % USER_COUNT], EVENT, props)[0]:
            refused += 1
    return refused


# -- the measurements ----------------------------------------------------------------------------


def measure_cpu(library: str, host: str, n: int, rounds: int) -> Result:
    """Caller CPU per ``track()``: ``time.thread_time()`` around ``n`` calls, median of rounds.

    ``thread_time`` counts only the calling thread, so the uploader's work (encoding batches,
    HTTP) is left out; what remains is what an application's request thread pays. The queue is
    big enough that nothing is dropped, and it is flushed (untimed) between rounds so every round
    starts from an empty queue.
    """
    warmup = min(n, 1000)
    client = make_client(library, host, max_queue_size=n + warmup + 1000)
    # One properties dict for every call, built outside the timed loop: both libraries copy or
    # encode it on each call, so sharing it favours neither and keeps dict-building out of the
    # number.
    props = properties(0)
    refused = _track_many(client, warmup, props)  # imports, thread start, connection set-up
    client.flush()
    ids = user_ids()
    track = client.track
    samples: List[float] = []
    for _ in range(rounds):
        start = time.thread_time()
        for index in range(n):
            if not track(ids[index % USER_COUNT], EVENT, props)[0]:
                refused += 1
        elapsed = time.thread_time() - start
        client.flush()
        samples.append(elapsed / n * 1e6)
    sent = warmup + n * rounds
    result = {
        "value": statistics.median(samples),
        "samples_us": samples,
        "sent": sent,
        "accepted": sent - refused,
    }
    if library == "core":
        floor = caller_floor(client, host, n, rounds)
        result["floor"] = floor
        result["sent"] += floor["sent"]
        result["accepted"] += floor["accepted"]
    return result


def caller_floor(client: Any, host: str, n: int, rounds: int) -> Result:
    """analytics-core's caller CPU in two parts, each a median of ``rounds`` rounds of ``n``.

    - ``call_us``: the call with nothing queued (a ``send=False`` client: the message is
      built, checked and encoded as always, then not queued).
    - ``queue_us``: ``put()`` of already-encoded messages into ``client``'s queue while its
      uploader delivers them: the queue's lock and bookkeeping, and the GIL hand-offs its pacing
      makes so that the uploader keeps up with a tight loop (see ``Pipeline._keep_pace``).

    Their sum is what a ``track()`` in the same loop cannot go below on this design (encode on
    the caller's thread, one uploader thread sharing the GIL): the row's target is compared
    with it in the summary.
    """
    import analytics_core
    from analytics_core.encoding import encode_message

    quiet = analytics_core.Client(WRITE_KEY, host=host, send=False)
    props = properties(0)
    ids = user_ids()
    _track_many(quiet, min(n, 1000), props)
    track = quiet.track
    call_samples: List[float] = []
    for _ in range(rounds):
        start = time.thread_time()
        for index in range(n):
            track(ids[index % USER_COUNT], EVENT, props)
        call_samples.append((time.thread_time() - start) / n * 1e6)
    put = client.pipeline.put
    queue_samples: List[float] = []
    accepted = 0
    for _ in range(rounds):
        # Each message its own id, encoded untimed, as the collector stores every one.
        encoded = [encode_message(track(ids[i % USER_COUNT], EVENT, props)[1]) for i in range(n)]
        start = time.thread_time()
        for data in encoded:
            accepted += put(data)
        queue_samples.append((time.thread_time() - start) / n * 1e6)
        client.flush()
    call_us = statistics.median(call_samples)
    queue_us = statistics.median(queue_samples)
    return {
        "call_us": call_us,
        "queue_us": queue_us,
        "floor_us": call_us + queue_us,
        "sent": n * rounds,
        "accepted": accepted,
    }


def measure_throughput(
    library: str, host: str, n: int, gzip: bool, upload_size: Optional[int] = None
) -> Result:
    """Delivered events/s: ``n`` tracks then ``flush()``, timed from the first call to its return.

    The queue holds all ``n`` so nothing is dropped; upload size (unless ``upload_size`` is
    given) and interval are the defaults.
    """
    options: Dict[str, Any] = {} if upload_size is None else {"upload_size": upload_size}
    client = make_client(library, host, max_queue_size=n + 1000, gzip=gzip, **options)
    props = properties(0)
    start = time.perf_counter()
    refused = _track_many(client, n, props)
    tracked = time.perf_counter()
    client.flush()
    end = time.perf_counter()
    return {
        "value": n / (end - start),
        "track_loop_s": tracked - start,
        "flush_s": end - tracked,
        "sent": n,
        "accepted": n - refused,
    }


def measure_sync(library: str, host: str, n: int) -> Result:
    """``sync_mode=True``: wall µs per call, each call one POST of one message."""
    client = make_client(library, host, sync_mode=True)
    props = properties(0)
    warmup = 20  # opens the keep-alive connection, so the timed calls all reuse it
    refused = _track_many(client, warmup, props)
    start = time.perf_counter()
    refused += _track_many(client, n, props)
    elapsed = time.perf_counter() - start
    return {"value": elapsed / n * 1e6, "sent": warmup + n, "accepted": warmup + n - refused}


_MODULES = {"core": "analytics_core", "segment": "segment.analytics"}


def _fresh_process_ms(code: str, n: int) -> List[float]:
    """Wall milliseconds of ``n`` fresh interpreters running ``code``, one after the other.

    Bytecode caches are allowed and warmed by one untimed run first, as an installed package
    has them (pip writes them): a run that compiled every module would measure the compiler.
    """
    import subprocess

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure_import(library: str, host: str, n: int) -> Result:
    """``python -c "import <library>"`` in ``n`` fresh processes: median wall ms (the bare
    interpreter's start is in it, as a user's command pays it)."""
    times = _fresh_process_ms(f"import {_MODULES[library]}", n)
    bare = _fresh_process_ms("pass", n)
    return {
        "value": statistics.median(times),
        "bare_interpreter_ms": statistics.median(bare),
        "sent": 0,
        "accepted": 0,
    }


def measure_cold_start(library: str, host: str, n: int) -> Result:
    """A CLI call or a serverless function: a fresh process imports the library, tracks one
    event, flushes it to the collector and exits. Median wall ms of ``n`` processes."""
    code = (
        f"import {_MODULES[library]} as analytics\n"
        f"analytics.write_key = {WRITE_KEY!r}\n"
        f"analytics.host = {host!r}\n"
        f"analytics.track('cold-start-user', {EVENT!r}, {{'n': 1}})\n"
        "analytics.flush()\n"
    )
    times = _fresh_process_ms(code, n)
    sent = n + 1  # and the untimed warm-up run's
    return {"value": statistics.median(times), "sent": sent, "accepted": sent}


def measure_persist_cpu(library: str, host: str, n: int) -> Result:
    """``persist=``: the calling thread's CPU per ``track()``, each message committed to the
    spool before the call returns, the uploader delivering and removing meanwhile."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        client = make_client(library, host, persist=os.path.join(folder, "spool.db"))
        props = properties(0)
        refused = _track_many(client, 200, props)  # warm: the first commits open the file
        start = time.thread_time()
        refused += _track_many(client, n, props)
        cpu = time.thread_time() - start
        client.flush()
        client.shutdown()
    return {"value": cpu / n * 1e6, "sent": n + 200, "accepted": n + 200 - refused}


def measure_persist_p999(library: str, host: str, n: int) -> Result:
    """The spool alone: ``n`` appends while another thread removes them 100 at a time; the
    99.9th percentile of one append's wall time (µs)."""
    import tempfile
    import threading

    from analytics_core.spool import Spool

    data = b'{"type":"track","properties":{"pad":"' + b"x" * 460 + b'"}}'
    with tempfile.TemporaryDirectory() as folder:
        spool = Spool(os.path.join(folder, "spool.db"), WRITE_KEY)
        appended: List[int] = []
        done = threading.Event()

        def remove_in_batches() -> None:
            while not done.is_set() or appended:
                batch, appended[:100] = appended[:100], []
                if batch:
                    spool.remove(batch)
                else:
                    time.sleep(0.001)

        remover = threading.Thread(target=remove_in_batches)
        remover.start()
        latencies = []
        for _ in range(n):
            start = time.perf_counter()
            row = spool.append(data)
            latencies.append(time.perf_counter() - start)
            appended.append(row)
        done.set()
        remover.join()
        left = spool.pending_count()
        spool.close()
    latencies.sort()
    return {
        "value": latencies[min(len(latencies) - 1, int(len(latencies) * 0.999))] * 1e6,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "max_us": latencies[-1] * 1e6,
        "sent": 0,
        "accepted": 0,
        "checks": [{"name": "every appended row removed", "expected": 0, "actual": left}],
    }


def measure_drops(library: str, host: str, n: int) -> Result:
    """``n`` tracks in a tight loop with the default ``max_queue_size`` (10,000), then flush.

    ``refused`` is what the library said it dropped (``track()`` returned ``(False, msg)``);
    the harness takes the honest number from the collector: sent minus stored.
    """
    client = make_client(library, host)
    props = properties(0)
    start = time.perf_counter()
    refused = _track_many(client, n, props)
    loop_s = time.perf_counter() - start
    client.flush()
    return {
        "value": refused,
        "refused": refused,
        "loop_s": loop_s,
        "sent": n,
        "accepted": n - refused,
    }


def _collector_requests(session: requests.Session, host: str) -> int:
    response = session.get(host + "/v1/stats", timeout=10)
    response.raise_for_status()
    return int(response.json()["requests"])


def _held(library: str, client: Any) -> int:
    """Messages the client holds: queued plus taken by the uploader but not finished."""
    if library == "core":
        return int(client.stats()["queued"])
    # queue.Queue counts an item as unfinished from put() until the consumer's task_done(),
    # which covers the batch stuck in its POST as well as the queue itself.
    return int(client.queue.unfinished_tasks)


def measure_memory(library: str, host: str, n: int) -> Result:
    """Bytes of Python memory per queued event, with the uploader stuck in its first POST.

    Method (the same for both libraries, through public options only): ``host`` is a collector
    whose fault plan holds each request for 60 s before answering 503, so each library's uploader
    takes one batch of ``UPLOAD_SIZE`` messages, posts it and waits. We wait until the collector
    has seen that request, start ``tracemalloc``, queue ``n`` more events (each with its own
    properties dict, as an application would build them) and divide the live traced memory they
    added, after a ``gc.collect()``, by ``n``. The first batch, the connection and the threads
    are allocated before tracing starts and are not counted.
    """
    client = make_client(library, host, max_queue_size=2 * n + 1000, timeout=120)
    ids = user_ids()
    session = requests.Session()
    session.trust_env = False
    before = _collector_requests(session, host)
    for index in range(UPLOAD_SIZE):
        client.track(ids[index % USER_COUNT], EVENT, properties(index))
    deadline = time.monotonic() + 10
    blocked = False
    while time.monotonic() < deadline:
        if _collector_requests(session, host) > before:
            blocked = True
            break
        time.sleep(0.02)
    time.sleep(0.1)  # let the uploader settle into its wait for the response
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    refused = 0
    for index in range(n):
        if not client.track(ids[index % USER_COUNT], EVENT, properties(UPLOAD_SIZE + index))[0]:
            refused += 1
    gc.collect()
    added = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    held = _held(library, client)
    expected_held = UPLOAD_SIZE + n
    checks = [
        {"name": "uploader blocked in its first POST", "expected": True, "actual": blocked},
        {"name": "events held by the client", "expected": expected_held, "actual": held},
        {"name": "events refused", "expected": 0, "actual": refused},
    ]
    return {"value": added / n, "bytes_added": added, "sent": n, "held": held, "checks": checks}


# -- the command line ----------------------------------------------------------------------------

MEASUREMENTS: Dict[str, Callable[..., Result]] = {
    "cpu": measure_cpu,
    "throughput": measure_throughput,
    "sync": measure_sync,
    "drops": measure_drops,
    "memory": measure_memory,
    "import": measure_import,
    "cold_start": measure_cold_start,
    "persist_cpu": measure_persist_cpu,
    "persist_p999": measure_persist_p999,
}

# These leave uploader threads stuck in a POST on purpose: exit without waiting for them.
_HARD_EXIT = {"memory"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.workloads", description=__doc__)
    parser.add_argument("--library", choices=LIBRARIES, required=True)
    parser.add_argument("--measure", choices=sorted(MEASUREMENTS), required=True)
    parser.add_argument("--host", required=True, help="the collector's base URL")
    parser.add_argument("-n", type=int, required=True, help="events (or calls) to measure")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the cpu measurement")
    parser.add_argument("--gzip", action="store_true", help="gzip request bodies (throughput)")
    parser.add_argument(
        "--upload-size", type=int, help="messages per batch (throughput; default: the library's)"
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="write a cProfile of the calling thread (not the uploader) to PATH",
    )
    return parser


def _run(args: argparse.Namespace) -> Result:
    kwargs: Dict[str, Any] = {"library": args.library, "host": args.host, "n": args.n}
    if args.measure == "cpu":
        kwargs["rounds"] = args.rounds
    if args.measure == "throughput":
        kwargs["gzip"] = args.gzip
        kwargs["upload_size"] = args.upload_size
    measure = MEASUREMENTS[args.measure]
    profiler: Optional[cProfile.Profile] = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        result = measure(**kwargs)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    result.update(
        library=args.library,
        version=library_version(args.library),
        measure=args.measure,
        n=args.n,
        gzip=args.gzip,
        upload_size=args.upload_size,
    )
    return result


def main(argv: Optional[List[str]] = None) -> int:
    """Run one measurement and print its result as one JSON line on stdout."""
    args = _parser().parse_args(argv)
    result = _run(args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    if args.measure in _HARD_EXIT:
        # Both libraries join their uploader at exit, which would wait out the held POST.
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
