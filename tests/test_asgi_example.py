"""The example project (example_projects/fastapi_app) run for real under uvicorn.

A visit, a refused order, a wrong password, a login, another visit and an order, with the
analytics.js cookie, then SIGTERM. The collector must hold every event in order, with the user
id the session cookie gives and the request's context.
"""

import json
import signal
from urllib.parse import quote

import pytest

from .support.servers import ROOT, ServerProcess, executable, free_port, python_env

pytestmark = pytest.mark.slow

APP_DIR = ROOT / "example_projects" / "fastapi_app"
USER_AGENT = "TeaBrowser/3.0"
ANONYMOUS_ID = "tea-visitor-1"
KEY = "tea-test-key"


def test_the_tea_shop_sends_page_identify_and_order_events(collector):
    env = python_env({"ANALYTICS_HOST": collector.url, "ANALYTICS_WRITE_KEY": KEY})
    port = free_port()
    command = executable("uvicorn") + ["tea_api.app:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    with ServerProcess(command, port, env=env, cwd=str(APP_DIR), ready_path="/health") as server:
        browser = server.session
        browser.headers["User-Agent"] = USER_AGENT
        # What analytics.js would have stored in the browser: URL-encoded, JSON-quoted.
        browser.cookies.set("ajs_anonymous_id", quote(json.dumps(ANONYMOUS_ID)), domain="127.0.0.1")

        assert "Tea shop" in server.get("/").text
        order = {"sku": "POT-03", "quantity": 2}
        assert server.post("/orders", json=order).status_code == 401
        wrong = {"username": "alice", "password": "black-tea"}
        assert server.post("/login", json=wrong).status_code == 401
        login = server.post("/login", json={"username": "alice", "password": "green-tea"})
        assert login.status_code == 200, login.text
        assert server.get("/?from=login").status_code == 200
        placed = server.post("/orders", json=order)
        assert placed.status_code == 200, placed.text
        assert placed.json()["total"] == "79.80"

        server.stop(signal.SIGTERM)
        output = server.output()

    events = collector.events(limit=0, order="asc", write_key=KEY)
    summary = [(e["type"], e.get("name") or e.get("event"), e.get("userId")) for e in events]
    assert summary == [
        ("page", "home", None),
        ("identify", None, "user-1001"),
        ("track", "Signed In", "user-1001"),
        ("page", "home", "user-1001"),
        ("track", "Order Completed", "user-1001"),
    ], output[-3000:]
    # Every event has the browser's anonymous id: the identify ties it to the user.
    assert [e["anonymousId"] for e in events] == [ANONYMOUS_ID] * 5

    identify = events[1]
    assert identify["traits"] == {"username": "alice", "email": "alice@example.com"}
    assert identify["context"]["page"]["path"] == "/login"

    assert events[3]["properties"]["search"] == "?from=login"

    completed = events[4]
    assert completed["properties"]["revenue"] == pytest.approx(79.8)
    assert completed["properties"]["currency"] == "EUR"
    assert completed["properties"]["products"][0]["sku"] == "POT-03"
    assert completed["properties"]["products"][0]["quantity"] == 2
    context = completed["context"]
    assert context["ip"] == "127.0.0.1"
    assert context["userAgent"] == USER_AGENT
    assert context["page"]["path"] == "/orders"
    assert context["page"]["url"] == f"http://127.0.0.1:{port}/orders"
