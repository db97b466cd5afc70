"""ANALYTICS_PAGEVIEWS: a page call for every successful HTML response, nothing else."""

import pytest
from flask import Response, abort, jsonify, redirect, stream_with_context
from flask_login import LoginManager, UserMixin, login_user

import analytics_core

from .flask_apps.factory import AppFactory, ajs_cookie, flush


class User(UserMixin):
    def __init__(self, user_id):
        self.id = user_id


@pytest.fixture
def make_app(collector):
    factory = AppFactory(collector.url)
    yield factory
    factory.close()


def site(make_app, **config):
    app = make_app(SECRET_KEY="test-secret", **config)
    manager = LoginManager(app)
    manager.user_loader(User)

    @app.get("/")
    def home():
        return "<h1>Home</h1>"

    @app.post("/orders")
    def order():
        analytics_core.track(event="Order Completed")
        return "<p>Thanks</p>", 201

    @app.get("/api")
    def api():
        return jsonify(ok=True)

    @app.get("/away")
    def away():
        return redirect("/")

    @app.get("/missing")
    def missing():
        abort(404)

    @app.get("/broken")
    def broken():
        raise RuntimeError("broken")

    @app.get("/streamed")
    def streamed():
        return Response(stream_with_context(iter(["<p>", "streamed", "</p>"])))

    @app.get("/login")
    def login():
        login_user(User("42"))
        return "<p>Welcome</p>"

    return app


def page_events(collector, app):
    flush(app)
    return collector.events(limit=0, order="asc", type="page")


def test_a_page_call_for_each_successful_html_response(make_app, collector):
    app = site(make_app, ANALYTICS_PAGEVIEWS=True)
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    for path in ("/?ref=mail", "/api", "/away", "/missing", "/broken", "/streamed"):
        client.get(path).close()
    client.post("/orders")
    home, streamed, order = page_events(collector, app)
    assert home["name"] == "home"  # the endpoint
    assert home["anonymousId"] == "a1"
    assert home["properties"] == {
        "path": "/",
        "search": "?ref=mail",
        "url": "http://localhost/?ref=mail",
    }
    assert home["context"]["page"]["path"] == "/"
    assert streamed["name"] == "streamed"
    assert order["name"] == "order"
    # The page view and the event of the same request carry the same context.
    (tracked,) = collector.events(limit=0, type="track")
    assert tracked["context"]["page"] == order["context"]["page"]


def test_the_page_view_of_a_login_is_the_users(make_app, collector):
    app = site(make_app, ANALYTICS_PAGEVIEWS=True)
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/login")
    (page,) = page_events(collector, app)
    assert page["userId"] == "42"  # logged in during the request, before the response
    assert page["anonymousId"] == "a1"


def test_no_page_view_without_any_id(make_app, collector):
    app = site(make_app, ANALYTICS_PAGEVIEWS=True)
    assert app.test_client().get("/").status_code == 200
    assert page_events(collector, app) == []


def test_no_page_views_by_default(make_app, collector):
    app = site(make_app)
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/")
    assert page_events(collector, app) == []
