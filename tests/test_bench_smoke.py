"""Smoke test of ``make bench``'s steps, quick: ``bench.run --quick --only core``,
``bench.middleware --quick --frameworks starlette``, ``bench.inprocess --quick --only
starlette`` and ``bench.summary`` over their results.

Only analytics-core's side runs, so segment-analytics-python need not be installed; the point
is that the harness, its collector, every workload and the combined table still work end to end.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_module(*args):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    core = run_module(
        "bench.run", "--quick", "--only", "core", "--output", str(folder / "latest.json")
    )
    middleware = run_module(
        "bench.middleware",
        "--quick",
        "--frameworks",
        "starlette",
        "--output",
        str(folder / "middleware.json"),
    )
    inprocess = run_module(
        "bench.inprocess",
        "--quick",
        "--only",
        "starlette",
        "--output",
        str(folder / "inprocess.json"),
    )
    assert inprocess.returncode == 0, inprocess.stdout + inprocess.stderr
    return folder, core, middleware


def test_quick_core_only_run_prints_the_table_and_passes_the_count_check(results):
    folder, done, _ = results
    assert done.returncode == 0, done.stdout + done.stderr
    header = [line for line in done.stdout.splitlines() if line.startswith("metric")]
    assert header, done.stdout
    assert header[0].split() == ["metric", "analytics-core", "analytics-python", "ratio", "target"]
    assert "collector count check: passed" in done.stdout
    assert "caller CPU per track()" in done.stdout
    # The floor's two parts were measured in the same run, and the collector stored their
    # messages too (the count check above covers them).
    floor = [line for line in done.stdout.splitlines() if "cpu floor" in line]
    assert floor and "the queue with the uploader delivering" in floor[0], done.stdout
    # The delivered row's capacity was read before its run, and those POSTs were counted too.
    share = [line for line in done.stdout.splitlines() if "capacity read just before" in line]
    assert share and "target ≥ 85%" in share[0], done.stdout
    assert (folder / "latest.json").is_file()


def test_quick_middleware_run_measures_starlette_and_checks_delivery(results):
    folder, _, done = results
    assert done.returncode == 0, done.stdout + done.stderr
    assert "delivery check: passed" in done.stdout
    row = [line for line in done.stdout.splitlines() if line.startswith("starlette")]
    assert row and "uvicorn" in row[0], done.stdout
    assert (folder / "middleware.json").is_file()


def test_summary_prints_one_table_of_every_row(results):
    folder, _, _ = results
    done = run_module(
        "bench.summary",
        "--core",
        str(folder / "latest.json"),
        "--middleware",
        str(folder / "middleware.json"),
        "--inprocess",
        str(folder / "inprocess.json"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| metric | analytics-core | analytics-python | ratio | target |"
    metrics = [line.split("|")[1].strip() for line in table[2:]]
    assert metrics[0] == "caller CPU per track() (µs)"
    assert metrics[1].startswith("caller CPU floor (µs)")
    assert any(metric.startswith("delivered events/s") for metric in metrics)
    assert any(metric.startswith("delivered / the collector's capacity") for metric in metrics)
    assert any(metric.startswith("middleware overhead, Starlette (uvicorn)") for metric in metrics)
    inprocess = [line for line in table if "in-process overhead" in line and "Starlette" in line]
    assert inprocess and "empty hooks" in inprocess[0], table
    assert "count checks: passed" in done.stdout


def test_summary_fails_without_results(tmp_path):
    done = run_module("bench.summary", "--core", str(tmp_path / "none.json"))
    assert done.returncode == 1
    assert "run make bench" in done.stderr
