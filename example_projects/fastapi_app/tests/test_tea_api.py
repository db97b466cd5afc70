"""The tea shop's own tests: its analytics, checked with analytics-core's ``analytics_events``
fixture (nothing is sent). Run ``pytest`` in example_projects/fastapi_app."""

from urllib.parse import unquote

from fastapi.testclient import TestClient
from tea_api.app import app


def test_a_first_visit_gets_an_anonymous_id_which_the_login_ties_to_the_user(analytics_events):
    with TestClient(app) as browser:  # no ajs_anonymous_id cookie: analytics.js never ran
        home = browser.get("/")
        assert home.status_code == 200
        # The page view needed an id: one was minted and handed to the browser as
        # analytics.js's cookie, which the test client sends back from now on.
        set_cookie = home.headers["set-cookie"]
        assert "Path=/" in set_cookie and "SameSite=Lax" in set_cookie
        assert "HttpOnly" not in set_cookie
        visitor = unquote(browser.cookies["ajs_anonymous_id"]).strip('"')
        login = browser.post("/login", json={"username": "alice", "password": "green-tea"})
        assert login.status_code == 200
        order = browser.post("/orders", json={"sku": "MUG-02", "quantity": 2})
        assert order.status_code == 200
    page = analytics_events.assert_called("page", name="/", anonymous_id=visitor)
    assert "userId" not in page
    # Both ids on the identify: Segment joins the anonymous visit to the user.
    analytics_events.assert_identified(
        "user-1001", traits={"email": "alice@example.com"}, anonymous_id=visitor
    )
    analytics_events.assert_tracked("Signed In", user_id="user-1001", anonymous_id=visitor)
    tracked = analytics_events.assert_tracked(
        "Order Completed",
        user_id="user-1001",
        anonymous_id=visitor,
        properties={"revenue": 24.0, "currency": "EUR", "order_id": order.json()["order_id"]},
    )
    assert tracked["properties"]["products"][0]["quantity"] == 2


def test_the_oauth2_dependency_gives_the_api_events_the_user_id(analytics_events):
    with TestClient(app) as script:
        token = script.post("/token", data={"username": "bob", "password": "oolong"})
        assert token.status_code == 200
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        order = script.post("/api/orders", json={"sku": "TEA-01", "quantity": 4}, headers=bearer)
        assert order.status_code == 200, order.text
        # get_current_user called analytics_core.set_user_id: no anonymous id was needed,
        # so none was minted and no cookie set.
        assert "set-cookie" not in order.headers
    tracked = analytics_events.assert_tracked(
        "Order Completed", user_id="user-1002", properties={"revenue": 30.0}
    )
    assert "anonymousId" not in tracked
    assert tracked["context"]["page"]["path"] == "/api/orders"


def test_refused_logins_and_tokens_send_nothing(analytics_events):
    with TestClient(app) as client:
        wrong = {"username": "alice", "password": "x"}
        assert client.post("/login", json=wrong).status_code == 401
        assert client.post("/token", data=wrong).status_code == 401
        forged = {"Authorization": "Bearer user-1001.forged"}
        assert client.post("/api/orders", json={"sku": "TEA-01"}, headers=forged).status_code == 401
        assert "ajs_anonymous_id" not in client.cookies  # no call needed an id: no cookie
    analytics_events.assert_nothing_sent()
