"""The package's layout (issue 15): the tools moved under ``analytics_core.tools`` and the web
helpers under ``analytics_core.web``, and every path users had still works; ``import
analytics_core`` imports nothing heavy that only sending or a first call needs."""

import importlib
import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "old, new",
    [
        ("analytics_core.testing", "analytics_core.tools.testing"),
        ("analytics_core.pytest_plugin", "analytics_core.tools.pytest_plugin"),
        ("analytics_core.pageviews", "analytics_core.web.pageviews"),
    ],
)
def test_the_old_public_paths_are_the_same_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_the_documented_names_are_still_there():
    from analytics_core.pageviews import DEFAULT_EXCLUDE
    from analytics_core.testing import CapturedEvents, allow_sending, capture_events

    assert "/static/" in DEFAULT_EXCLUDE
    assert callable(capture_events) and callable(allow_sending) and CapturedEvents


def run(*args):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_command_and_the_demo_start_from_their_old_paths():
    for module in ("analytics_core.cli", "analytics_core.tools.cli"):
        done = run("-c", f"import sys; from {module} import main; sys.exit(main(['--help']))")
        assert done.returncode == 0, done.stderr
        assert "usage: analytics-core" in done.stdout
    done = run("-m", "analytics_core.demo", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


def test_import_analytics_core_leaves_the_heavy_modules_for_later():
    code = """
import json, sys
import analytics_core
before = set(sys.modules)
client = analytics_core.Client("k", send=False)
made = set(sys.modules)
client.track("u", "First")
print(json.dumps({"import": sorted(before), "client": sorted(made), "track": sorted(sys.modules)}))
"""
    done = run("-c", code)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    heavy = {"requests", "urllib3", "orjson", "http.client", "ssl", "sqlite3", "inspect"}
    heavy.add("analytics_core.packing")  # only a stalled uploader's backlog is packed
    assert not heavy & set(loaded["import"])
    assert not heavy & set(loaded["client"])  # a client that has sent nothing yet
    assert "orjson" in loaded["track"]  # the first call encodes: orjson is needed now
    assert "requests" not in loaded["track"]  # send=False: nothing is ever posted
    tools = {name for name in loaded["import"] if name.startswith("analytics_core.tools.")}
    assert tools == {"analytics_core.tools.capture"}  # the only tool the client consults


def test_the_asgi_integration_does_not_import_the_spool():
    # It catches SpoolError when a middleware's spool cannot be opened: the error class lives in
    # analytics_core.errors, so importing the integration costs no sqlite3.
    code = (
        "import sys, analytics_asgi\n"
        "print(sorted({'sqlite3', 'analytics_core.spool'} & set(sys.modules)))"
    )
    done = run("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
