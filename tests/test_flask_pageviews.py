"""ANALYTICS_PAGEVIEWS: a page call for every page a browser loads, and nothing else.

What counts is analytics_core.web.pageviews' rule (an HTML document, answered 2xx to a
browser's GET, not excluded, not fetched by a script or a crawler); these tests hold real Flask
apps to it.
Most read the per-test capture (``analytics_events``); the first visit is delivered for real.
"""

import gzip
import re

import pytest
from analytics_flask.state import state_of
from flask import Response, abort, jsonify, redirect, stream_with_context
from flask_login import LoginManager, UserMixin, login_user

import analytics_core

from .flask_apps.factory import AppFactory, ajs_cookie, flush

DOCUMENT = "<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
# A phone, not a crawler, though its model name contains "bot".
CUBOT = (
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


class User(UserMixin):
    def __init__(self, user_id):
        self.id = user_id


def page(title="Page", body=""):
    return DOCUMENT.format(title=title, body=body)


@pytest.fixture
def make_app(collector):
    """Apps that deliver to the real collector."""
    factory = AppFactory(collector.url)
    yield factory
    factory.close()


@pytest.fixture
def captured_apps():
    """Apps whose messages only go to the test's capture (the host is never contacted)."""
    factory = AppFactory("http://127.0.0.1:9")
    yield factory
    factory.close()


def site(make_app, tmp_path=None, **config):
    """A small site: documents, fragments, an API, the usual non-pages."""
    flask_options = None
    if tmp_path is not None:
        # The app's own static folder, at its own URL, with an HTML file in it.
        (tmp_path / "offline.html").write_text(page("Offline"))
        flask_options = {"static_folder": str(tmp_path), "static_url_path": "/assets"}
    app = make_app(flask_options=flask_options, SECRET_KEY="test-secret", **config)
    manager = LoginManager(app)
    manager.user_loader(User)

    @app.get("/")
    def home():
        return page("Home &amp; garden", "<h1>Home</h1>")

    @app.get("/fragment")
    def fragment():
        return "<h1>Only a fragment</h1>"  # an htmx swap, a partial: text/html, no document

    @app.get("/plain")
    def plain():
        return "ok"

    @app.get("/post/<int:id>/update")
    def update(id):
        return page(f"Edit {id}")

    @app.get("/docs/<path:subpath>")
    def docs(subpath):
        return page("Docs")

    @app.get("/health")
    @app.get("/health/live")
    @app.get("/healthy")
    @app.get("/static/legacy")
    @app.get("/private/area")
    @app.get("/post/3/edit")
    def other():
        return page("Other")

    @app.post("/orders")
    def order():
        analytics_core.track(event="Order Completed")
        return page("Thanks"), 201

    @app.get("/created")
    def created():
        return page("Created"), 201

    @app.get("/empty")
    def empty():
        return "", 204

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
        return page("Welcome")

    return app


def visitor(app, anonymous_id="a1"):
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie(anonymous_id))
    return client


def pages(events):
    return events.of_type("page")


# -- what is a page ----------------------------------------------------------------------------


def test_a_document_is_a_page_view_named_after_its_url_rule_with_its_title(
    captured_apps, analytics_events
):
    app = site(captured_apps, ANALYTICS_PAGEVIEWS=True)
    client = visitor(app)
    client.get("/?ref=mail", headers={"User-Agent": CHROME})
    client.get("/post/17/update")
    (home, update) = pages(analytics_events)
    assert home["name"] == "/"
    assert home["anonymousId"] == "a1"
    assert home["properties"] == {
        "path": "/",
        "search": "?ref=mail",
        "url": "http://localhost/?ref=mail",
        "title": "Home & garden",  # unescaped, as document.title is
    }
    assert home["context"]["page"]["path"] == "/"
    assert home["context"]["userAgent"] == CHROME
    # The rule, not the path: every post's edit page is one page in Segment.
    assert update["name"] == "/post/<int:id>/update"
    assert update["properties"]["path"] == "/post/17/update"
    assert update["properties"]["title"] == "Edit 17"


def test_a_catch_all_rule_is_named_after_the_path(captured_apps, analytics_events):
    app = site(captured_apps, ANALYTICS_PAGEVIEWS=True)
    client = visitor(app)
    client.get("/docs/guide/install")
    client.get("/docs/api")
    # One name for every page under <path:...> would tell nothing apart.
    assert [view["name"] for view in pages(analytics_events)] == [
        "/docs/guide/install",
        "/docs/api",
    ]


def test_plain_strings_fragments_and_non_pages_are_not_page_views(captured_apps, analytics_events):
    app = site(captured_apps, ANALYTICS_PAGEVIEWS=True)
    client = visitor(app)
    for path in ("/plain", "/fragment", "/api", "/away", "/missing", "/broken", "/empty"):
        client.get(path).close()
    client.head("/")
    client.post("/orders")  # a document, but a POST: the event is what matters there
    assert pages(analytics_events) == []
    analytics_events.assert_tracked("Order Completed", count=1)
    # A 201 document fetched by GET is a page.
    client.get("/created")
    assert [view["name"] for view in pages(analytics_events)] == ["/created"]


def test_a_streamed_body_counts_without_a_title(captured_apps, analytics_events):
    app = site(captured_apps, ANALYTICS_PAGEVIEWS=True)
    response = visitor(app).get("/streamed")
    assert response.get_data() == b"<p>streamed</p>"  # the body was not consumed by the sniff
    response.close()
    (view,) = pages(analytics_events)
    assert view["name"] == "/streamed"
    assert "title" not in view["properties"]


def test_a_compressed_document_is_still_a_page_view(captured_apps, analytics_events):
    # Flask-Compress set up after the extension compresses in an after_request hook of its own.
    app = site(captured_apps, ANALYTICS_PAGEVIEWS=True)

    @app.after_request
    def compress(response):
        if response.mimetype == "text/html" and not response.direct_passthrough:
            response.set_data(gzip.compress(response.get_data()))
            response.headers["Content-Encoding"] = "gzip"
        return response

    client = visitor(app)
    assert gzip.decompress(client.get("/").get_data()).startswith(b"<!doctype html>")
    client.get("/plain")
    (view,) = pages(analytics_events)
    assert view["name"] == "/"
    assert view["properties"]["title"] == "Home & garden"


# -- who is loading it -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "is_page"),
    [
        pytest.param({"User-Agent": CHROME}, True, id="a-browser"),
        pytest.param({"User-Agent": CUBOT}, True, id="a-phone-called-CUBOT"),
        pytest.param({}, True, id="no-user-agent"),
        pytest.param({"Sec-Fetch-Dest": "document"}, True, id="fetch-dest-document"),
        pytest.param({"Sec-Fetch-Dest": "iframe"}, True, id="fetch-dest-iframe"),
        pytest.param({"User-Agent": GOOGLEBOT}, False, id="googlebot"),
        pytest.param(
            {"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"},
            False,
            id="slackbot",
        ),
        pytest.param({"HX-Request": "true"}, False, id="htmx"),
        pytest.param({"X-Requested-With": "XMLHttpRequest"}, False, id="xhr"),
        pytest.param({"Sec-Fetch-Dest": "empty"}, False, id="fetch"),
        pytest.param({"Sec-Purpose": "prefetch;prerender"}, False, id="sec-purpose-prefetch"),
        pytest.param({"Purpose": "prefetch"}, False, id="purpose-prefetch"),
        pytest.param({"Accept": "application/json"}, False, id="accept-json"),
        pytest.param({"Accept": "text/html,application/xhtml+xml;q=0.9"}, True, id="accept-html"),
    ],
)
def test_only_a_browser_loading_the_document_makes_a_page_view(
    captured_apps, analytics_events, headers, is_page
):
    app = site(captured_apps, ANALYTICS_PAGEVIEWS=True)
    assert visitor(app).get("/", headers=headers).status_code == 200
    assert len(pages(analytics_events)) == (1 if is_page else 0)


# -- excluded paths ----------------------------------------------------------------------------


def test_the_default_exclusions_and_the_apps_static_path(captured_apps, analytics_events, tmp_path):
    app = site(captured_apps, tmp_path, ANALYTICS_PAGEVIEWS=True)
    client = visitor(app)
    response = client.get("/assets/offline.html")  # the app's static_url_path, an HTML file
    assert response.status_code == 200 and b"<title>Offline</title>" in response.get_data()
    response.close()
    for path in ("/health", "/health/live", "/static/legacy"):
        assert client.get(path).status_code == 200
    assert pages(analytics_events) == []
    # "/health" covers /health and below, not every path that starts with the same letters.
    client.get("/healthy")
    assert [view["name"] for view in pages(analytics_events)] == ["/healthy"]


def test_exclusions_hold_under_a_mount_point(captured_apps, analytics_events):
    # Mounted at /shop (SCRIPT_NAME, as DispatcherMiddleware or a proxy sets it), the app's
    # /health is still its health check.
    app = site(captured_apps, ANALYTICS_PAGEVIEWS=True)
    client = visitor(app)
    client.get("/health", base_url="http://localhost/shop/")
    client.get("/post/5/update", base_url="http://localhost/shop/")
    (view,) = pages(analytics_events)
    assert view["name"] == "/shop/post/<int:id>/update"
    assert view["properties"]["path"] == "/shop/post/5/update"


def test_a_custom_exclude_list_replaces_the_defaults(captured_apps, analytics_events):
    app = site(
        captured_apps,
        ANALYTICS_PAGEVIEWS=True,
        ANALYTICS_PAGEVIEWS_EXCLUDE=["/private", re.compile(r"^/post/\d+/edit$")],
    )
    client = visitor(app)
    for path in ("/private/area", "/post/3/edit", "/health", "/static/legacy"):
        assert client.get(path).status_code == 200
    # The list is the whole list: /health and /static/ are pages again.
    assert [view["properties"]["path"] for view in pages(analytics_events)] == [
        "/health",
        "/static/legacy",
    ]


# -- whose page view ---------------------------------------------------------------------------


def test_a_first_visit_gets_a_page_view_with_a_minted_id_and_the_cookie(make_app, collector):
    app = site(make_app, ANALYTICS_PAGEVIEWS=True)
    client = app.test_client()  # no cookie, no login: a first visit, a visitor without JS
    response = client.get("/")
    assert response.status_code == 200
    (set_cookie,) = response.headers.getlist("Set-Cookie")
    flush(app)
    (view,) = collector.events(limit=0, type="page")
    anonymous_id = view["anonymousId"]
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", anonymous_id
    )
    assert set_cookie.startswith(f"ajs_anonymous_id=%22{anonymous_id}%22;")
    assert "userId" not in view
    # The next page of the visit is the same visitor, and gets no new cookie.
    second = client.get("/post/1/update")
    assert second.headers.getlist("Set-Cookie") == []
    flush(app)
    assert {event["anonymousId"] for event in collector.events(limit=0)} == {anonymous_id}


def test_the_page_view_of_a_login_is_the_users(captured_apps, analytics_events):
    app = site(captured_apps, ANALYTICS_PAGEVIEWS=True)
    visitor(app).get("/login")
    (view,) = pages(analytics_events)
    assert view["userId"] == "42"  # logged in during the request, before the response
    assert view["anonymousId"] == "a1"


def test_no_page_views_by_default(captured_apps, analytics_events):
    app = site(captured_apps)
    response = app.test_client().get("/")
    assert response.status_code == 200
    analytics_events.assert_nothing_sent()
    assert response.headers.getlist("Set-Cookie") == []  # nothing needed an id: no cookie
    assert state_of(app).pageviews is False
