"""The shop's own tests: its analytics, checked with analytics-core's ``analytics_events``
fixture (nothing is sent). Run ``pytest`` in this directory."""

from urllib.parse import unquote

from app import app


def test_a_first_visit_gets_an_anonymous_id_which_the_sign_in_ties_to_the_user(
    analytics_events,
):
    browser = app.test_client()  # no ajs_anonymous_id cookie: analytics.js never ran
    browser.get("/", headers={"User-Agent": "shop-test"})
    # The page view needed an id: one was minted and handed to the browser as analytics.js's
    # cookie, which the test client sends back from now on.
    cookie = browser.get_cookie("ajs_anonymous_id")
    assert (cookie.path, cookie.http_only, cookie.same_site) == ("/", False, "Lax")
    visitor = unquote(cookie.value).strip('"')
    page = analytics_events.assert_called("page", anonymous_id=visitor, name="/")
    assert "userId" not in page
    assert page["context"]["userAgent"] == "shop-test"
    assert page["properties"]["title"] == "Flask shop"

    browser.post("/login", data={"username": "ada"})
    browser.post("/orders", data={"product": "Rubber duck", "price": "9.5"})

    # Both ids on the identify: Segment joins the anonymous visit to the user.
    analytics_events.assert_identified(
        "user-1", traits={"email": "ada@example.com"}, anonymous_id=visitor
    )
    # ANALYTICS_USER_ID reads the session: the order, with no ids passed, has the user's.
    order = analytics_events.assert_tracked(
        "Order Completed",
        user_id="user-1",
        anonymous_id=visitor,
        properties={"total": 9.5, "currency": "EUR", "products": [{"name": "Rubber duck"}]},
    )
    assert order["context"]["page"]["path"] == "/orders"


def test_a_failed_sign_in_or_order_sends_nothing_and_sets_no_cookie(analytics_events):
    browser = app.test_client()
    assert browser.post("/login", data={"username": "mallory"}).status_code == 401
    assert browser.post("/orders", data={"price": "1"}).status_code == 401
    analytics_events.assert_nothing_sent()
    assert browser.get_cookie("ajs_anonymous_id") is None  # no call needed an id
