"""The public API type-checks under ``mypy --strict`` in a user's project (issue 14, part 3).

mypy sees the packages as a user's installation shows them: on the interpreter's path, not as
sources of the project being checked, so each needs its ``py.typed`` marker (without it mypy
refuses the import: "missing library stubs or py.typed marker"). A file with mistakes proves
that the calls are really checked, not typed as ``Any``.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = [ROOT / "analytics_core"] + sorted((ROOT / "integrations").glob("analytics_*"))

USER_FILE = """
    import datetime
    import logging
    from typing import Any, Dict, List

    from fastapi import FastAPI
    from flask import Flask

    import analytics_core as analytics
    from analytics_asgi import SegmentMiddleware
    from analytics_core import APIError, Client, ValidationError, set_user_id
    from analytics_core.request import APIError as RequestAPIError
    from analytics_flask import Analytics


    def on_error(error: BaseException, items: List[Dict[str, Any]]) -> None:
        logging.getLogger(__name__).error("%s: %d messages", error, len(items))


    analytics.write_key = "key"
    analytics.on_error = on_error
    analytics.debug = True
    analytics.log_handler = logging.StreamHandler()
    analytics.upload_interval = 0.25
    now = datetime.datetime.now(datetime.timezone.utc)
    ok, message = analytics.track("u", "Signed Up", {"plan": "pro"}, timestamp=now)
    event: str = message["event"]
    analytics.identify("u", {"email": "a@example.com"}, context={"ip": "203.0.113.9"})
    analytics.page("u", "Docs", "Home", {"url": "https://example.com"}, message_id="m-1")
    analytics.screen(anonymous_id="a", name="Main")
    analytics.group("u", 42, {"name": "Acme"}, integrations={"All": False})
    analytics.alias("anon", "u")
    delivered: bool = analytics.flush()
    analytics.shutdown()
    if analytics.default_client is not None:
        waiting: int = analytics.default_client.queue.qsize()

    with Client("key", send=False, on_error=on_error, gzip=True, timeout=3) as client:
        accepted, sent = client.track(user_id=7, event="E", timestamp=datetime.date(2024, 1, 1))
        seconds: float = client.timeout
        counts: Dict[str, int] = client.stats()

    try:
        client.identify()
    except ValidationError as exc:
        print(exc)
    except (APIError, RequestAPIError) as exc:
        print(exc.status, exc.code, exc.message)

    app = Flask(__name__)
    app.config["ANALYTICS_WRITE_KEY"] = "key"
    Analytics(app).client.track("u", "From Flask")
    api = FastAPI()
    api.add_middleware(SegmentMiddleware, write_key="key")
    set_user_id("u")
"""

MISTAKES = """
    import analytics_core as analytics

    analytics.track("u", 42)
    analytics.identify("u", traits=["not", "a", "dict"])
    text: str = analytics.flush()
    analytics.on_error = "log it"
"""


@pytest.fixture
def installed(tmp_path):
    """The packages on a path of their own, as a wheel installs them (symlinks)."""
    site = tmp_path / "site"
    site.mkdir()
    for package in PACKAGES:
        assert (package / "py.typed").is_file(), package
        (site / package.name).symlink_to(package)
    return site


def run_mypy(tmp_path, installed, source):
    user_file = tmp_path / "user_app.py"
    user_file.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=str(installed))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--python-executable",
            sys.executable,
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            str(user_file),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_users_file_passes_mypy_strict(tmp_path, installed):
    result = run_mypy(tmp_path, installed, USER_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_mistakes_are_caught(tmp_path, installed):
    result = run_mypy(tmp_path, installed, MISTAKES)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 4, result.stdout
    assert 'Argument 2 to "track" has incompatible type "int"' in result.stdout
    assert 'Argument "traits" to "identify"' in result.stdout
    assert 'variable has type "str"' in result.stdout
    assert "on_error" in result.stdout or "Callable" in result.stdout
