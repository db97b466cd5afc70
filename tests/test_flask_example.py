"""example_projects/flask_app, run as its README says (``flask run``), against the real collector:
a visitor looks around, signs in and orders; every event arrives with the user and the context."""

import json
import signal
from urllib.parse import quote

import pytest

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
        browser.cookies.set("ajs_anonymous_id", quote(json.dumps("visitor-1")))
        assert browser.get(server.url + "/", timeout=10).ok
        # Both POSTs redirect to the home page: two more page views, as the signed-in user.
        assert browser.post(server.url + "/login", data={"username": "ada"}, timeout=10).ok
        assert browser.post(server.url + "/orders", data={"price": "12"}, timeout=10).ok
        # The development server delivers each request's events before answering, so a
        # SIGTERM (which gives Python no chance to run its exit hooks) loses none of them.
        server.stop(signal.SIGTERM)

    events = collector.wait_for(5, timeout=5)
    assert len(events) == 5
    assert [event["type"] for event in events] == ["page", "identify", "page", "track", "page"]
    first_page, identify, second_page, order, third_page = events
    assert {event["_write_key"] for event in events} == {WRITE_KEY}
    assert {event["anonymousId"] for event in events} == {"visitor-1"}
    for event in events:
        assert event["context"]["ip"] == "127.0.0.1"
        assert event["context"]["userAgent"] == USER_AGENT

    assert "userId" not in first_page  # not signed in yet
    assert first_page["name"] == "home"
    assert first_page["properties"]["url"] == f"http://127.0.0.1:{port}/"

    assert identify["userId"] == "user-1"
    assert identify["traits"] == {"email": "ada@example.com", "name": "Ada Lovelace"}
    assert identify["context"]["page"]["path"] == "/login"

    assert order["event"] == "Order Completed"
    assert order["userId"] == "user-1"
    assert order["properties"]["total"] == 12.0
    assert order["properties"]["currency"] == "EUR"
    assert order["context"]["page"]["path"] == "/orders"
    assert order["context"]["page"]["url"] == f"http://127.0.0.1:{port}/orders"

    assert second_page["userId"] == third_page["userId"] == "user-1"
    order_id = order["properties"]["order_id"]
    assert third_page["context"]["page"]["search"] == f"?order={order_id}"
