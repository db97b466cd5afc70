"""analytics_asgi ``pageviews=True``: one ``page`` call per successful HTML response, no other."""

import asyncio
import logging

import pytest
from analytics_asgi import SegmentMiddleware
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute

import analytics_core

from .asgi_apps.support import Clients, TestClient, call_http, http_scope, visitor_headers

KEY = "asgi-pageviews-key"


@pytest.fixture
def clients(collector):
    with Clients(collector.url) as made:
        yield made


def html(request):
    return Response("<h1>hi</h1>", media_type=request.query_params.get("type", "text/html"))


def json_page(request):
    return JSONResponse({"html": False})


def missing(request):
    return Response("<h1>gone</h1>", status_code=404, media_type="text/html")


def moved(request):
    return RedirectResponse("/home")


async def socket(websocket):
    await websocket.accept()
    await websocket.close()


class HeaderUser(AuthenticationBackend):
    async def authenticate(self, conn):
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


def site(**options) -> Starlette:
    app = Starlette(
        routes=[
            Route("/home", html, name="home"),
            Route("/products/{id}", html),  # unnamed: the endpoint's name
            Route("/api", json_page),
            Route("/missing", missing),
            Route("/moved", moved),
            WebSocketRoute("/ws", socket),
        ]
    )
    app.add_middleware(AuthenticationMiddleware, backend=HeaderUser())
    app.add_middleware(SegmentMiddleware, **options)
    return app


def test_html_2xx_responses_are_page_views(collector, clients):
    client = clients.make(KEY)
    with TestClient(site(client=client, pageviews=True), follow_redirects=False) as http:
        visitor = visitor_headers("anon-p")
        http.get("/home?ref=mail", headers=visitor)
        http.get("/products/3", headers=visitor)
        http.get("/home", params={"type": "text/html; charset=utf-8"}, headers=visitor)
        http.get("/home", params={"type": "TEXT/HTML"}, headers=visitor)
        # Not page views: other types, errors, redirects, websockets.
        http.get("/home", params={"type": "text/htmlx"}, headers=visitor)
        http.get("/home", params={"type": "application/xhtml+xml"}, headers=visitor)
        http.get("/api", headers=visitor)
        http.get("/missing", headers=visitor)
        assert http.get("/moved", headers=visitor).status_code == 307
        with http.websocket_connect("/ws", headers=visitor):
            pass

    events = collector.wait_for(4, write_key=KEY)
    assert len(events) == 4
    assert {e["type"] for e in events} == {"page"}
    assert [e["name"] for e in events] == ["home", "html", "home", "home"]
    first = events[0]
    assert first["anonymousId"] == "anon-p"
    assert first["properties"] == {
        "path": "/home",
        "search": "?ref=mail",
        "url": "http://testserver/home?ref=mail",
    }
    assert first["context"]["page"] == first["properties"]
    assert first["context"]["userAgent"] == visitor["User-Agent"]


def test_page_views_name_the_authenticated_user(collector, clients):
    # The user is only known once AuthenticationMiddleware (inside ours) ran: the page view is
    # recorded at the response's start, when it has.
    client = clients.make(KEY)
    with TestClient(site(client=client, pageviews=True)) as http:
        http.get("/home", headers={"X-User": "ada"})  # no cookie: the user id alone
        http.get("/home")  # nobody: Segment needs an id, so no page view (and no error)

    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["userId"] == "ada"
    assert "anonymousId" not in event


def test_no_page_views_unless_asked(collector, clients):
    client = clients.make(KEY)
    with TestClient(site(client=client)) as http:
        assert http.get("/home", headers=visitor_headers("anon-q")).status_code == 200
    assert collector.events(write_key=KEY) == []


def test_fastapi_and_raw_apps_and_the_default_client(collector):
    analytics_core.write_key = KEY
    analytics_core.host = collector.url
    api = FastAPI()

    @api.get("/dashboard", response_class=HTMLResponse)
    async def dashboard():
        return "<p>dash</p>"

    api.add_middleware(SegmentMiddleware, pageviews=True)
    with TestClient(api) as http:
        http.get("/dashboard", headers=visitor_headers("anon-f"))

    async def raw(scope, receive, send):
        headers = [(b"content-type", b"text/html")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"<p>raw</p>"})

    cookie = [(b"cookie", b"ajs_anonymous_id=anon-raw"), (b"host", b"raw.test")]
    asyncio.run(call_http(SegmentMiddleware(raw, pageviews=True), http_scope("/r", headers=cookie)))
    analytics_core.flush()

    events = collector.wait_for(2, write_key=KEY)
    assert [(e["name"], e["anonymousId"]) for e in events] == [
        ("dashboard", "anon-f"),
        ("/r", "anon-raw"),  # no route in a raw app's scope: the path names the page
    ]


def test_a_failing_page_call_never_breaks_the_response(clients, caplog, monkeypatch):
    client = clients.make(KEY)

    def broken(*args, **kwargs):
        raise RuntimeError("page failed")

    monkeypatch.setattr(client, "page", broken)
    with (
        TestClient(site(client=client, pageviews=True)) as http,
        caplog.at_level(logging.ERROR, logger="segment"),
    ):
        response = http.get("/home", headers=visitor_headers("anon-z"))
    assert response.status_code == 200
    assert response.text == "<h1>hi</h1>"
    assert "recording the page view failed" in caplog.text
