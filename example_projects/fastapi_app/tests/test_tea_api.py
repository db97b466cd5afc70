"""The tea shop's own tests: its analytics, checked with analytics-core's ``analytics_events``
fixture (nothing is sent). Run ``pytest`` in example_projects/fastapi_app."""

from fastapi.testclient import TestClient
from tea_api.app import app


def test_login_then_order_is_identified_and_tracked(analytics_events):
    with TestClient(app, cookies={"ajs_anonymous_id": "%22visitor-7%22"}) as browser:
        assert browser.get("/").status_code == 200
        login = browser.post("/login", json={"username": "alice", "password": "green-tea"})
        assert login.status_code == 200
        order = browser.post("/orders", json={"sku": "MUG-02", "quantity": 2})
        assert order.status_code == 200
    analytics_events.assert_called("page", anonymous_id="visitor-7")
    # The browser's anonymous id stays on the identify: it ties the visit so far to the user.
    analytics_events.assert_identified(
        "user-1001", traits={"email": "alice@example.com"}, anonymous_id="visitor-7"
    )
    analytics_events.assert_tracked("Signed In", user_id="user-1001")
    tracked = analytics_events.assert_tracked(
        "Order Completed",
        user_id="user-1001",
        properties={"revenue": 24.0, "currency": "EUR", "order_id": order.json()["order_id"]},
    )
    assert tracked["properties"]["products"][0]["quantity"] == 2


def test_a_wrong_password_sends_nothing_but_the_page(analytics_events):
    with TestClient(app) as browser:
        assert (
            browser.post("/login", json={"username": "alice", "password": "x"}).status_code == 401
        )
    assert analytics_events.of_type("identify") == []
    analytics_events.assert_not_tracked("Signed In")
