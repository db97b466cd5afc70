"""The module-level settings cannot make a client (no write_key, a spool folder missing on this
machine): calls inside a request answer the visitor normally and send nothing, with one error
logged; calls outside requests raise, as analytics-python's do.

Found by reading the README's own advice for one client inside and outside ASGI requests (a
bare ``app.add_middleware(SegmentMiddleware)`` with ``analytics_core.write_key =
os.environ.get(...)``): without the variable, every request that tracked answered 500.
"""

import logging

import pytest
from analytics_asgi import SegmentMiddleware
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import analytics_core
from analytics_core import ValidationError
from analytics_core.errors import SpoolError

from .asgi_apps.support import TestClient


def _app():
    async def tracked(request):
        ok, _ = analytics_core.track(event="Checkout", properties={"n": request.query_params["n"]})
        return PlainTextResponse(str(ok))

    app = Starlette(routes=[Route("/", tracked)])
    app.add_middleware(SegmentMiddleware)  # the module-level client, as the README shows
    return app


def _errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def test_without_a_write_key_requests_are_served_and_calls_outside_raise(collector, caplog):
    analytics_core.write_key = None
    analytics_core.host = collector.url
    with caplog.at_level(logging.ERROR, logger="segment"), TestClient(_app()) as http:
        statuses = [http.get("/", params={"n": n}).status_code for n in range(3)]
    assert statuses == [200, 200, 200]
    errors = _errors(caplog)
    assert len(errors) == 1, errors  # once, not once per request
    assert "write_key is required" in errors[0]
    with pytest.raises(ValidationError, match="write_key is required"):
        analytics_core.track("u", "Outside")
    assert analytics_core.default_client is None  # nothing half-built was kept
    analytics_core.flush()
    assert collector.events(limit=0) == []


def test_a_spool_folder_that_does_not_exist_and_then_the_settings_fixed(
    collector, caplog, tmp_path
):
    analytics_core.write_key = "module-key"
    analytics_core.host = collector.url
    analytics_core.persist = str(tmp_path / "missing" / "spool.db")
    app = _app()
    with caplog.at_level(logging.ERROR, logger="segment"), TestClient(app) as http:
        assert http.get("/", params={"n": "lost"}).status_code == 200
        errors = _errors(caplog)
        assert len(errors) == 1 and "does not exist" in errors[0], errors
        assert "module-key" not in caplog.text  # the write key is never logged
        with pytest.raises(SpoolError, match="does not exist"):
            analytics_core.track("u", "Outside")
        # Fixed while the app runs: the next request's call builds the real client.
        (tmp_path / "missing").mkdir()
        assert http.get("/", params={"n": "kept"}).status_code == 200
        assert analytics_core.default_client is not None
        analytics_core.flush()
    stored = collector.events(limit=0)
    assert [event["properties"]["n"] for event in stored] == ["kept"]
