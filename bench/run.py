"""``python -m bench.run [--quick] [--only NAME[,NAME...]]``: the side-by-side benchmark.

Starts a local collector (its own process, SQLite in memory), runs every row of
:data:`bench.rows.ROWS` for analytics-core and for Segment's analytics-python, each run in a
fresh subprocess of :mod:`bench.workloads`, checks after each run that the collector stored
exactly what the library accepted, and prints one table (:mod:`bench.report`). The full results
go to ``bench/results/latest.json``.

``--only`` takes library names (``core``, ``segment``), row keys (``cpu``, ``throughput``, ...)
or ``capacity``; several may be given, comma-separated. The exit status is 0 when every run
finished and every count check passed (targets missed are reported, not failed), 1 otherwise,
and 2 when analytics-python is needed but not installed.
"""

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from . import report
from .collector import ROOT, CollectorProcess, child_env
from .rows import CAPACITY_SECONDS, PAIRED_CAPACITY_SECONDS, ROWS, Outcome, Row

LIBRARIES = ("core", "segment")
# How long the fault-injecting collector holds the uploader's first POST in the memory row;
# the most its fault plan allows, so tracemalloc's slow-down can never let the request finish.
HOLD_SECONDS = 60


class WorkloadError(RuntimeError):
    """A workload subprocess failed, timed out or printed no result."""


def _log(text: str) -> None:
    # Progress goes to stderr so stdout carries only the table.
    print(text, file=sys.stderr, flush=True)


def segment_installed() -> bool:
    """Whether ``segment.analytics`` (segment-analytics-python) can be imported."""
    try:
        return importlib.util.find_spec("segment.analytics") is not None
    except ModuleNotFoundError:  # the parent package ``segment`` is missing
        return False


def run_module(module: str, args: Sequence[str], timeout: float) -> Dict[str, Any]:
    """Run ``python -m module args`` in a fresh process and return its JSON result line."""
    command = [sys.executable, "-m", module, *args]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(ROOT),
            env=child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkloadError(f"timed out after {timeout:g} s: {' '.join(command)}") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip()[-2000:]
        raise WorkloadError(f"exit status {done.returncode}: {' '.join(command)}\n{tail}")
    return json.loads(lines[-1])


def _check(name: str, expected: Any, actual: Any) -> Dict[str, Any]:
    return {"name": name, "expected": expected, "actual": actual, "passed": expected == actual}


def measure_row(row: Row, library: str, collector: CollectorProcess, quick: bool) -> Dict[str, Any]:
    """Run ``row`` for ``library`` (``row.runs`` times) and check the collector's count."""
    runs: List[Dict[str, Any]] = []
    checks: List[Dict[str, Any]] = []
    n = row.size(quick)
    for _ in range(row.runs(quick)):
        capacity = None
        if row.capacity_share and library == "core":
            capacity = _paired_capacity(collector, quick, checks)
        collector.clear()
        if row.faults:
            collector.set_faults([{"status": 503, "delay": HOLD_SECONDS, "times": 1}])
        args = ["--library", library, "--measure", row.measure, "--host", collector.url]
        args += ["-n", str(n), *row.args]
        result = run_module("bench.workloads", args, timeout=120 if quick else 900)
        stats = collector.stats()
        result["collector"] = stats
        stored = stats["messages"]
        for check in result.pop("checks", []):
            checks.append(_check(check["name"], check["expected"], check["actual"]))
        if row.faults:
            # Every request was held and answered 503, so nothing may have been stored.
            checks.append(_check("collector stored nothing", 0, stored))
        else:
            checks.append(_check("collector stored what was accepted", result["accepted"], stored))
        if capacity is not None:
            result["capacity"] = capacity
        if row.measure == "drops":
            # The collector's count is the honest one: whatever was not stored was dropped,
            # whether or not the library said so.
            result["library_refused"] = result["refused"]
            result["value"] = result["sent"] - stored
        runs.append(result)
    return {
        "value": statistics.median(run["value"] for run in runs),
        "version": runs[0]["version"],
        "runs": runs,
        "checks": checks,
    }


def _paired_capacity(
    collector: CollectorProcess, quick: bool, checks: List[Dict[str, Any]]
) -> float:
    """The collector's capacity read just before a run (bare socket client), so that the run's
    share of it compares minutes that had the same machine: on a shared VM the capacity moves
    by half from one run of the benchmark to the next."""
    seconds = PAIRED_CAPACITY_SECONDS / 10 if quick else PAIRED_CAPACITY_SECONDS
    result = _read_capacity(collector, seconds, "--socket-only")
    checks += result["checks"]
    return float(result["value"])


def measure_capacity(collector: CollectorProcess, quick: bool) -> Dict[str, Any]:
    """The collector's events/s from a bare keep-alive client, checked against its count."""
    return _read_capacity(collector, CAPACITY_SECONDS / 10 if quick else CAPACITY_SECONDS)


def _read_capacity(collector: CollectorProcess, seconds: float, *options: str) -> Dict[str, Any]:
    """``bench.capacity`` against the cleared ``collector``, with its count check."""
    collector.clear()
    args = ["--host", collector.url, "--seconds", str(seconds), *options]
    result = run_module("bench.capacity", args, 120)
    stored = collector.stats()["messages"]
    result["checks"] = [_check("collector stored what was accepted", result["accepted"], stored)]
    return result


def _select(only: Optional[str]) -> "tuple[List[str], List[Row], bool]":
    """(libraries, rows, capacity?) for ``--only``; everything when it is not given."""
    if not only:
        return list(LIBRARIES), list(ROWS), True
    names = [name.strip() for name in only.split(",") if name.strip()]
    known = set(LIBRARIES) | {row.key for row in ROWS} | {"capacity"}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(
            f"bench.run: unknown --only name(s): {', '.join(unknown)} "
            f"(choose from {', '.join(sorted(known))})"
        )
    libraries = [name for name in LIBRARIES if name in names] or list(LIBRARIES)
    picked_rows = [row for row in ROWS if row.key in names]
    picked_capacity = "capacity" in names
    if not picked_rows and not picked_capacity:  # only libraries were named: every row
        picked_rows, picked_capacity = list(ROWS), True
    return libraries, picked_rows, picked_capacity


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="every size ÷10 (a smoke test)")
    parser.add_argument(
        "--only",
        metavar="NAME",
        help="core, segment, capacity or a row key (comma-separated for several)",
    )
    parser.add_argument(
        "--output",
        default=str(ROOT / "bench" / "results" / "latest.json"),
        help="where to write the JSON results (default bench/results/latest.json)",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark, print the table, write the JSON; see the module doc for the status."""
    args = _parser().parse_args(argv)
    libraries, rows, with_capacity = _select(args.only)
    if "segment" in libraries and not segment_installed():
        print(
            "bench.run: segment-analytics-python is not installed, so there is nothing to "
            "compare with.\n"
            "  Install it:  .venv/bin/python -m pip install -e '.[bench]'   (or: make bench)\n"
            "  Or measure analytics-core alone:  python -m bench.run --only core",
            file=sys.stderr,
        )
        return 2
    started = time.time()
    meta: Dict[str, Any] = {
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": _load_average(),
        "libraries": libraries,
    }
    outcomes: List[Outcome] = []
    capacity: Optional[Dict[str, Any]] = None
    errors: List[str] = []
    with CollectorProcess() as collector:
        fault_collector: Optional[CollectorProcess] = None
        try:
            for row in rows:
                results: Dict[str, Optional[Dict[str, Any]]] = {}
                for library in libraries:
                    if library not in row.libraries:
                        continue
                    target = collector
                    if row.faults:
                        # A collector of its own: its held requests must never delay others.
                        if fault_collector is None:
                            fault_collector = CollectorProcess(faults=True)
                        target = fault_collector
                    _log(f"bench: {row.key} / {report.LIBRARY_NAMES[library]} ...")
                    try:
                        results[library] = measure_row(row, library, target, args.quick)
                    except WorkloadError as exc:
                        errors.append(f"{row.key} / {report.LIBRARY_NAMES[library]}: {exc}")
                        results[library] = {"error": str(exc)}
                outcomes.append(Outcome(row, results))
        finally:
            if fault_collector is not None:
                fault_collector.stop()
        if with_capacity:
            _log("bench: collector capacity ...")
            try:
                capacity = measure_capacity(collector, args.quick)
            except WorkloadError as exc:
                errors.append(f"capacity: {exc}")
    meta["seconds"] = round(time.time() - started, 1)
    meta["load_average_at_end"] = _load_average()
    print(report.format_report(outcomes, capacity, meta, errors))
    path = report.write_results(args.output, outcomes, capacity, meta, errors)
    shown = path.resolve()
    print(f"results: {shown.relative_to(ROOT) if ROOT in shown.parents else shown}")
    passed = report.all_checks_passed(outcomes, capacity)
    return 0 if passed and not errors else 1


def _load_average() -> Optional[float]:
    # Other work on the machine moves every number here; the load average says how much.
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on every platform
        return None


if __name__ == "__main__":
    sys.exit(main())
