"""Smoke test of the side-by-side benchmark: ``python -m bench.run --quick --only core``.

Only analytics-core's side runs, so segment-analytics-python need not be installed; the point
is that the harness, its collector and every workload still work end to end.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_core_only_run_prints_the_table_and_passes_the_count_check(tmp_path):
    output = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "core", "--output", str(output)],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    header = [line for line in done.stdout.splitlines() if line.startswith("metric")]
    assert header, done.stdout
    assert header[0].split() == ["metric", "analytics-core", "analytics-python", "ratio", "target"]
    assert "collector count check: passed" in done.stdout
    assert "caller CPU per track()" in done.stdout
    assert output.is_file()


@pytest.mark.slow
def test_quick_middleware_run_measures_starlette_and_checks_delivery(tmp_path):
    output = tmp_path / "middleware.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.middleware",
            "--quick",
            "--frameworks",
            "starlette",
            "--output",
            str(output),
        ],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "delivery check: passed" in done.stdout
    row = [line for line in done.stdout.splitlines() if line.startswith("starlette")]
    assert row and "uvicorn" in row[0], done.stdout
    assert output.is_file()
