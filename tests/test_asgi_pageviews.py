"""analytics_asgi ``pageviews=True``: a ``page`` call for every document a browser loads, no other.

Real Starlette and FastAPI apps run in process (Starlette's TestClient; ``call_http`` where the
exact ASGI messages matter). The page views are read from the ``analytics_events`` capture, and
in the last tests from the real collector. The rules themselves are
:mod:`analytics_core.web.pageviews`'s; these tests check that the middleware applies them to what
an ASGI app really sends.
"""

import asyncio
import logging
import re
import uuid

import pytest
from analytics_asgi import SegmentMiddleware
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse as FastAPIHTMLResponse
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route, WebSocketRoute

import analytics_core
from analytics_core.web.pageviews import DEFAULT_EXCLUDE

from .asgi_apps.support import Clients, TestClient, ajs_cookie, call_http, http_scope

KEY = "asgi-pageviews-key"
# A browser, and one that already has analytics.js's cookie (so nothing is minted).
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
VISITOR = {**BROWSER, "Cookie": ajs_cookie("anon-visitor")}


def document(title: str = "Tea shop") -> str:
    return f"<!doctype html><html><head><title>{title}</title></head><body>{title}</body></html>"


DOC = document()


def names(events) -> list:
    """What the page views were called, in order."""
    return [event["name"] for event in events.of_type("page")]


def serve(text: str):
    """An endpoint answering ``text`` as HTML."""

    def endpoint(request):
        return HTMLResponse(text)

    return endpoint


def doc_page(request):
    return HTMLResponse(DOC)


async def socket(websocket):
    await websocket.accept()
    await websocket.close()


# -- what counts ----------------------------------------------------------------------------

MARKED_DOCUMENTS = {
    # Each way a document starts (case-insensitive), and what may come before it.
    "doctype": "<!DOCTYPE html>\n<p>x</p>",
    "html": "<html lang='en'><p>x</p></html>",
    "head": "<head><meta charset='utf-8'></head><p>x</p>",
    "body": "<body><p>x</p></body>",
    "title": "<title>Only a title</title><p>x</p>",
    "bom-blanks-comment": "\ufeff\n\n  <!-- rendered by jinja -->\n<html><p>x</p></html>",
}


def marked(request):
    return HTMLResponse(MARKED_DOCUMENTS[request.path_params["kind"]])


def typed(request):
    return Response(DOC, media_type=request.query_params["type"])


def status(request):
    code = int(request.path_params["code"])
    return HTMLResponse(DOC if code != 204 else None, status_code=code)


def test_documents_are_page_views_and_other_answers_are_not(analytics_events):
    app = Starlette(
        routes=[
            Route("/", doc_page, methods=["GET", "POST"]),
            Route("/marked/{kind}", marked),
            Route("/typed", typed),
            Route("/status/{code:int}", status),
            Route("/fragment", serve("<h1>Order sent</h1><p>Thanks!</p>")),
            Route("/plain-string", serve("ok")),
            # A document marker only after the first KB is not looked for.
            Route("/late-marker", serve(" " * 1100 + "<html></html>")),
            Route("/json", lambda request: JSONResponse({"html": "<html>"})),
            Route("/text", lambda request: PlainTextResponse(DOC)),
            Route("/moved", lambda request: RedirectResponse("/")),
            WebSocketRoute("/ws", socket),
        ]
    )
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    with TestClient(app, follow_redirects=False) as http:
        for kind in MARKED_DOCUMENTS:
            assert http.get(f"/marked/{kind}", headers=VISITOR).status_code == 200
        for media_type in ("text/html; charset=utf-8", "TEXT/HTML", "application/xhtml+xml"):
            http.get("/typed", params={"type": media_type}, headers=VISITOR)
        http.get("/status/201", headers=VISITOR)
        counted = len(analytics_events.of_type("page"))

        # None of these is a browser loading a document.
        for media_type in ("text/htmlx", "application/json", "text/plain"):
            http.get("/typed", params={"type": media_type}, headers=VISITOR)
        for code in (204, 404, 500):
            http.get(f"/status/{code}", headers=VISITOR)
        for path in ("/fragment", "/plain-string", "/late-marker", "/json", "/text"):
            assert http.get(path, headers=VISITOR).status_code == 200
        assert http.get("/moved", headers=VISITOR).status_code == 307
        assert http.post("/", headers=VISITOR).text == DOC
        assert http.head("/", headers=VISITOR).status_code == 200
        with http.websocket_connect("/ws", headers=VISITOR):
            pass

    assert counted == len(MARKED_DOCUMENTS) + 4
    assert names(analytics_events) == ["/marked/{kind}"] * len(MARKED_DOCUMENTS) + [
        "/typed",
        "/typed",
        "/typed",
        "/status/{code:int}",
    ]
    assert {event["anonymousId"] for event in analytics_events} == {"anon-visitor"}


def test_no_page_views_unless_asked(analytics_events):
    app = Starlette(routes=[Route("/", doc_page)])
    app.add_middleware(SegmentMiddleware, write_key=KEY)
    with TestClient(app) as http:
        response = http.get("/", headers=BROWSER)
    assert response.text == DOC
    analytics_events.assert_nothing_sent()
    assert "set-cookie" not in response.headers  # nothing needed an id


# -- names, properties, title -----------------------------------------------------------------


async def raw_document(scope, receive, send):
    """A plain ASGI app: no router, so no route in the scope."""
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": DOC.encode()})


def fastapi_shop() -> FastAPI:
    api = FastAPI()
    orders = APIRouter()

    @api.get("/items/{item_id}", response_class=FastAPIHTMLResponse)
    async def item(item_id: int) -> str:
        return document(f"Item {item_id}")

    @orders.get("/orders/{order_id}", response_class=FastAPIHTMLResponse)
    def order(order_id: str) -> str:  # a sync endpoint, run in the threadpool
        return DOC

    api.include_router(orders, prefix="/shop")
    return api


class ForgetRoute:
    """As under Starlette before 1.7, whose routers leave no ``scope["route"]``: a Starlette
    route is taken out of the scope before the middleware outside sees the response (FastAPI's
    routes put themselves there on every version, so theirs stays)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def forgetting(message) -> None:
            if type(scope.get("route")).__module__.startswith("starlette."):
                del scope["route"]
            await send(message)

        await self.app(scope, receive, forgetting)


@pytest.mark.parametrize("route_in_scope", [True, False], ids=["scope-route", "no-scope-route"])
def test_pages_are_named_after_their_route_pattern(analytics_events, route_in_scope):
    app = Starlette(
        routes=[
            Route("/", doc_page, name="home"),  # the pattern, not the route's name
            Route("/products/{id:int}", doc_page),
            # A catch-all names every page the same: the path tells them apart.
            Route("/files/{rest:path}", doc_page),
            # A Mount's own part of the path belongs to the pattern.
            Mount("/blog", routes=[Route("/{slug}", doc_page)]),
            Mount("/api", app=fastapi_shop()),
            # A Mount of a plain ASGI app has no pattern below it: the path.
            Mount("/legacy", app=raw_document),
        ]
    )
    if not route_in_scope:
        app.add_middleware(ForgetRoute)  # added first: inside SegmentMiddleware
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    paths = [
        "/",
        "/products/7",
        "/files/a/b.html",
        "/files/c",
        "/blog/first-post",
        "/api/items/3",
        "/api/shop/orders/o-17",
        "/legacy/one",
        "/legacy/two",
    ]
    with TestClient(app) as http:
        for path in paths:
            assert http.get(path, headers=VISITOR).status_code == 200, path
    # The routes of a bare FastAPI app, and a raw app with no route at all.
    with TestClient(SegmentMiddleware(fastapi_shop(), write_key=KEY, pageviews=True)) as http:
        http.get("/items/4", headers=VISITOR)
    asyncio.run(call_http(SegmentMiddleware(raw_document, write_key=KEY, pageviews=True), scope()))

    assert names(analytics_events) == [
        "/",
        "/products/{id:int}",
        "/files/a/b.html",
        "/files/c",
        "/blog/{slug}",
        "/api/items/{item_id}",
        "/api/shop/orders/{order_id}",
        "/legacy/one",
        "/legacy/two",
        "/items/{item_id}",
        "/raw/page",
    ]
    assert [event["properties"]["path"] for event in analytics_events][:9] == paths


def scope(path: str = "/raw/page", **extra):
    """A raw request from a browser that has the analytics.js cookie."""
    headers = [(b"host", b"shop.test"), (b"user-agent", BROWSER["User-Agent"].encode())]
    headers.append((b"cookie", ajs_cookie("anon-visitor").encode()))
    return http_scope(path, headers=headers, **extra)


def titled(request):
    title = request.query_params.get("title")
    if title is None:
        return HTMLResponse("<!doctype html><html><body>untitled</body></html>")
    return HTMLResponse(f"<!doctype html><html><head><title>{title}</title></head></html>")


def test_properties_are_the_page_and_its_title(analytics_events):
    app = Starlette(routes=[Route("/tea/{name}", titled)])
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    referrer = "https://search.example/?q=tea"
    # title="\n  Sencha &amp; matcha\t| Tea shop \n", encoded in the URL itself: httpx before
    # 0.28 would encode params={...} with %20 for the blanks, httpx 0.28 and httpx2 with "+".
    search = "?title=%0A++Sencha+%26amp%3B+matcha%09%7C+Tea+shop+%0A&ref=mail"
    with TestClient(app, base_url="https://shop.test") as http:
        http.get(f"/tea/sencha{search}", headers={**VISITOR, "Referer": referrer})
        http.get("/tea/gyokuro", headers=VISITOR)

    titled_view, untitled_view = analytics_events.of_type("page")
    # What analytics.js reports: the page fields, and document.title (unescaped, blanks
    # collapsed as a browser shows it).
    assert titled_view["properties"] == {
        "path": "/tea/sencha",
        "search": search,
        "url": f"https://shop.test/tea/sencha{search}",
        "referrer": referrer,
        "title": "Sencha & matcha | Tea shop",
    }
    assert titled_view["name"] == "/tea/{name}"
    assert titled_view["context"]["page"] == {
        key: value for key, value in titled_view["properties"].items() if key != "title"
    }
    assert titled_view["context"]["userAgent"] == BROWSER["User-Agent"]
    assert "title" not in untitled_view["properties"]
    assert untitled_view["properties"]["path"] == "/tea/gyokuro"


# -- what is left out -------------------------------------------------------------------------


def test_the_default_exclusions(analytics_events):
    app = Starlette(routes=[Route("/{rest:path}", doc_page)])
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    excluded = [
        "/static/app.html",
        "/media/upload.html",
        "/favicon.ico",
        "/robots.txt",
        "/health",
        "/health/live",
        "/healthz",
        "/healthcheck",
        "/ready",
        "/readyz",
        "/livez",
        "/ping",
        "/metrics",
        "/admin/",
        "/admin/users/3",
    ]
    # A rule covers its path and what is below it, not every path that starts the same.
    counted = ["/healthy", "/pingpong", "/metrics-explained", "/staticky", "/readyness"]
    with TestClient(app) as http:
        for path in excluded + counted:
            assert http.get(path, headers=VISITOR).text == DOC
    assert [event["properties"]["path"] for event in analytics_events] == counted


def test_fastapis_own_documentation_pages_are_not_page_views(analytics_events):
    api = FastAPI()

    @api.get("/", response_class=FastAPIHTMLResponse)
    async def home() -> str:
        return DOC

    # The app's own page that happens to be called like FastAPI's docs of another app.
    custom = FastAPI(docs_url="/api-docs", redoc_url=None)
    custom.get("/docs", response_class=FastAPIHTMLResponse)(home)
    custom.get("/", response_class=FastAPIHTMLResponse)(home)

    for app in (api, custom):
        app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    with TestClient(api) as http:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect", "/openapi.json"):
            response = http.get(path, headers=VISITOR)
            assert response.status_code == 200, path
        http.get("/", headers=VISITOR)
    # Behind a proxy that strips /api (uvicorn --root-path /api): the docs are /api/docs.
    with TestClient(api, root_path="/api") as http:
        assert "swagger-ui" in http.get("/api/docs", headers=VISITOR).text
        http.get("/api/", headers=VISITOR)
    with TestClient(custom) as http:
        assert "swagger-ui" in http.get("/api-docs", headers=VISITOR).text
        assert http.get("/redoc", headers=VISITOR).status_code == 404
        http.get("/docs", headers=VISITOR)
        http.get("/", headers=VISITOR)
    # A FastAPI app mounted in a Starlette one: its docs are below the mount.
    mounted = FastAPI()
    mounted.get("/", response_class=FastAPIHTMLResponse)(home)
    outer = Starlette(routes=[Mount("/v1", app=mounted)])
    outer.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    with TestClient(outer) as http:
        assert "swagger-ui" in http.get("/v1/docs", headers=VISITOR).text
        http.get("/v1/", headers=VISITOR)

    assert [event["properties"]["path"] for event in analytics_events] == [
        "/",
        "/api/",
        "/docs",  # counted: this app's docs are at /api-docs
        "/",
        "/v1/",
    ]


@pytest.mark.parametrize(
    ("headers", "counted"),
    [
        pytest.param({}, True, id="a-browser"),
        pytest.param({"Sec-Fetch-Dest": "document"}, True, id="sec-fetch-dest-document"),
        pytest.param({"Sec-Fetch-Dest": "iframe"}, True, id="sec-fetch-dest-iframe"),
        pytest.param({"HX-Request": "true"}, False, id="htmx"),
        pytest.param({"X-Requested-With": "XMLHttpRequest"}, False, id="xhr"),
        pytest.param({"Sec-Fetch-Dest": "empty"}, False, id="fetch"),
        pytest.param({"Sec-Fetch-Dest": "script"}, False, id="sec-fetch-dest-script"),
        pytest.param({"Sec-Purpose": "prefetch"}, False, id="sec-purpose-prefetch"),
        pytest.param({"Sec-Purpose": "prefetch;prerender"}, False, id="prerender"),
        pytest.param({"Purpose": "prefetch"}, False, id="purpose-prefetch"),
        pytest.param({"Accept": "application/json"}, False, id="accept-json"),
        pytest.param(
            {
                "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
            },
            False,
            id="googlebot",
        ),
        pytest.param(
            {
                "User-Agent": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
            },
            False,
            id="bingbot",
        ),
        pytest.param(
            {"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"},
            False,
            id="slackbot",
        ),
        pytest.param({"User-Agent": "Googlebot/2.1"}, False, id="bare-googlebot"),
        # A phone called CUBOT: "bot" alone does not make a crawler.
        pytest.param(
            {
                "User-Agent": "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
            },
            True,
            id="cubot-x30-phone",
        ),
        pytest.param({"User-Agent": ""}, True, id="no-user-agent"),
        # Found by a trial: the message leaves it out, and it counted as "no user agent".
        pytest.param({"User-Agent": "Mozilla/5.0 " + "A" * 10_000}, False, id="10-kb-user-agent"),
        pytest.param({"User-Agent": "Mozilla/5.0 " + "A" * 4084}, True, id="4096-characters"),
    ],
)
def test_script_fetches_prefetches_and_crawlers_are_not_page_views(
    analytics_events, headers, counted
):
    app = Starlette(routes=[Route("/", doc_page)])
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    with TestClient(app) as http:
        assert http.get("/", headers={**VISITOR, **headers}).text == DOC
    assert len(analytics_events.of_type("page")) == (1 if counted else 0)


def test_pageviews_exclude_replaces_the_defaults(analytics_events):
    app = FastAPI()

    @app.get("/{rest:path}", response_class=FastAPIHTMLResponse)
    async def any_page() -> str:
        return DOC

    rules = ["/private", re.compile(r"^/drafts/\d+$")]
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True, pageviews_exclude=rules)
    excluded = ["/private", "/private/notes", "/drafts/12"]
    # The defaults no longer apply; FastAPI's own documentation pages stay out regardless.
    counted = ["/health", "/static/x.html", "/privateer", "/drafts/new", "/drafts/12/edit"]
    with TestClient(app) as http:
        for path in excluded + counted:
            assert http.get(path, headers=VISITOR).status_code == 200, path
        assert "swagger-ui" in http.get("/docs", headers=VISITOR).text
    assert [event["properties"]["path"] for event in analytics_events] == counted
    assert "/health" in DEFAULT_EXCLUDE  # so the second list really differs from the default


# -- streamed and file bodies -----------------------------------------------------------------


def test_streamed_bodies_count_and_keep_their_title(analytics_events):
    def chunks(first: str):
        def endpoint(request):
            async def body():
                yield first
                yield "<body>"
                yield "streamed</body></html>"

            return StreamingResponse(body(), media_type="text/html")

        return endpoint

    app = Starlette(
        routes=[
            Route("/report", chunks("<!doctype html><title>Report</title>")),
            # A template that yields a blank line first: the stream still counts.
            Route("/blank-first", chunks("\n")),
        ]
    )
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    with TestClient(app) as http:
        report = http.get("/report", headers=BROWSER)  # a first visit: no cookie yet
        blank = http.get("/blank-first", headers=VISITOR)
    assert report.text == "<!doctype html><title>Report</title><body>streamed</body></html>"
    assert blank.text == "\n<body>streamed</body></html>"
    report_view, blank_view = analytics_events.of_type("page")
    assert report_view["properties"]["title"] == "Report"
    assert report_view["name"] == "/report"
    # The start waited for the first chunk, so the id the page view minted is in its cookie.
    minted = report_view["anonymousId"]
    assert report.headers["set-cookie"].startswith(f"ajs_anonymous_id=%22{minted}%22;")
    assert blank_view["name"] == "/blank-first"
    assert "title" not in blank_view["properties"]


def test_file_responses(analytics_events, tmp_path):
    (tmp_path / "about.html").write_text(document("About us"))
    (tmp_path / "snippet.html").write_text("<div class='card'>a partial</div>")
    # More than FileResponse's 64 KB chunk: sent as a stream of chunks.
    (tmp_path / "manual.html").write_text(document("Manual") + "<p>x</p>" * 10_000)

    def file(request):
        return FileResponse(tmp_path / request.path_params["name"])

    app = Starlette(routes=[Route("/files/{name}", file)])
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    with TestClient(app) as http:
        for name in ("about.html", "snippet.html", "manual.html"):
            response = http.get(f"/files/{name}", headers=VISITOR)
            assert response.content == (tmp_path / name).read_bytes()

    # A server that sends files by path (the http.response.pathsend extension): the body is
    # never at hand, and the page still counts.
    async def by_path(scope, receive, send):
        await FileResponse(tmp_path / "about.html")(scope, receive, send)

    middleware = SegmentMiddleware(by_path, write_key=KEY, pageviews=True)
    sent = asyncio.run(call_http(middleware, scope(extensions={"http.response.pathsend": {}})))
    assert [message["type"] for message in sent] == [
        "http.response.start",
        "http.response.pathsend",
    ]

    views = analytics_events.of_type("page")
    assert [view["properties"].get("title") for view in views] == ["About us", "Manual", None]
    assert [view["properties"]["path"] for view in views] == [
        "/files/about.html",
        "/files/manual.html",
        "/raw/page",
    ]


# -- the held response start ------------------------------------------------------------------


class RawApp:
    """A plain ASGI app that sends ``messages`` and then raises ``error``, if given (a class,
    so Starlette's Route takes it for an ASGI app, not a request -> response function)."""

    def __init__(self, *messages, error=None):
        self.messages, self.error = messages, error

    async def __call__(self, scope, receive, send):
        for message in self.messages:
            await send(dict(message))
        if self.error is not None:
            raise self.error


START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"set-cookie", b"session=s1; HttpOnly"),
        (b"x-app", b"kept"),
    ],
}
TRAILING_START = {**START, "trailers": True}


def body(text: bytes, more: bool = False) -> dict:
    return {"type": "http.response.body", "body": text, "more_body": more}


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param([START, body(DOC.encode())], id="one-body"),
        pytest.param(
            [
                START,
                body(b"<!doctype html>", True),
                body(b"", True),
                body(b"<p>x</p>", True),
                body(b""),
            ],
            id="chunks",
        ),
        pytest.param(
            [
                TRAILING_START,
                body(DOC.encode()),
                {"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]},
            ],
            id="trailers",
        ),
        # The app ends after its start: the server must still see it.
        pytest.param([START], id="no-body"),
    ],
)
def test_the_held_start_reaches_the_server_as_the_app_sent_it(analytics_events, messages):
    app = RawApp(*messages)
    bare = asyncio.run(call_http(app, scope()))
    wrapped = asyncio.run(call_http(SegmentMiddleware(app, write_key=KEY, pageviews=True), scope()))
    assert wrapped == bare == messages
    # A page view once a body showed a document; none for a start without a body.
    assert len(analytics_events.of_type("page")) == (1 if len(messages) > 1 else 0)


def test_an_app_raising_after_its_start_is_seen_by_the_server_as_without_the_middleware(
    analytics_events,
):
    app = RawApp(START, error=RuntimeError("template failed"))
    wrapped = SegmentMiddleware(app, write_key=KEY, pageviews=True)
    for candidate in (app, wrapped):
        sent = []

        async def run(candidate=candidate, sent=sent):
            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message):
                sent.append(message)

            await candidate(scope(), receive, send)

        with pytest.raises(RuntimeError, match="template failed"):
            asyncio.run(run())
        # The server saw the start, so it closes the connection rather than answer a 500.
        assert sent == [START]

    # Inside Starlette its ServerErrorMiddleware decides from the same start: the client gets
    # what the app started, with the middleware or without it.
    def starlette(with_segment: bool) -> Starlette:
        site = Starlette(routes=[Route("/", RawApp(START, error=RuntimeError("late")))])
        if with_segment:
            site.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
        return site

    answers = []
    for with_segment in (False, True):
        with TestClient(starlette(with_segment), raise_server_exceptions=False) as http:
            response = http.get("/", headers=VISITOR)
            answers.append((response.status_code, response.headers.get("x-app")))
    assert answers == [(200, "kept"), (200, "kept")]
    analytics_events.assert_nothing_sent()


def test_a_first_visit_gets_a_minted_id_and_its_cookie_in_the_same_response(analytics_events):
    app = Starlette(routes=[Route("/", doc_page)])
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    with TestClient(app) as http:  # a cookie jar, like a browser
        first = http.get("/", headers=BROWSER)
        second = http.get("/", headers=BROWSER)

    first_view, second_view = analytics_events.of_type("page")
    minted = first_view["anonymousId"]
    assert str(uuid.UUID(minted)) == minted
    assert "userId" not in first_view
    assert first.text == DOC
    assert first.headers["set-cookie"].startswith(f"ajs_anonymous_id=%22{minted}%22;")
    # The browser sent it back: the same visitor, and no new cookie.
    assert second_view["anonymousId"] == minted
    assert "set-cookie" not in second.headers


class HeaderUser(AuthenticationBackend):
    """Starlette authentication from a header, inside the Segment middleware."""

    async def authenticate(self, conn):
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


def test_page_views_name_the_authenticated_user(analytics_events):
    # AuthenticationMiddleware runs inside ours: the user is known when the response starts.
    app = Starlette(routes=[Route("/", doc_page)])
    app.add_middleware(AuthenticationMiddleware, backend=HeaderUser())
    app.add_middleware(SegmentMiddleware, write_key=KEY, pageviews=True)
    with TestClient(app) as http:
        response = http.get("/", headers={**BROWSER, "X-User": "ada"})
        http.get("/", headers={**VISITOR, "X-User": "ada"})

    user_only, both = analytics_events.of_type("page")
    assert user_only["userId"] == "ada"
    assert "anonymousId" not in user_only  # a user id is enough: nothing minted
    assert "set-cookie" not in response.headers
    assert (both["userId"], both["anonymousId"]) == ("ada", "anon-visitor")


def test_a_failing_page_call_never_breaks_the_response(caplog):
    class BrokenPages(analytics_core.Client):
        """A real client whose page() fails, as a bug or a broken on_error might make it."""

        def page(self, *args, **kwargs):
            raise RuntimeError("page failed")

    client = BrokenPages(KEY, send=False)
    app = Starlette(routes=[Route("/", doc_page)])
    app.add_middleware(SegmentMiddleware, client=client, pageviews=True)
    with TestClient(app) as http, caplog.at_level(logging.ERROR, logger="segment"):
        response = http.get("/", headers=VISITOR)
    assert response.status_code == 200
    assert response.text == DOC
    assert "recording the page view failed" in caplog.text
    client.shutdown()


# -- end to end, to the real collector --------------------------------------------------------


def test_page_views_reach_the_collector_through_a_given_client(collector):
    with Clients(collector.url) as clients:
        app = Starlette(routes=[Route("/products/{id}", doc_page)])
        app.add_middleware(SegmentMiddleware, client=clients.make(KEY), pageviews=True)
        with TestClient(app) as http:
            http.get("/products/3?ref=mail", headers=VISITOR)
            http.get("/health", headers=VISITOR)  # a 404 here, and excluded anyway
    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["type"] == "page"
    assert (event["name"], event["anonymousId"]) == ("/products/{id}", "anon-visitor")
    assert event["properties"] == {
        "path": "/products/3",
        "search": "?ref=mail",
        "url": "http://testserver/products/3?ref=mail",
        "title": "Tea shop",
    }


def test_the_default_client_and_a_raw_app(collector):
    analytics_core.write_key = KEY
    analytics_core.host = collector.url
    api = FastAPI()

    @api.get("/dashboard", response_class=FastAPIHTMLResponse)
    async def dashboard() -> str:
        return document("Dashboard")

    api.add_middleware(SegmentMiddleware, pageviews=True)
    with TestClient(api) as http:
        http.get("/dashboard", headers=VISITOR)
    asyncio.run(call_http(SegmentMiddleware(raw_document, pageviews=True), scope("/r")))
    analytics_core.flush()

    events = collector.wait_for(2, write_key=KEY)
    assert [(e["name"], e["anonymousId"], e["properties"]["title"]) for e in events] == [
        ("/dashboard", "anon-visitor", "Dashboard"),
        ("/r", "anon-visitor", "Tea shop"),  # no route in a raw app's scope: the path
    ]
