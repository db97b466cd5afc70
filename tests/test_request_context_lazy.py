"""The request context is read from the request only when a message needs it.

Most requests send nothing; parsing headers, cookies and the peer address for them would be
pure overhead (see bench/middleware.py). These tests count the reads with a real fill and real
framework requests.
"""

import logging

import analytics_core
from analytics_core.context import RequestContext, reset_request_context, set_request_context
from analytics_core.web import request_fields

from .flask_apps.factory import AppFactory, add_track_route


def _fields():
    return request_fields(
        peer="10.0.0.7",
        scheme="https",
        host="shop.example",
        path="/cart",
        query_string="",
        headers={"user-agent": "Firefox", "cookie": "ajs_anonymous_id=%22anon-1%22"},
    )


class CountingFill:
    def __init__(self, fill=_fields):
        self.fill = fill
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.fill()


def test_the_fill_runs_once_on_first_use_and_not_at_all_without_use():
    unused, used = CountingFill(), CountingFill()
    RequestContext(fill=unused)
    context = RequestContext(fill=used)
    assert used.calls == 0
    assert context.context["ip"] == "10.0.0.7"
    assert context.anonymous_id == "anon-1"
    assert context.context["page"]["url"] == "https://shop.example/cart"
    assert (unused.calls, used.calls) == (0, 1)


def test_what_the_app_assigned_before_the_fill_ran_wins():
    context = RequestContext(fill=CountingFill())
    context.anonymous_id = "chosen-by-app"
    assert context.anonymous_id == "chosen-by-app"
    assert context.context["userAgent"] == "Firefox"
    replaced = RequestContext(fill=CountingFill())
    replaced.context = {"ip": "1.1.1.1"}
    assert replaced.context == {"ip": "1.1.1.1"}


def test_a_fill_that_raises_gives_an_empty_context_and_a_log_line(caplog):
    def broken():
        raise RuntimeError("unreadable request")

    context = RequestContext(fill=broken)
    with caplog.at_level(logging.ERROR, logger="segment"):
        assert context.context == {}
        assert context.anonymous_id is None
    assert "could not read the request's context" in caplog.text
    client = analytics_core.Client("lazy-key", send=False)
    token = set_request_context(context)
    try:
        success, message = client.track(user_id="u1", event="Still Sent")
    finally:
        reset_request_context(token)
        client.shutdown()
    assert success
    assert message["event"] == "Still Sent"


def test_a_flask_request_without_analytics_calls_never_reads_its_context(collector, monkeypatch):
    from analytics_flask import request_context

    calls = []
    real = request_context.request_fields

    def counting(**fields):
        calls.append(fields["path"])
        return real(**fields)

    monkeypatch.setattr(request_context, "request_fields", counting)
    factory = AppFactory(collector.url)
    try:
        app = add_track_route(factory())

        @app.get("/quiet")
        def quiet():
            return "nothing tracked"

        client = app.test_client()
        client.set_cookie("ajs_anonymous_id", "visitor-9")
        assert client.get("/quiet").status_code == 200
        assert calls == []
        assert client.get("/track", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
        assert calls == ["/track"]
        app.extensions["analytics"].client.flush()
        (event,) = collector.events(limit=0)
        assert event["context"]["ip"] == "10.1.2.3"
        assert event["anonymousId"] == "visitor-9"
    finally:
        factory.close()


def test_was_read_says_whether_a_message_of_the_request_was_built():
    # The Django middleware delivers a request's events before its response (runserver) only
    # when the request built one: was_read is what it asks.
    fill = CountingFill()
    context = RequestContext(fill=fill)
    client = analytics_core.Client("k", send=False)
    token = set_request_context(context)
    try:
        assert context.was_read is False
        analytics_core.set_user_id("u-1")  # naming the user reads nothing
        assert context.was_read is False
        client.track(event="Viewed")
        assert context.was_read is True
        assert fill.calls == 1
    finally:
        reset_request_context(token)
    assert RequestContext({"ip": "10.0.0.1"}).was_read is True  # nothing left to read
