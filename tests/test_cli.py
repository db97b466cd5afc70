"""The ``analytics-core`` console script installed with the package."""

import os
import re
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


def test_python_dash_m_analytics_core_is_the_same_command():
    # Found by a trial: a virtualenv used without activating it has no analytics-core on PATH.
    result = subprocess.run(
        [sys.executable, "-m", "analytics_core", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"analytics-core {VERSION}\n"
    failed = subprocess.run(
        [sys.executable, "-m", "analytics_core", "nope"], capture_output=True, text=True, timeout=30
    )
    assert failed.returncode == 2
    assert "unknown command 'nope'" in failed.stderr


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
    out = capsys.readouterr().out
    assert "--write-key" in out
    # Named the way it was invoked, not as `python -m analytics_core.collector`.
    assert out.startswith("usage: analytics-core collector ")
    # Where it listens and writes without options (a trial user had to read the code for it).
    flat = " ".join(out.split())
    assert "(default 8086)" in flat
    assert "(default events.db, in the current folder)" in flat


def test_demo_runs_end_to_end():
    result = subprocess.run(
        [_script(), "demo", "--exit", "--port", "0"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for call in ("identify", "track", "page", "screen", "group", "alias"):
        assert f'"type": "{call}"' in result.stdout
    # The example shop was browsed: its events arrived with the request's context.
    assert "example shop (Flask, analytics_flask) serving on http://127.0.0.1:" in result.stdout
    assert '"event": "Order Completed", "page": "/orders"' in result.stdout
    # A first visit: the shop minted the visitor's anonymous id and gave it back as the cookie,
    # and every event of the visit carries it.
    cookie = re.search(r"set-cookie ajs_anonymous_id=%22([0-9a-f-]{36})%22", result.stdout)
    assert cookie, result.stdout
    assert result.stdout.count(f'"anonymousId": "{cookie.group(1)}"') >= 4
    assert "sent 6 calls directly" in result.stdout


def test_demo_keeps_the_collector_up_until_interrupted():
    import signal
    import time

    import requests

    from tests.support.servers import default_sigint

    process = subprocess.Popen(
        [_script(), "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("Open "):
                url = line.split()[1]
        assert url is not None and url.startswith("http://127.0.0.1:")
        page = requests.get(url, headers={"Accept": "text/html"}, timeout=10)
        assert "analytics-core collector" in page.text
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
