"""``python -m bench.summary``: one table of every target, from the last ``bench.run``,
``bench.middleware``, ``bench.inprocess`` and ``bench.instructions`` results
(``bench/results/latest.json``, ``middleware.json``, ``inprocess.json`` and
``instructions.json``; the last two are optional).

``make bench`` runs both benchmarks and then this, so one command ends with one table: the
side-by-side rows (analytics-core against analytics-python, same collector, same run) and the
middleware overhead rows (requests/s of each framework with and without the integration, same
run). It is printed as Markdown, ready for the README. The exit status is 1 when a results file
is missing or a count check failed in it, else 0 (a missed target is shown, not failed).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .collector import ROOT
from .inprocess import TARGET_SHARE
from .middleware import TARGET_OVERHEAD
from .report import LIBRARY_NAMES
from .rows import ROWS, caller_floor_of, capacity_share_of

RESULTS = ROOT / "bench" / "results"
FRAMEWORK_NAMES = {"django": "Django", "flask": "Flask", "starlette": "Starlette"}

Line = Tuple[str, str, str, str, str]


def _ratio_text(value: Optional[float]) -> str:
    if value is None:
        return ""
    return f"{value:.3f}×" if value < 0.1 else f"{value:.2f}×"


def _verdict(met: Optional[bool]) -> str:
    return "" if met is None else (" met" if met else " MISSED")


def side_by_side_lines(results: Dict[str, Any]) -> List[Line]:
    """One line per ``bench.run`` row: metric, both values, ratio, target and verdict."""
    formats = {row.key: row.value_format for row in ROWS}
    targets = {row.key: row.target for row in ROWS}
    lines: List[Line] = []
    for row in results["rows"]:
        cells = []
        for library in ("core", "segment"):
            found = row["results"].get(LIBRARY_NAMES[library]) or {}
            value = found.get("value")
            cells.append("-" if value is None else formats[row["key"]].format(value))
        target = targets[row["key"]].describe()
        metric = row["metric"].format(n=row.get("n", ""))
        verdict = _verdict(row.get("target_met"))
        # A count that must be zero has no meaningful ratio.
        ratio = "" if targets[row["key"]].kind == "zero" else _ratio_text(row.get("ratio"))
        lines.append((metric, cells[0], cells[1], ratio, target + verdict))
        if row["key"] == "cpu":
            lines += caller_floor_lines(row)
        lines += capacity_share_lines(row)
    return lines


def capacity_share_lines(row: Dict[str, Any]) -> List[Line]:
    """Under a row with a ``capacity_share`` (the delivered row): analytics-core's events/s as
    a share of the collector's capacity, read just before each of its runs, and the target."""
    wanted = next((found.capacity_share for found in ROWS if found.key == row["key"]), 0.0)
    found = capacity_share_of(row["results"].get(LIBRARY_NAMES["core"]))
    if not wanted or found is None:
        return []
    low, high = min(found["shares"]), max(found["shares"])
    value = f"{found['share']:.0%} ({low:.0%}-{high:.0%})"
    metric = "delivered / the collector's capacity, read just before each run"
    return [(metric, value, "", "", f"≥ {wanted:.0%}{_verdict(found['share'] >= wanted)}")]


def caller_floor_lines(row: Dict[str, Any]) -> List[Line]:
    """Under the caller CPU row: the floor analytics-core's own parts put under it in the same
    run (see ``bench.workloads.caller_floor``), against what the target allows."""
    floor = caller_floor_of(row["results"].get(LIBRARY_NAMES["core"]))
    if floor is None:
        return []
    segment = (row["results"].get(LIBRARY_NAMES["segment"]) or {}).get("value")
    target = next(found.target for found in ROWS if found.key == "cpu")
    if segment:
        allowed = target.value * segment
        verdict = "above it" if floor["floor_us"] > allowed else "below it"
        target_text = f"≤ {target.value:g}× is {allowed:.2f} µs: the floor is {verdict}"
        ratio = _ratio_text(floor["floor_us"] / segment)
    else:
        target_text, ratio = "", ""
    value = f"{floor['call_us']:.2f} + {floor['queue_us']:.2f} = {floor['floor_us']:.2f}"
    metric = "caller CPU floor (µs): the call with nothing queued + the queue with hand-offs"
    return [(metric, value, "", ratio, target_text)]


def middleware_lines(results: Dict[str, Any]) -> List[Line]:
    """One line per framework: the overhead of the one-line set-up on a hello-world endpoint."""
    lines: List[Line] = []
    for row in results["results"]:
        rps = row["rps"]
        name = FRAMEWORK_NAMES.get(row["framework"], row["framework"])
        met = row["overhead"] < TARGET_OVERHEAD
        lines.append(
            (
                f"middleware overhead, {name} ({row['server']}): req/s without → with",
                f"{rps['plain']:,.0f} → {rps['integration']:,.0f} ({row['overhead']:.1%})",
                "",
                "",
                f"< {TARGET_OVERHEAD:.0%}{_verdict(met)}",
            )
        )
    return lines


def inprocess_lines(results: List[Dict[str, Any]]) -> List[Line]:
    """One line per framework: µs the integration adds to a bare request measured in-process,
    beside what the framework's empty hook point costs (the floor any integration pays)."""
    lines: List[Line] = []
    for row in results:
        name = FRAMEWORK_NAMES.get(row["framework"], row["framework"])
        floor = ""
        if "floor_us" in row:
            floor = f"; empty hooks {row['floor_us']:+.1f} µs ({row['floor_share']:.1%})"
        spread = ""
        if "added_quartiles_us" in row:  # the middle half of the blocks' differences
            low, high = row["added_quartiles_us"]
            spread = f", blocks {low:+.1f} to {high:+.1f}"
        lines.append(
            (
                f"in-process overhead, a request that sends nothing: {name}",
                f"{row['added_us']:+.1f} µs over {row['plain_us']:.1f} "
                f"({row['added_share']:.1%}{spread}){floor}",
                "",
                "",
                f"≤ {TARGET_SHARE:.0%}{_verdict(row['target_met'])}",
            )
        )
    return lines


def instruction_lines(results: List[Dict[str, Any]]) -> List[Line]:
    """One line per framework: the integration's instructions per request over the bare
    framework's, beside the empty hook point's (counted under valgrind: they do not move)."""
    lines: List[Line] = []
    for row in results:
        name = FRAMEWORK_NAMES.get(row["framework"], row["framework"])
        lines.append(
            (
                f"instructions per request that sends nothing: {name}",
                f"{row['added_share']:+.1%} over bare; empty hooks {row['floor_share']:+.1%}",
                "",
                "",
                f"≤ {TARGET_SHARE:.0%}{_verdict(row['target_met'])}",
            )
        )
    return lines


def _optional(path: Path) -> List[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # that benchmark was not run: its rows are left out
        return []


def format_markdown(lines: List[Line]) -> str:
    """The lines as a Markdown table."""
    header = "| metric | analytics-core | analytics-python | ratio | target |"
    rule = "|---|---:|---:|---:|---|"
    return "\n".join([header, rule] + ["| " + " | ".join(line) + " |" for line in lines])


def checks_passed(core: Dict[str, Any], middleware: Dict[str, Any]) -> bool:
    """Whether every count check in both results passed."""
    runs_ok = all(
        check["passed"]
        for row in core["rows"]
        for result in row["results"].values()
        for check in (result or {}).get("checks", [])
    )
    return runs_ok and all(row["check_passed"] for row in middleware["results"])


def main(argv: Optional[List[str]] = None) -> int:
    """Print the combined table; 1 when a results file is missing or a check failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.summary", description=__doc__)
    parser.add_argument("--core", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--middleware", type=Path, default=RESULTS / "middleware.json")
    parser.add_argument("--inprocess", type=Path, default=RESULTS / "inprocess.json")
    parser.add_argument("--instructions", type=Path, default=RESULTS / "instructions.json")
    args = parser.parse_args(argv)
    try:
        core = json.loads(args.core.read_text())
        middleware = json.loads(args.middleware.read_text())
    except (OSError, ValueError) as exc:
        print(f"bench.summary: cannot read the results ({exc}); run make bench", file=sys.stderr)
        return 1
    print()
    lines = (
        side_by_side_lines(core)
        + inprocess_lines(_optional(args.inprocess))
        + instruction_lines(_optional(args.instructions))
        + middleware_lines(middleware)
    )
    print(format_markdown(lines))
    passed = checks_passed(core, middleware)
    print()
    print(
        f"count checks: {'passed' if passed else 'FAILED'} (see {args.core.name}, middleware.json)"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
