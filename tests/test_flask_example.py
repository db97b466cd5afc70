"""example_projects/flask_app, run as its README says (``flask run``), against the real collector:
a visitor comes without any cookie, looks around, signs in and orders; every event arrives with
the anonymous id minted on the first visit, the user id from ``ANALYTICS_USER_ID`` once signed
in, and the request's context."""

import signal
from urllib.parse import unquote

import pytest

from analytics_core.collector.access import write_key_fingerprint as fingerprint

from .support.servers import ROOT, ServerProcess, executable, free_port, python_env

EXAMPLE = ROOT / "example_projects" / "flask_app"
WRITE_KEY = "flask-example-test-key"
USER_AGENT = "example-browser/1.0"


@pytest.mark.slow
def test_the_example_shop_sends_page_views_identify_and_the_order(collector):
    port = free_port()
    command = executable("flask") + ["--app", "app", "run"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = python_env({"ANALYTICS_WRITE_KEY": WRITE_KEY, "ANALYTICS_HOST": collector.url})
    with ServerProcess(command, port, env=env, cwd=str(EXAMPLE)) as server:
        browser = server.session
        browser.headers["User-Agent"] = USER_AGENT
        # The readiness probe's page view, and the cookie it got, are not part of the visit:
        # the visitor comes without any cookie (no analytics.js ran yet).
        collector.clear()
        browser.cookies.clear()

        home = browser.get(server.url + "/", timeout=10)
        assert home.ok
        # The page view needed an id: the shop minted one and hands it over as analytics.js's
        # cookie, which the browser sends back from now on.
        set_cookie = home.headers["Set-Cookie"]
        assert set_cookie.startswith("ajs_anonymous_id=%22"), set_cookie
        assert "Max-Age=31536000" in set_cookie and "Path=/" in set_cookie
        assert "SameSite=Lax" in set_cookie and "HttpOnly" not in set_cookie
        visitor = unquote(browser.cookies["ajs_anonymous_id"]).strip('"')
        # Both POSTs redirect to the home page: two more page views, as the signed-in user.
        login = browser.post(server.url + "/login", data={"username": "ada"}, timeout=10)
        assert login.ok
        for response in [*login.history, login]:  # the browser has the id: not set again
            assert "ajs_anonymous_id" not in response.headers.get("Set-Cookie", "")
        assert browser.post(server.url + "/orders", data={"price": "12"}, timeout=10).ok
        # The development server delivers each request's events before answering, so a
        # SIGTERM (which gives Python no chance to run its exit hooks) loses none of them.
        server.stop(signal.SIGTERM)

    events = collector.wait_for(5, timeout=5)
    assert len(events) == 5
    assert [event["type"] for event in events] == ["page", "identify", "page", "track", "page"]
    first_page, identify, second_page, order, third_page = events
    assert {event["_write_key_fingerprint"] for event in events} == {fingerprint(WRITE_KEY)}
    # The minted id is on every event, before and after the sign-in.
    assert [event["anonymousId"] for event in events] == [visitor] * 5
    for event in events:
        assert event["context"]["ip"] == "127.0.0.1"
        assert event["context"]["userAgent"] == USER_AGENT

    assert "userId" not in first_page  # not signed in yet
    assert first_page["name"] == "/"  # the route's pattern
    assert first_page["properties"]["title"] == "Flask shop"
    assert first_page["properties"]["url"] == f"http://127.0.0.1:{port}/"

    # The identify carries the user id and the visit's anonymous id: Segment joins them.
    assert identify["userId"] == "user-1"
    assert identify["traits"] == {"email": "ada@example.com", "name": "Ada Lovelace"}
    assert identify["context"]["page"]["path"] == "/login"

    # No id passed by the view: ANALYTICS_USER_ID found the user in the session.
    assert order["event"] == "Order Completed"
    assert order["userId"] == "user-1"
    assert order["properties"]["total"] == 12.0
    assert order["properties"]["currency"] == "EUR"
    assert order["context"]["page"]["path"] == "/orders"
    assert order["context"]["page"]["url"] == f"http://127.0.0.1:{port}/orders"

    assert second_page["userId"] == third_page["userId"] == "user-1"
    order_id = order["properties"]["order_id"]
    assert third_page["context"]["page"]["search"] == f"?order={order_id}"
