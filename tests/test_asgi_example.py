"""The example project (example_projects/fastapi_app) run for real under uvicorn.

A first visit without any cookie, a refused order, a wrong password, a login, another visit and
an order, then a script's order through the OAuth2 bearer-token API, then SIGTERM. The collector
must hold every event in order: the anonymous id minted on the first visit on every event of
the visit, the user id the login and the session cookie give, the user id the API's dependency
sets, and the request's context.
"""

import signal
from urllib.parse import unquote

import pytest
import requests

from .support.servers import ROOT, ServerProcess, executable, free_port, python_env

pytestmark = pytest.mark.slow

APP_DIR = ROOT / "example_projects" / "fastapi_app"
USER_AGENT = "TeaBrowser/3.0"
SCRIPT_AGENT = "tea-script/1.0"
KEY = "tea-test-key"


def test_the_tea_shop_sends_page_identify_and_order_events(collector):
    env = python_env({"ANALYTICS_HOST": collector.url, "ANALYTICS_WRITE_KEY": KEY})
    port = free_port()
    command = executable("uvicorn") + ["tea_api.app:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    with ServerProcess(command, port, env=env, cwd=str(APP_DIR), ready_path="/health") as server:
        browser = server.session
        browser.headers["User-Agent"] = USER_AGENT
        assert not browser.cookies  # a first visit: no analytics.js ran yet

        home = server.get("/")
        assert "Tea shop" in home.text
        # The page view needed an id: the shop minted one and hands it over as analytics.js's
        # cookie, which the browser sends back from now on.
        set_cookie = home.headers["Set-Cookie"]
        assert set_cookie.startswith("ajs_anonymous_id=%22"), set_cookie
        assert "Max-Age=31536000" in set_cookie and "Path=/" in set_cookie
        assert "SameSite=Lax" in set_cookie and "HttpOnly" not in set_cookie
        visitor = unquote(browser.cookies["ajs_anonymous_id"]).strip('"')

        order = {"sku": "POT-03", "quantity": 2}
        assert server.post("/orders", json=order).status_code == 401
        wrong = {"username": "alice", "password": "black-tea"}
        assert server.post("/login", json=wrong).status_code == 401
        login = server.post("/login", json={"username": "alice", "password": "green-tea"})
        assert login.status_code == 200, login.text
        assert "ajs_anonymous_id" not in login.headers.get("Set-Cookie", "")
        assert server.get("/?from=login").status_code == 200
        placed = server.post("/orders", json=order)
        assert placed.status_code == 200, placed.text
        assert placed.json()["total"] == "79.80"

        # A script using the API: no cookies, a bearer token from /token.
        with requests.Session() as script:
            script.trust_env = False
            script.headers["User-Agent"] = SCRIPT_AGENT
            credentials = {"username": "bob", "password": "oolong"}
            token = script.post(server.url + "/token", data=credentials, timeout=10)
            assert token.status_code == 200, token.text
            api_order = script.post(
                server.url + "/api/orders",
                json={"sku": "TEA-01", "quantity": 4},
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                timeout=10,
            )
        assert api_order.status_code == 200, api_order.text
        assert "Set-Cookie" not in api_order.headers  # the user id was enough: no cookie

        server.stop(signal.SIGTERM)
        output = server.output()

    events = collector.events(limit=0, order="asc", write_key=KEY)
    summary = [(e["type"], e.get("name") or e.get("event"), e.get("userId")) for e in events]
    # Pages are named after their route pattern.
    assert summary == [
        ("page", "/", None),
        ("identify", None, "user-1001"),
        ("track", "Signed In", "user-1001"),
        ("page", "/", "user-1001"),
        ("track", "Order Completed", "user-1001"),
        ("track", "Order Completed", "user-1002"),
    ], output[-3000:]
    # Every event of the visit has the minted anonymous id: the identify, which has the user
    # id too, is what ties the two together in Segment.
    assert [e["anonymousId"] for e in events[:5]] == [visitor] * 5

    first_page = events[0]
    assert first_page["properties"]["title"] == "Tea shop"
    assert first_page["properties"]["url"] == f"http://127.0.0.1:{port}/"

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

    # The API's order: the user id get_current_user set (analytics_core.set_user_id), and no
    # anonymous id, since none was needed.
    by_script = events[5]
    assert "anonymousId" not in by_script
    assert by_script["properties"]["revenue"] == pytest.approx(30.0)
    assert by_script["context"]["userAgent"] == SCRIPT_AGENT
    assert by_script["context"]["page"]["path"] == "/api/orders"
