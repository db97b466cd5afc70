"""The printed table and ``bench/results/latest.json``."""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .rows import Outcome, caller_floor_of, capacity_share_of, ratio

__all__ = [
    "LIBRARY_NAMES",
    "HEADER",
    "COUNT_CHECK_PASSED",
    "format_report",
    "write_results",
    "all_checks_passed",
]

LIBRARY_NAMES = {"core": "analytics-core", "segment": "analytics-python"}
HEADER = ("metric", "analytics-core", "analytics-python", "ratio", "target")
COUNT_CHECK_PASSED = "collector count check: passed"
"""Printed when every delivery run stored exactly what the library accepted (tests look for it)."""

_COUNT_CHECK_PREFIX = "collector stored"
_MISSING = "-"


def _format_ratio(value: Optional[float]) -> str:
    if value is None:
        return _MISSING
    return f"{value:.3f}×" if value < 0.1 else f"{value:.2f}×"


def _value_cell(outcome: Outcome, library: str) -> str:
    result = outcome.results.get(library)
    if result is None:
        return _MISSING
    if result.get("error"):
        return "ERROR"
    text = outcome.row.value_format.format(result["value"])
    # A failed check makes the number meaningless: say so in the cell itself, not only below.
    return text + " !!" if outcome.failed_checks(library) else text


def _target_cell(outcome: Outcome) -> str:
    target = outcome.row.target
    met = target.met(outcome.value("core"), outcome.value("segment"))
    verdict = "" if met is None else ("  met" if met else "  MISSED")
    return target.describe() + verdict


def _table(cells: List[Tuple[str, ...]]) -> List[str]:
    widths = [max(len(row[index]) for row in cells) for index in range(len(HEADER))]

    def line(row: Tuple[str, ...]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(row[1:4], widths[1:4])]
        parts.append(row[4].ljust(widths[4]))
        return "  ".join(parts).rstrip()

    rule = tuple("-" * width for width in widths)
    return [line(HEADER), line(rule)] + [line(row) for row in cells[1:]]


def _all_checks(
    outcomes: Sequence[Outcome], capacity: Optional[Dict[str, Any]]
) -> List[Tuple[str, Dict[str, Any]]]:
    """Every check with where it was made, e.g. ``("throughput / analytics-core", check)``."""
    found = []
    for outcome in outcomes:
        for library, result in outcome.results.items():
            for check in (result or {}).get("checks", []):
                found.append((f"{outcome.row.key} / {LIBRARY_NAMES[library]}", check))
    for check in (capacity or {}).get("checks", []):
        found.append(("capacity", check))
    return found


def all_checks_passed(outcomes: Sequence[Outcome], capacity: Optional[Dict[str, Any]]) -> bool:
    """Whether every count and workload check of the run passed."""
    return all(check["passed"] for _, check in _all_checks(outcomes, capacity))


def _versions(outcomes: Sequence[Outcome]) -> Dict[str, str]:
    versions: Dict[str, str] = {}
    for outcome in outcomes:
        for library, result in outcome.results.items():
            if result and result.get("version"):
                versions.setdefault(library, result["version"])
    return versions


def _floor_lines(outcomes: Sequence[Outcome]) -> List[str]:
    """The caller CPU row's floor (``bench.workloads.caller_floor``), when it was measured."""
    for outcome in outcomes:
        floor = caller_floor_of(outcome.results.get("core"))
        if outcome.row.key == "cpu" and floor is not None:
            return [
                f"  cpu floor (analytics-core, same run): the call with nothing queued "
                f"{floor['call_us']:.2f} µs + the queue with the uploader delivering "
                f"{floor['queue_us']:.2f} µs = {floor['floor_us']:.2f} µs"
            ]
    return []


def _capacity_share_lines(outcomes: Sequence[Outcome]) -> List[str]:
    """Rows with a ``capacity_share``: analytics-core's value against the collector's capacity
    read just before each of its runs."""
    lines = []
    for outcome in outcomes:
        found = capacity_share_of(outcome.results.get("core"))
        if not outcome.row.capacity_share or found is None:
            continue
        verdict = "met" if found["share"] >= outcome.row.capacity_share else "MISSED"
        runs = ", ".join(
            f"{share:.0%} of {capacity:,.0f}"
            for share, capacity in zip(found["shares"], found["capacities"])
        )
        lines.append(
            f"  {outcome.row.key}: analytics-core delivered {found['share']:.0%} of the "
            f"collector's capacity read just before each run ({runs}); target "
            f"≥ {outcome.row.capacity_share:.0%}: {verdict}"
        )
    return lines


def format_report(
    outcomes: Sequence[Outcome],
    capacity: Optional[Dict[str, Any]],
    meta: Dict[str, Any],
    errors: Sequence[str],
) -> str:
    """The table, its notes, the collector's capacity and the check summary, as one text."""
    versions = _versions(outcomes)
    names = ", ".join(
        f"{LIBRARY_NAMES[library]} {versions.get(library, '?')}" for library in meta["libraries"]
    )
    lines = [
        "",
        f"bench: {names}; Python {meta['python']}, {meta['cpus']} CPUs, load average "
        f"{meta['load_average_at_start']} -> {meta['load_average_at_end']}, "
        f"{meta['seconds']} s{' (--quick: sizes ÷10)' if meta['quick'] else ''}",
        "",
    ]
    if outcomes:
        cells: List[Tuple[str, ...]] = [HEADER]
        for outcome in outcomes:
            metric = outcome.row.metric.format(n=outcome.row.size(meta["quick"]))
            cells.append(
                (
                    metric,
                    _value_cell(outcome, "core"),
                    _value_cell(outcome, "segment"),
                    _format_ratio(ratio(outcome.value("core"), outcome.value("segment"))),
                    _target_cell(outcome),
                )
            )
        lines += _table(cells)
        lines += ["", "ratio = analytics-core / analytics-python. How each row is measured:"]
        lines += [f"  {outcome.row.key}: {outcome.row.note}" for outcome in outcomes]
        lines += _floor_lines(outcomes)
        lines += _capacity_share_lines(outcomes)
    if capacity is not None:
        flag = "" if all(check["passed"] for check in capacity["checks"]) else " !!"
        lines += [
            "",
            f"collector capacity (context): {capacity['value']:,.0f} events/s{flag} from one "
            f"bare keep-alive socket posting pre-built {capacity['batch_bytes']:,}-byte "
            f"batches of 100 for {capacity['seconds']:.1f} s",
        ]
        if capacity.get("requests_value") is not None:
            lines.append(
                f"  (through a bare keep-alive requests.Session: "
                f"{capacity['requests_value']:,.0f} events/s)"
            )
    lines.append("")
    checks = _all_checks(outcomes, capacity)
    counts = [check for _, check in checks if check["name"].startswith(_COUNT_CHECK_PREFIX)]
    others = [check for _, check in checks if not check["name"].startswith(_COUNT_CHECK_PREFIX)]
    if all(check["passed"] for check in counts):
        lines.append(f"{COUNT_CHECK_PASSED} ({len(counts)} runs: stored == expected after each)")
    else:
        lines.append("collector count check: FAILED (details below)")
    if others:
        state = "passed" if all(check["passed"] for check in others) else "FAILED"
        lines.append(f"workload checks: {state} ({len(others)})")
    failed = [(where, check) for where, check in checks if not check["passed"]]
    for where, check in failed:
        lines.append(
            f"!! CHECK FAILED  {where}: {check['name']}: expected {check['expected']!r}, "
            f"got {check['actual']!r}"
        )
    for error in errors:
        lines.append(f"!! ERROR  {error}")
    return "\n".join(lines)


def write_results(
    path: str,
    outcomes: Sequence[Outcome],
    capacity: Optional[Dict[str, Any]],
    meta: Dict[str, Any],
    errors: Sequence[str],
) -> Path:
    """Write everything measured (every run, every check) as JSON; return the path."""
    rows = []
    for outcome in outcomes:
        core, segment = outcome.value("core"), outcome.value("segment")
        rows.append(
            {
                "key": outcome.row.key,
                "metric": outcome.row.metric.format(n=outcome.row.size(meta["quick"])),
                "n": outcome.row.size(meta["quick"]),
                "target": outcome.row.target.describe(),
                "target_met": outcome.row.target.met(core, segment),
                "ratio": ratio(core, segment),
                "note": outcome.row.note,
                "results": {LIBRARY_NAMES[lib]: res for lib, res in outcome.results.items()},
            }
        )
    payload = {"meta": meta, "rows": rows, "capacity": capacity, "errors": list(errors)}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target
