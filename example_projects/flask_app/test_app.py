"""The shop's own tests: its analytics, checked with analytics-core's ``analytics_events``
fixture (nothing is sent). Run ``pytest`` in this directory."""

from app import app


def test_a_signed_in_order_is_identified_and_tracked(analytics_events):
    browser = app.test_client()
    browser.set_cookie("ajs_anonymous_id", "%22visitor-1%22")  # as analytics.js writes it
    browser.get("/", headers={"User-Agent": "shop-test"})
    browser.post("/login", data={"username": "ada"})
    browser.post("/orders", data={"product": "Rubber duck", "price": "9.5"})

    page = analytics_events.assert_called("page", anonymous_id="visitor-1")
    assert page["context"]["userAgent"] == "shop-test"
    analytics_events.assert_identified("user-1", traits={"email": "ada@example.com"})
    order = analytics_events.assert_tracked(
        "Order Completed",
        user_id="user-1",
        properties={"total": 9.5, "currency": "EUR", "products": [{"name": "Rubber duck"}]},
    )
    assert order["context"]["page"]["path"] == "/orders"


def test_a_failed_sign_in_sends_no_identify(analytics_events):
    app.test_client().post("/login", data={"username": "mallory"})
    assert analytics_events.of_type("identify") == []
