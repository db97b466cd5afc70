"""analytics_flask with a real Flask-Login app: the logged-in user's id, identify on login."""

import logging

import analytics_flask.login
import pytest
from analytics_flask import Analytics, ConfigError
from flask import Flask, Response, stream_with_context
from flask_login import LoginManager, UserMixin, login_user, logout_user

import analytics_core
from analytics_core.collector.access import write_key_fingerprint as fingerprint

from .flask_apps.factory import AppFactory, add_track_route, ajs_cookie, flush


class User(UserMixin):
    def __init__(self, user_id, email=None, name=None):
        self.id = user_id
        self.email = email
        self.name = name


USERS = {
    "7": User("7", email="ada@example.com", name="Ada Lovelace"),
    "8": User("8"),  # no email, no name
    "9": User("9"),  # its loader fails
}


@pytest.fixture
def make_app(collector):
    factory = AppFactory(collector.url)
    yield factory
    factory.close()


def login_app(make_app, name="login-app", **config):
    """An app with Flask-Login; returns it and the list of user ids its loader was asked for."""
    app = add_track_route(make_app(name, SECRET_KEY="test-secret", **config))
    manager = LoginManager(app)
    loads = []

    @manager.user_loader
    def load_user(user_id):
        loads.append(user_id)
        if user_id == "9":
            raise LookupError("the user database is down")
        return USERS.get(user_id)

    @app.post("/login/<user_id>")
    def login(user_id):
        login_user(USERS[user_id])
        return "logged in"

    @app.get("/nothing")
    def nothing():
        return "no analytics here"

    @app.post("/login-during/<user_id>")
    def login_during(user_id):
        analytics_core.track(event="Before Login")
        login_user(USERS[user_id])
        analytics_core.track(event="After Login")
        logout_user()
        analytics_core.track(event="After Logout")
        return "ok"

    @app.get("/stream")
    def stream():
        @stream_with_context
        def with_context():
            yield "a"
            analytics_core.track(event="Streamed", properties={"how": "stream_with_context"})

        return Response(with_context())

    @app.get("/stream-plain")
    def stream_plain():
        def plain():
            yield "b"
            analytics_core.track(event="Streamed", properties={"how": "plain"})

        return Response(plain())

    return app, loads


def browser(app, anonymous_id="a1"):
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie(anonymous_id))
    return client


def events(collector, app, **filters):
    flush(app)
    return collector.events(limit=0, order="asc", **filters)


# -- the user id --------------------------------------------------------------------------------


def test_the_logged_in_user_is_the_user_id(make_app, collector):
    app, _ = login_app(make_app)
    client = browser(app)
    client.post("/login/7")
    client.get("/track")
    (event,) = events(collector, app)
    assert event["userId"] == "7"
    assert event["anonymousId"] == "a1"  # both: Segment ties the visitor to the user


def test_a_login_and_a_logout_during_the_request_count_from_then_on(make_app, collector):
    app, _ = login_app(make_app)
    browser(app).post("/login-during/7")
    before, after, after_logout = events(collector, app)
    assert before["event"] == "Before Login" and "userId" not in before
    assert after["event"] == "After Login" and after["userId"] == "7"
    assert after_logout["event"] == "After Logout" and "userId" not in after_logout
    assert {event["anonymousId"] for event in (before, after, after_logout)} == {"a1"}


def test_the_user_is_loaded_only_when_a_message_needs_it(make_app, collector):
    app, loads = login_app(make_app)
    client = browser(app)
    client.post("/login/7")
    client.get("/nothing")
    assert loads == []
    client.get("/track")
    assert loads == ["7"]
    client.post("/track", json={"user_id": "explicit"})  # explicit ids: no need to load
    assert loads == ["7"]
    tracked, explicit = events(collector, app)
    assert tracked["userId"] == "7"
    assert explicit["userId"] == "explicit"
    assert explicit["anonymousId"] == "a1"  # the cookie's: explicit ids win key by key


def test_a_failing_user_loader_costs_the_user_id_not_the_request(make_app, collector, caplog):
    app, _ = login_app(make_app)
    client = browser(app)
    client.post("/login/9")
    with caplog.at_level(logging.WARNING, logger="segment"):
        assert client.get("/track").status_code == 200
    assert any("logged-in user" in record.getMessage() for record in caplog.records)
    (event,) = events(collector, app)
    assert event["anonymousId"] == "a1"
    assert "userId" not in event


def test_an_app_that_does_not_use_flask_login_has_no_user(make_app, collector):
    app = add_track_route(make_app())
    assert browser(app).get("/track").status_code == 200
    (event,) = events(collector, app)
    assert "userId" not in event and event["anonymousId"] == "a1"


def test_a_streamed_body_has_the_user_only_with_stream_with_context(make_app, collector):
    app, _ = login_app(make_app)
    client = browser(app)
    client.post("/login/7")
    for path in ("/stream", "/stream-plain"):
        response = client.get(path)
        response.get_data()
        response.close()
    with_context, plain = events(collector, app)
    assert with_context["properties"]["how"] == "stream_with_context"
    assert with_context["userId"] == "7"
    # Without the request context nobody can say who is logged in, but the rest is known.
    assert plain["properties"]["how"] == "plain"
    assert "userId" not in plain
    assert plain["anonymousId"] == "a1"
    assert plain["context"]["page"]["path"] == "/stream-plain"


# -- identify on login --------------------------------------------------------------------------


def test_identify_on_login_sends_the_user_with_traits_and_the_anonymous_id(make_app, collector):
    app, _ = login_app(make_app, ANALYTICS_IDENTIFY_ON_LOGIN=True)
    client = browser(app, "visitor-1")
    client.post("/login/7", headers={"User-Agent": "ua"})
    browser(app, "visitor-2").post("/login/8")
    ada, anonymous_trait_less = events(collector, app, type="identify")
    assert ada["userId"] == "7"
    assert ada["anonymousId"] == "visitor-1"
    assert ada["traits"] == {"email": "ada@example.com", "name": "Ada Lovelace"}
    assert ada["context"]["page"]["path"] == "/login/7"
    assert ada["context"]["userAgent"] == "ua"
    assert anonymous_trait_less["userId"] == "8"
    assert anonymous_trait_less["traits"] == {}


def test_no_identify_on_login_by_default(make_app, collector):
    app, _ = login_app(make_app)
    browser(app).post("/login/7")
    assert events(collector, app) == []


def test_identify_on_login_is_per_app(make_app, collector):
    quiet, _ = login_app(make_app, "quiet", ANALYTICS_WRITE_KEY="quiet-key")
    loud, _ = login_app(
        make_app, "loud", ANALYTICS_WRITE_KEY="loud-key", ANALYTICS_IDENTIFY_ON_LOGIN=True
    )
    browser(quiet).post("/login/7")
    browser(loud).post("/login/8")
    flush(quiet)
    (event,) = events(collector, loud)
    assert event["type"] == "identify" and event["userId"] == "8"
    assert event["_write_key_fingerprint"] == fingerprint("loud-key")


def test_identify_on_login_needs_flask_login(monkeypatch):
    monkeypatch.setattr(analytics_flask.login, "flask_login", None)
    app = Flask("no-login")
    app.config.update(ANALYTICS_SEND=False, ANALYTICS_IDENTIFY_ON_LOGIN=True)
    with pytest.raises(ConfigError, match="ANALYTICS_IDENTIFY_ON_LOGIN.*Flask-Login"):
        Analytics(app)
