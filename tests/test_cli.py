"""The ``analytics-core`` console script installed with the package."""

import os
import subprocess
import sys

import pytest

from analytics_core import VERSION
from analytics_core.cli import main


def _script() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "analytics-core")
    if not os.path.exists(path):
        pytest.fail(f"console script not installed next to {sys.executable}; run `make test`")
    return path


def test_installed_script_prints_its_commands():
    result = subprocess.run([_script(), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "collector" in result.stdout and "demo" in result.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert VERSION in capsys.readouterr().out


def test_unknown_command_fails_with_usage(capsys):
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_collector_help_is_the_collectors_own(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["collector", "--help"])
    assert exit_info.value.code == 0
    assert "--write-key" in capsys.readouterr().out


def test_demo_runs_end_to_end():
    result = subprocess.run([_script(), "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for call in ("identify", "track", "page", "screen", "group", "alias"):
        assert call in result.stdout
