"""``python -m bench.instructions [--only FRAMEWORKS]``: what each integration adds to a request
that sends nothing, counted in CPU instructions under valgrind, which do not move between runs.

Timed in-process rounds (:mod:`bench.inprocess`) move by several µs on a busy machine, more
than the 2% they are held to. Here each variant of :mod:`bench.middleware_apps` (``plain``,
``integration``, ``empty``: the framework's hook point doing nothing, the floor) serves
``bench.inprocess --round`` requests in a fresh process under ``valgrind --tool=callgrind``,
twice, with two request counts: the difference divided by the difference in requests is the
instructions of one request, without the start-up both runs share. Needs ``valgrind`` (Debian's
package of that name); without it this prints why and exits 2. Results go to
``bench/results/instructions.json``.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .collector import ROOT
from .inprocess import TARGET_SHARE, VARIANTS, chosen_frameworks, report

RESULTS = ROOT / "bench" / "results" / "instructions.json"
SMALL, LARGE = 1000, 3000
"""Request counts of the two runs; bench.inprocess warms up with max(200, n // 10) more."""

_COLLECTED = re.compile(r"Collected : (\d+)")

# Every run the same: without them a count moved by ~1,000 instructions per request between
# runs of the same code (string hashes, then addresses, change dict and set layouts and when
# the cycle collector runs), half the 2% a row is held to. setarch is util-linux's.
_NO_RANDOMIZATION = ["setarch", "-R"] if shutil.which("setarch") else []


def _served(n: int) -> int:
    return n + max(200, n // 10)


def count(framework: str, variant: str, n: int) -> int:
    """Instructions of a fresh process serving ``n`` (plus warm-up) requests of ``variant``."""
    command = [
        *_NO_RANDOMIZATION,
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.inprocess",
        "--round",
        framework,
        variant,
        str(n),
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_request(framework: str, variant: str) -> float:
    """Instructions of one request of ``variant``, start-up excluded."""
    small = count(framework, variant, SMALL)
    large = count(framework, variant, LARGE)
    return (large - small) / (_served(LARGE) - _served(SMALL))


def measure(framework: str) -> Dict[str, Any]:
    """Every variant of ``framework``; the integration's and the empty hooks' share over bare."""
    found = {variant: per_request(framework, variant) for variant in VARIANTS}
    plain = found["plain"]
    added = (found["integration"] - plain) / plain
    return {
        "framework": framework,
        "instructions": found,
        "added_share": added,
        "floor_share": (found["empty"] - plain) / plain,
        "target_met": added <= TARGET_SHARE,
    }


def format_table(results: List[Dict[str, Any]]) -> str:
    """The results as a text table."""
    lines = [
        "instructions per request that sends nothing (valgrind; thousands):",
        f"{'framework':<10} {'plain':>8} {'with':>8} {'added':>7} {'empty':>8} {'floor':>7}"
        "  target",
    ]
    for result in results:
        found = result["instructions"]
        verdict = "met" if result["target_met"] else "MISSED"
        lines.append(
            f"{result['framework']:<10} {found['plain'] / 1e3:>8.1f}"
            f" {found['integration'] / 1e3:>8.1f} {result['added_share']:>7.1%}"
            f" {found['empty'] / 1e3:>8.1f} {result['floor_share']:>7.1%}"
            f"  ≤ {TARGET_SHARE:.0%} {verdict}"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Count every framework's variants, print the table and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--only", help="comma-separated frameworks")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("bench.instructions: valgrind is not installed (Debian: valgrind)", file=sys.stderr)
        return 2
    results = [measure(framework) for framework in chosen_frameworks(args.only)]
    report(format_table(results), results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
