"""The request context is read from the request only when a message needs it.

Most requests send nothing; parsing headers, cookies and the peer address for them would be
pure overhead (see bench/middleware.py). These tests count the reads with a real fill and real
framework requests.
"""

import logging

import pytest

import analytics_core
from analytics_core.context import (
    RequestContext,
    add_request_context_lookup,
    current_request_context,
    request_context_lookups,
    reset_request_context,
    set_request_context,
)
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


# -- lookups: a framework's own request context (Flask's) ---------------------------------------


@pytest.fixture
def lookup():
    """A lookup answering ``answer["context"]``, removed afterwards (the list is shared)."""
    answer = {"context": None, "calls": 0}

    def look():
        answer["calls"] += 1
        if isinstance(answer["context"], Exception):
            raise answer["context"]
        return answer["context"]

    add_request_context_lookup(look)
    add_request_context_lookup(look)  # once is enough
    assert request_context_lookups.count(look) == 1
    yield answer
    request_context_lookups.remove(look)


def test_a_lookup_gives_the_context_when_no_integration_set_one(lookup):
    own = analytics_core.Client("lookup-key", send=False)
    try:
        lookup["context"] = RequestContext(client=own, fill=CountingFill())
        assert current_request_context() is lookup["context"]
        # The module-level API goes to the context's client, with its fields and ids.
        success, message = analytics_core.track(event="Looked Up")
        assert success
        assert message["anonymousId"] == "anon-1"
        assert message["context"]["ip"] == "10.0.0.7"
        # A client's own call merges it as well.
        _, direct = own.track(user_id="u1", event="Direct")
        assert direct["context"]["page"]["path"] == "/cart"
        assert analytics_core.set_user_id("u2") is True
        assert lookup["context"].user_id == "u2"
    finally:
        own.shutdown()


def test_a_context_an_integration_set_wins_without_asking_the_lookups(lookup):
    lookup["context"] = RequestContext(context={"ip": "9.9.9.9"})
    mine = RequestContext(context={"ip": "1.2.3.4"})
    token = set_request_context(mine)
    try:
        assert current_request_context() is mine
        calls = lookup["calls"]
        client = analytics_core.Client("lookup-key", send=False)
        _, message = client.track(user_id="u1", event="Set Wins")
        client.shutdown()
        assert message["context"]["ip"] == "1.2.3.4"
        assert lookup["calls"] == calls
    finally:
        reset_request_context(token)


def test_a_lookup_that_raises_is_logged_and_the_call_goes_on(lookup, caplog):
    lookup["context"] = RuntimeError("the framework is in a bad state")
    client = analytics_core.Client("lookup-key", send=False)
    try:
        with caplog.at_level(logging.ERROR, logger="segment"):
            assert current_request_context() is None
            success, message = client.track(user_id="u1", event="Still Sent")
        assert success
        assert "ip" not in message["context"]
        assert "looking up the request's context failed" in caplog.text
    finally:
        client.shutdown()


def test_an_outermost_lookup_is_asked_after_lookups_added_later():
    outer_context = RequestContext(context={"ip": "1.1.1.1"})
    inner_context = RequestContext(context={"ip": "2.2.2.2"})

    def outer():
        return outer_context

    def inner():
        return inner_context

    add_request_context_lookup(outer, outermost=True)
    add_request_context_lookup(inner)
    try:
        assert request_context_lookups.index(inner) < request_context_lookups.index(outer)
        assert current_request_context() is inner_context
        request_context_lookups.remove(inner)
        assert current_request_context() is outer_context
    finally:
        for lookup in (outer, inner):
            if lookup in request_context_lookups:
                request_context_lookups.remove(lookup)
