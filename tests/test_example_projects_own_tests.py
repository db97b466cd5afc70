"""Each example project's own test suite passes, run as its users run it: ``pytest`` in its
directory. Those suites check the examples' analytics with the ``analytics_events`` fixture that
analytics-core installs, so this also proves the plugin works in a project of its own."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "example_projects"


# How many tests each suite has: a test that stopped being collected fails this too.
SUITES = {"django_shop": 3, "flask_app": 2, "fastapi_app": 3}


@pytest.mark.parametrize("project", sorted(SUITES))
def test_the_examples_own_suite_passes(project, tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        # This suite's settings must not leak into the example's (pytest-django reads them).
        if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")
    }
    env["SHOP_DB"] = str(tmp_path / "shop.sqlite3")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=str(EXAMPLES / project),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last_line = done.stdout.strip().splitlines()[-1]
    assert last_line.startswith(f"{SUITES[project]} passed"), done.stdout
