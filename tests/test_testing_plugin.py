"""The ``analytics_events`` pytest plugin: captures every client's messages, sends nothing."""

import textwrap

import pytest
from analytics_asgi import SegmentMiddleware
from django.test import Client as DjangoTestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import analytics_core
from analytics_core import Client
from analytics_core.testing import capture_events

from .flask_apps.factory import AppFactory, add_track_route, ajs_cookie

pytest_plugins = ["pytester"]


def test_module_level_api_and_client_instances_are_captured(analytics_events, collector):
    analytics_core.write_key = "wk-capture"
    analytics_core.host = collector.url
    analytics_core.track("u1", "Signed Up", {"plan": "pro", "seats": 3})
    own = Client("wk-other", host=collector.url)
    own.identify("u2", {"email": "u2@example.com"})
    own.page("u2", "Docs", "Install")
    assert analytics_core.flush() and own.flush()
    own.shutdown()
    assert collector.stats()["messages"] == 0  # nothing was sent
    analytics_events.assert_tracked("Signed Up", properties={"plan": "pro"}, user_id="u1")
    analytics_events.assert_identified("u2", traits={"email": "u2@example.com"})
    page = analytics_events.assert_called("page", name="Install", category="Docs")
    assert page["userId"] == "u2"
    assert [message["type"] for message in analytics_events] == ["track", "identify", "page"]
    assert len(analytics_events.of_type("identify")) == 1


def test_messages_are_in_their_wire_form(analytics_events):
    import datetime as dt

    client = Client("wk", send=False)
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    client.track(user_id=7, event="Paid", properties={"at": when}, timestamp=when)
    (message,) = analytics_events.tracked("Paid")
    assert message["userId"] == "7"
    assert message["timestamp"].startswith("2026-01-02T03:04:05")
    assert isinstance(message["properties"]["at"], str)
    assert message["context"]["library"]["name"] == "analytics-core"


def test_failed_assertions_say_what_was_captured(analytics_events):
    Client("wk", send=False).track("u", "Viewed", {"n": 1})
    with pytest.raises(AssertionError, match=r"found 0\. Captured:\n  track 'Viewed' user=u"):
        analytics_events.assert_tracked("Purchased")
    with pytest.raises(AssertionError, match="exactly 2"):
        analytics_events.assert_tracked("Viewed", count=2)
    with pytest.raises(AssertionError, match="expected no track 'Viewed'"):
        analytics_events.assert_not_tracked("Viewed")
    with pytest.raises(AssertionError, match="expected no analytics messages"):
        analytics_events.assert_nothing_sent()
    analytics_events.clear()
    analytics_events.assert_nothing_sent()


def test_capture_ends_with_the_block_and_clients_send_again(collector):
    client = Client("wk-after", host=collector.url)
    with capture_events() as events:
        client.track("u", "Captured")
    client.track("u", "Sent")
    assert client.flush()
    client.shutdown()
    assert [message["event"] for message in events] == ["Captured"]
    assert [event["event"] for event in collector.events(limit=0)] == ["Sent"]


def test_inside_a_flask_request(analytics_events, collector):
    factory = AppFactory(collector.url)
    try:
        app = add_track_route(factory())
        browser = app.test_client()
        browser.set_cookie("ajs_anonymous_id", ajs_cookie("visitor-1"))
        browser.get("/track?x=1", headers={"User-Agent": "pytest-browser"})
    finally:
        factory.close()
    message = analytics_events.assert_tracked("Test Event", anonymous_id="visitor-1")
    assert message["context"]["userAgent"] == "pytest-browser"
    assert message["context"]["page"]["search"] == "?x=1"


def test_inside_a_django_request(analytics_events):
    from analytics_django.configure import configure

    configure()  # the app's client, as AppConfig.ready() made it (the conftest resets it)
    response = DjangoTestClient().get("/track/?event=Django+Captured&user_id=dj-1")
    assert response.status_code == 200
    message = analytics_events.assert_tracked("Django Captured", user_id="dj-1")
    assert message["context"]["page"]["path"] == "/track/"


def test_inside_an_asgi_request(analytics_events, collector):
    async def hello(request):
        analytics_core.track(user_id="a-1", event="ASGI Captured")
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(SegmentMiddleware, write_key="wk-asgi", host=collector.url)
    with TestClient(app) as browser:
        assert browser.get("/?from=test").text == "hi"
    message = analytics_events.assert_tracked("ASGI Captured", user_id="a-1")
    assert message["context"]["page"]["search"] == "?from=test"
    assert collector.stats()["messages"] == 0


def test_the_fixture_is_installed_for_other_projects(pytester):
    # A project of its own, with no conftest: the fixture comes from the pytest11 entry point.
    pytester.makepyfile(
        test_shop=textwrap.dedent(
            """
            import analytics_core

            def checkout(order_id):
                analytics_core.track("buyer", "Order Completed", {"order_id": order_id})

            def test_checkout(analytics_events):
                analytics_core.write_key = "shop-key"
                checkout("o-17")
                analytics_events.assert_tracked("Order Completed", properties={"order_id": "o-17"})
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


# -- a test run never sends unless a test asks to ------------------------------------------------


def _run_project(pytester, collector, test_source, *args):
    """Run a project of its own (no conftest of ours) in a subprocess, its analytics pointed at
    the real collector, and return the outcome and what the collector received."""
    pytester.makepyfile(
        conftest=textwrap.dedent(
            f"""
            import analytics_core

            analytics_core.write_key = "their-production-key"
            analytics_core.host = {collector.url!r}
            analytics_core.upload_interval = 0.01
            # A call at import time, before any test: not sent either.
            analytics_core.track("ci", "Conftest Imported")
            """
        ),
        test_project=textwrap.dedent(test_source),
    )
    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider", *args)
    return result, collector.events(limit=0, order="asc")


PLAIN_TEST = """
    import analytics_core

    def test_signup():
        assert analytics_core.track("u1", "Signed Up")[0] is True
        assert analytics_core.flush()
"""


def test_a_test_run_sends_nothing_by_default(pytester, collector):
    result, received = _run_project(pytester, collector, PLAIN_TEST)
    result.assert_outcomes(passed=1)
    assert received == []


def test_a_test_opts_in_with_the_marker(pytester, collector):
    source = """
        import pytest
        import analytics_core

        @pytest.mark.analytics_send
        def test_delivery():
            analytics_core.track("u1", "Really Sent")
            assert analytics_core.flush(10)

        def test_not_marked():
            analytics_core.track("u1", "Held Back")
            assert analytics_core.flush(10)
    """
    result, received = _run_project(pytester, collector, source)
    result.assert_outcomes(passed=2)
    assert [event["event"] for event in received] == ["Really Sent"]


def test_a_fixture_opts_in_through_the_analytics_send_fixture(pytester, collector):
    source = """
        import pytest
        import analytics_core

        @pytest.fixture
        def live_analytics(analytics_send):
            yield
            assert analytics_core.flush(10)

        def test_delivery(live_analytics):
            analytics_core.track("u1", "Sent Through A Fixture")

        def test_delivery_and_capture(analytics_send, analytics_events):
            analytics_core.track("u1", "Captured Even So")
            analytics_events.assert_tracked("Captured Even So")
    """
    result, received = _run_project(pytester, collector, source)
    result.assert_outcomes(passed=2)
    assert [event["event"] for event in received] == ["Sent Through A Fixture"]


def test_the_plugin_can_be_turned_off(pytester, collector):
    result, received = _run_project(pytester, collector, PLAIN_TEST, "-p", "no:analytics_core")
    result.assert_outcomes(passed=1)
    assert [event["event"] for event in received] == ["Conftest Imported", "Signed Up"]


def test_the_events_fixture_sees_what_fixtures_sent_before_it(analytics_events):
    # The capture starts with the test, so a fixture set up earlier is already in it.
    assert analytics_events.messages == []
    analytics_core.write_key = "wk-module"
    analytics_core.track("u1", "In The Test")
    assert [message["event"] for message in analytics_events] == ["In The Test"]


def test_each_test_starts_with_an_empty_capture_one(analytics_events):
    Client("wk", send=False).track("u", "First Test")
    assert len(analytics_events) == 1


def test_each_test_starts_with_an_empty_capture_two(analytics_events):
    assert len(analytics_events) == 0
