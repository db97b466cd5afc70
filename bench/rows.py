"""What the table measures: one :class:`Row` per metric, its size, target and method note."""

import dataclasses
import statistics
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["Target", "Row", "ROWS", "Outcome", "ratio", "capacity_share_of", "caller_floor_of"]


@dataclasses.dataclass(frozen=True)
class Target:
    """What analytics-core must reach: a ratio to analytics-python, or an absolute zero."""

    kind: str  # "max_ratio" (lower is better), "min_ratio" (higher is better), "zero",
    # "max_value": analytics-core's own value at most ``value`` (``unit``), for what
    # analytics-python has no counterpart of, or "none": a row shown for context
    value: float = 0.0
    unit: str = ""

    def describe(self) -> str:
        """The target as the table shows it, e.g. ``≤ 0.2×``."""
        if self.kind == "none":
            return "(context)"
        if self.kind == "zero":
            return "0"
        if self.kind == "max_value":
            return f"≤ {self.value:g} {self.unit}".rstrip()
        sign = "≤" if self.kind == "max_ratio" else "≥"
        return f"{sign} {self.value:g}×"

    def met(self, core: Optional[float], segment: Optional[float]) -> Optional[bool]:
        """Whether the target is met; None when a value it needs is missing."""
        if core is None or self.kind == "none":
            return None
        if self.kind == "zero":
            return core == 0
        if self.kind == "max_value":
            return core <= self.value
        value = ratio(core, segment)
        if value is None:
            return None
        return value <= self.value if self.kind == "max_ratio" else value >= self.value


def ratio(core: Optional[float], segment: Optional[float]) -> Optional[float]:
    """analytics-core / analytics-python, or None when either is missing or the divisor is 0."""
    if core is None or segment is None or segment == 0:
        return None
    return core / segment


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a workload measurement run once per library."""

    key: str  # also a valid ``--only`` name
    metric: str
    measure: str  # the ``--measure`` of :mod:`bench.workloads`
    n: int  # events or calls in a full run; ``--quick`` divides by 10
    value_format: str
    target: Target
    note: str
    args: Tuple[str, ...] = ()
    repeats: int = 1  # workload runs per library; the median is shown
    faults: bool = False  # runs against the fault-injecting collector (nothing gets stored)
    libraries: Tuple[str, ...] = ("core", "segment")  # analytics-python has no persist=
    # Above 0: before each of analytics-core's runs the collector's capacity is read too (see
    # ``bench.run.measure_row``), and the row's value must reach this share of it.
    capacity_share: float = 0.0

    def size(self, quick: bool) -> int:
        """``n`` for this run."""
        return max(1, self.n // 10) if quick else self.n

    def runs(self, quick: bool) -> int:
        """How many times each library's workload runs."""
        return 1 if quick else self.repeats


PAIRED_CAPACITY_SECONDS = 2.0
"""How long the collector's capacity is read before each run of a row with a
``capacity_share`` (``--quick``: a tenth)."""

ROWS: List[Row] = [
    Row(
        key="cpu",
        metric="caller CPU per track() (µs)",
        measure="cpu",
        n=20_000,
        value_format="{:.2f}",
        target=Target("max_ratio", 0.08),
        note=(
            "time.thread_time() of the calling thread around N calls (the uploader's work is "
            "not counted), queue big enough to drop nothing, sending to the collector; median "
            "of 5 rounds."
        ),
    ),
    Row(
        key="throughput",
        metric="delivered events/s, gzip off",
        measure="throughput",
        n=50_000,
        value_format="{:,.0f}",
        target=Target("min_ratio", 12),
        repeats=3,
        capacity_share=0.85,
        note=(
            "N tracks then flush(), timed from the first track to flush's return; default "
            "upload_size and interval, one uploader thread; median of 3 processes. Before "
            "each of analytics-core's, the collector's capacity is read for "
            f"{PAIRED_CAPACITY_SECONDS:g} s (bench.capacity, bare socket)."
        ),
    ),
    Row(
        key="throughput_gzip",
        metric="delivered events/s, gzip on",
        measure="throughput",
        n=50_000,
        value_format="{:,.0f}",
        target=Target("min_ratio", 8),
        args=("--gzip",),
        repeats=3,
        note="as above with gzip=True (the collector inflates each body).",
    ),
    Row(
        key="throughput_500",
        metric="delivered events/s, upload_size=500 (both)",
        measure="throughput",
        n=50_000,
        value_format="{:,.0f}",
        target=Target("none"),
        args=("--upload-size", "500"),
        repeats=3,
        note=(
            "as the gzip-off row with upload_size=500 for both libraries (Segment takes up to "
            "500 KB a batch): what a bulk import gains from fuller batches; no target."
        ),
    ),
    Row(
        key="sync",
        metric="sync_mode=True wall per call (µs)",
        measure="sync",
        n=500,
        value_format="{:,.0f}",
        target=Target("max_ratio", 0.5),
        note="wall time per call, one POST per call over a warm keep-alive connection.",
    ),
    Row(
        key="drops",
        metric="dropped of {n:,}, default queue (10,000)",
        measure="drops",
        n=50_000,
        value_format="{:,.0f}",
        target=Target("zero"),
        note=(
            "N tracks in a tight loop with the default max_queue_size, then flush(); "
            "dropped = N - what the collector stored (the library's own count is in the JSON)."
        ),
    ),
    Row(
        key="memory",
        metric="memory per queued event (bytes)",
        measure="memory",
        n=10_000,
        value_format="{:,.0f}",
        target=Target("max_ratio", 0.25),
        faults=True,
        note=(
            "the collector holds the uploader's first POST (a planned 60 s, 503 fault), so "
            "both libraries keep what is tracked next; tracemalloc's live memory added by N "
            "more tracks (fresh properties each), after gc, / N."
        ),
    ),
    Row(
        key="import",
        metric="import time, fresh process (ms)",
        measure="import",
        n=20,
        value_format="{:,.0f}",
        target=Target("max_ratio", 0.4),
        note=(
            'python -c "import <library>" in N fresh processes, median wall time, the '
            "interpreter's own start included (the JSON has the bare interpreter's)."
        ),
    ),
    Row(
        key="cold_start",
        metric="cold start: import, 1 track(), flush() (ms)",
        measure="cold_start",
        n=20,
        value_format="{:,.0f}",
        target=Target("max_ratio", 0.5),
        note=(
            "a fresh process imports the library, tracks one event with the module-level API, "
            "flushes it to the collector and exits (a CLI call, a serverless function); median "
            "wall time of N processes."
        ),
    ),
    Row(
        key="persist_cpu",
        metric="persist=: caller CPU per track() (µs)",
        measure="persist_cpu",
        n=10_000,
        value_format="{:.1f}",
        target=Target("max_value", 25, "µs"),
        libraries=("core",),
        note=(
            "Client(persist=...) sending to the collector: time.thread_time() of the calling "
            "thread around N calls, each message durable (journaled) before the call returns; "
            "analytics-python has no durable spool."
        ),
    ),
    Row(
        key="persist_p999",
        metric="persist=: p99.9 append latency under deletes (µs)",
        measure="persist_p999",
        n=30_000,
        value_format="{:,.0f}",
        target=Target("max_value", 1000, "µs"),
        libraries=("core",),
        note=(
            "the spool alone: N appends of a 500-byte message from one thread while another "
            "removes them 100 at a time, as the uploader does after each delivery; the 99.9th "
            "percentile of the wall time of one append."
        ),
    ),
]

CAPACITY_SECONDS = 3.0
"""How long the bare client posts to the collector (``--quick``: a tenth)."""


@dataclasses.dataclass
class Outcome:
    """What one row measured for each library (None: not run)."""

    row: Row
    results: Dict[str, Optional[Dict[str, Any]]]

    def value(self, library: str) -> Optional[float]:
        """The row's value for ``library``, or None when it was not run or failed."""
        result = self.results.get(library)
        if not result or result.get("error"):
            return None
        return result["value"]

    def failed_checks(self, library: str) -> List[Dict[str, Any]]:
        """The checks of ``library``'s runs whose actual value was not the expected one."""
        result = self.results.get(library) or {}
        return [check for check in result.get("checks", []) if not check["passed"]]


def caller_floor_of(result: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The caller CPU floor (``bench.workloads.caller_floor``) in one library's row result,
    or None when it was not measured."""
    runs = (result or {}).get("runs", [])
    return next((run["floor"] for run in runs if "floor" in run), None)


def capacity_share_of(result: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """analytics-core's delivered events/s as a share of the collector's capacity read just
    before each run: the median of the runs' shares, each run's share and capacity; None when
    no run has a capacity reading."""
    runs = [run for run in (result or {}).get("runs", []) if run.get("capacity")]
    if not runs:
        return None
    shares = [run["value"] / run["capacity"] for run in runs]
    return {
        "share": statistics.median(shares),
        "shares": shares,
        "capacities": [run["capacity"] for run in runs],
    }
