"""analytics_asgi with real Starlette and FastAPI apps: the context every event of a request gets.

The apps run in process (Starlette's TestClient, httpx2's ASGITransport); the events go through a
real analytics_core Client to the real collector, and the assertions read what it stored.
"""

import asyncio
import random
import uuid

import pytest
from analytics_asgi import SegmentMiddleware
from fastapi import BackgroundTasks, FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

import analytics_core
from analytics_core.context import (
    RequestContext,
    current_request_context,
    reset_request_context,
    set_request_context,
)

from .asgi_apps.support import (
    USER_AGENT,
    Clients,
    TestClient,
    call_http,
    http_scope,
    httpx,
    visitor_headers,
)

KEY = "asgi-context-key"
PEER = ("203.0.113.7", 51000)


@pytest.fixture
def clients(collector):
    with Clients(collector.url) as made:
        yield made


def snapshot() -> dict:
    """What the current request context says, for the app to answer with."""
    context = current_request_context()
    if context is None:
        return {"context": None}
    return {
        "context": context.context,
        "user_id": context.user_id,
        "anonymous_id": context.anonymous_id,
    }


async def order(request):
    analytics_core.track(event="Order Completed", properties={"n": request.path_params["n"]})
    return JSONResponse(snapshot())


async def explicit(request):
    analytics_core.track(
        user_id="explicit-user",
        event="Explicit",
        context={"ip": "192.0.2.55", "page": {"path": "/overridden"}, "app": {"name": "shop"}},
    )
    return JSONResponse({})


async def boom(request):
    analytics_core.track(event="Before Boom")
    raise RuntimeError("boom")


async def streamed(request):
    async def body():
        for part in range(2):
            analytics_core.track(event="Chunk", properties={"part": part})
            yield f"part {part}\n"

    return StreamingResponse(body(), media_type="text/plain")


async def streamed_sync(request):
    def body():  # Starlette iterates a sync generator in its threadpool
        analytics_core.track(event="Sync Chunk")
        yield "only part\n"

    return StreamingResponse(body(), media_type="text/plain")


async def background(request):
    def later():
        analytics_core.track(event="Background Task")

    return JSONResponse({}, background=BackgroundTask(later))


async def socket(websocket):
    await websocket.accept()
    text = await websocket.receive_text()
    analytics_core.track(event="Socket Message", properties={"text": text})
    await websocket.send_json(snapshot())
    await websocket.close()


def starlette_app(**options) -> Starlette:
    app = Starlette(
        routes=[
            Route("/orders/{n}", order),
            Route("/explicit", explicit),
            Route("/boom", boom),
            Route("/stream", streamed),
            Route("/stream-sync", streamed_sync),
            Route("/background", background),
            WebSocketRoute("/ws", socket),
        ]
    )
    app.add_middleware(SegmentMiddleware, **options)
    return app


def get(app, path: str, headers=None, peer=PEER) -> httpx.Response:
    """One request through httpx2's (or httpx's) ASGITransport, from the socket peer ``peer``."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            return await http.get(path, headers=headers)

    return asyncio.run(run())


def test_every_context_field_reaches_the_collector(collector, clients):
    client = clients.make(KEY)
    headers = visitor_headers(
        "anon-1",
        **{"Accept-Language": "fr-CH, fr;q=0.9", "Referer": "https://search.test/?q=shop"},
    )
    response = get(starlette_app(client=client), "/orders/7?coupon=SPRING&x=1", headers)
    assert response.status_code == 200
    client.flush()

    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["type"] == "track"
    assert event["event"] == "Order Completed"
    assert event["properties"] == {"n": "7"}
    assert event["anonymousId"] == "anon-1"
    assert "userId" not in event
    context = event["context"]
    assert context["ip"] == PEER[0]
    assert context["userAgent"] == USER_AGENT
    assert context["locale"] == "fr-CH"
    assert context["page"] == {
        "path": "/orders/7",
        "search": "?coupon=SPRING&x=1",
        "url": "http://shop.test/orders/7?coupon=SPRING&x=1",
        "referrer": "https://search.test/?q=shop",
    }
    assert context["library"]["name"] == "analytics-core"


def test_module_level_calls_go_to_the_middlewares_client(collector, clients):
    # The default client is configured with another key: inside the request, the middleware's
    # client wins; outside, the default client is used.
    analytics_core.write_key = "default-key"
    analytics_core.host = collector.url
    own = clients.make(KEY)
    app = starlette_app(client=own)
    get(app, "/orders/1", visitor_headers("anon-2"))
    analytics_core.track(user_id="outside", event="Outside")
    own.flush()
    analytics_core.flush()

    assert [e["event"] for e in collector.wait_for(1, write_key=KEY)] == ["Order Completed"]
    assert [e["event"] for e in collector.wait_for(1, write_key="default-key")] == ["Outside"]


def test_without_client_or_options_the_default_client_is_used(collector):
    analytics_core.write_key = "module-key"
    analytics_core.host = collector.url
    app = starlette_app()
    get(app, "/orders/3", visitor_headers("anon-3"))
    analytics_core.flush()

    (event,) = collector.wait_for(1, write_key="module-key")
    assert event["anonymousId"] == "anon-3"
    assert event["context"]["page"]["path"] == "/orders/3"


def test_client_options_build_the_middlewares_own_client(collector):
    app = starlette_app(write_key=KEY, host=collector.url, upload_interval=0.05)
    with TestClient(app) as http:
        http.get("/orders/4", headers=visitor_headers("anon-4"))
    # Leaving the TestClient ran the lifespan shutdown, which delivered the queue.
    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["anonymousId"] == "anon-4"


def test_explicit_arguments_win_key_by_key(collector, clients):
    client = clients.make(KEY)
    get(starlette_app(client=client), "/explicit?a=1", visitor_headers("anon-5"))
    client.flush()

    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["userId"] == "explicit-user"
    context = event["context"]
    assert context["ip"] == "192.0.2.55"
    assert context["app"] == {"name": "shop"}
    assert context["userAgent"] == USER_AGENT  # not given: the request's
    # page is merged one level deep: the given path, the request's url and search.
    assert context["page"]["path"] == "/overridden"
    assert context["page"]["search"] == "?a=1"
    assert context["page"]["url"] == "http://shop.test/explicit?a=1"


def test_streamed_bodies_and_background_tasks_keep_the_context(collector, clients):
    client = clients.make(KEY)
    app = starlette_app(client=client)
    with TestClient(app) as http:
        assert http.get("/stream", headers=visitor_headers("anon-s")).text == "part 0\npart 1\n"
        http.get("/stream-sync", headers=visitor_headers("anon-t"))
        http.get("/background", headers=visitor_headers("anon-b"))

    events = collector.wait_for(4, write_key=KEY)
    seen = {(e["event"], e["anonymousId"], e["context"]["page"]["path"]) for e in events}
    assert seen == {
        ("Chunk", "anon-s", "/stream"),
        ("Sync Chunk", "anon-t", "/stream-sync"),
        ("Background Task", "anon-b", "/background"),
    }
    assert len(events) == 4
    assert all(e["context"]["userAgent"] == USER_AGENT for e in events)


def test_websocket_connections_get_their_context(collector, clients):
    client = clients.make(KEY)
    app = starlette_app(client=client)
    with (
        TestClient(app) as http,
        http.websocket_connect("/ws?room=9", headers=visitor_headers("anon-w")) as ws,
    ):
        ws.send_text("hello")
        answer = ws.receive_json()
    assert answer["anonymous_id"] == "anon-w"

    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["event"] == "Socket Message"
    assert event["anonymousId"] == "anon-w"
    assert event["context"]["userAgent"] == USER_AGENT
    assert event["context"]["page"] == {
        "path": "/ws",
        "search": "?room=9",
        "url": "ws://testserver/ws?room=9",
    }


def test_the_context_is_reset_after_an_exception(collector, clients):
    client = clients.make(KEY)
    app = starlette_app(client=client)
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/boom", headers=visitor_headers("anon-x")).status_code == 500
        # The next request sees its own context, not the failed one's.
        assert http.get("/orders/5", headers=visitor_headers("anon-y")).status_code == 200

    # The same, precisely: middlewares called directly in this task, the inner one around an
    # app that raises; what was current before each request is current again after it.
    inside = []

    async def failing(scope, receive, send):
        inside.append(current_request_context())
        raise RuntimeError("boom")

    async def outer_app(scope, receive, send):
        before = current_request_context()
        with pytest.raises(RuntimeError, match="boom"):
            await call_http(SegmentMiddleware(failing, client=client), http_scope("/raw"))
        inside.append(current_request_context())
        assert inside[-1] is before
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def direct() -> None:
        await call_http(SegmentMiddleware(outer_app, client=client), http_scope("/outer"))
        assert current_request_context() is None

    asyncio.run(direct())
    assert inside[0].context["page"]["path"] == "/raw"
    assert inside[1].context["page"]["path"] == "/outer"
    events = collector.wait_for(2, write_key=KEY)
    assert [(e["event"], e["anonymousId"]) for e in events] == [
        ("Before Boom", "anon-x"),
        ("Order Completed", "anon-y"),
    ]


def test_a_context_set_with_set_request_context_wins_over_the_requests(collector, clients):
    # The middleware records its request where only the lookup asks (scope_context); a context
    # that code set itself (an app's own, a Celery task's calling the app in process) is asked
    # first, as it is inside a Flask request.
    client = clients.make(KEY)
    seen = []

    async def app(scope, receive, send):
        seen.append(current_request_context())
        analytics_core.track(event="Inside")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    own = RequestContext({"own": True}, user_id="set-by-code", client=client)

    async def direct() -> None:
        token = set_request_context(own)
        try:
            await call_http(SegmentMiddleware(app, client=client), http_scope("/x"))
        finally:
            reset_request_context(token)

    asyncio.run(direct())
    assert seen == [own]
    client.flush()
    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["userId"] == "set-by-code"
    assert event["context"]["own"] is True


def test_concurrent_requests_each_see_only_their_own_context(collector, clients):
    client = clients.make(KEY, upload_size=50)
    seen_wrong = []

    async def slow(request):
        visitor = request.path_params["visitor"]
        for step in range(2):
            # Yield to the other requests between the calls, in a random order.
            await asyncio.sleep(random.random() / 100)
            context = current_request_context()
            if (
                context.anonymous_id != visitor
                or context.context["page"]["path"] != request.url.path
            ):
                seen_wrong.append((visitor, step))
            analytics_core.track(event="Step", properties={"visitor": visitor, "step": step})
        return JSONResponse({})

    app = Starlette(routes=[Route("/visit/{visitor}", slow)])
    app.add_middleware(SegmentMiddleware, client=client)
    visitors = [uuid.uuid4().hex for _ in range(50)]

    async def run() -> None:
        transport = httpx.ASGITransport(app=app, client=PEER)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            await asyncio.gather(
                *(http.get(f"/visit/{v}", headers=visitor_headers(v)) for v in visitors)
            )

    asyncio.run(run())
    client.flush()
    assert seen_wrong == []
    events = collector.wait_for(100, write_key=KEY)
    assert len(events) == 100
    for event in events:
        visitor = event["properties"]["visitor"]
        assert event["anonymousId"] == visitor
        assert event["context"]["page"]["path"] == f"/visit/{visitor}"
    assert {e["anonymousId"] for e in events} == set(visitors)


def test_fastapi_sync_async_and_background_endpoints(collector, clients):
    client = clients.make(KEY)
    api = FastAPI()
    api.add_middleware(SegmentMiddleware, client=client)

    @api.get("/async/{n}")
    async def async_endpoint(n: int):
        analytics_core.track(event="Async", properties={"n": n})
        return snapshot()

    @api.get("/sync")
    def sync_endpoint():  # FastAPI runs it in its threadpool, in a copy of the context
        analytics_core.track(event="Sync")
        return snapshot()

    @api.post("/later")
    async def later(tasks: BackgroundTasks):
        tasks.add_task(analytics_core.track, event="FastAPI Background")
        return {}

    with TestClient(api) as http:
        headers = visitor_headers("anon-f")
        assert http.get("/async/3", headers=headers).json()["anonymous_id"] == "anon-f"
        assert http.get("/sync?s=1", headers=headers).json()["context"]["page"]["search"] == "?s=1"
        http.post("/later", headers=headers)

    events = collector.wait_for(3, write_key=KEY)
    assert {e["event"]: e["context"]["page"]["path"] for e in events} == {
        "Async": "/async/3",
        "Sync": "/sync",
        "FastAPI Background": "/later",
    }
    assert {e["anonymousId"] for e in events} == {"anon-f"}


def test_a_raw_asgi_app(collector, clients):
    client = clients.make(KEY)

    async def raw_app(scope, receive, send):
        assert scope["type"] == "http"  # no lifespan support at all
        analytics_core.track(event="Raw")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = SegmentMiddleware(raw_app, client=client, trusted_proxies=1)
    headers = visitor_headers("anon-r", **{"X-Forwarded-For": "198.51.100.23"})
    assert get(app, "/raw/path?z=26", headers).status_code == 204
    client.flush()

    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["anonymousId"] == "anon-r"
    assert event["context"]["ip"] == "198.51.100.23"
    assert event["context"]["page"]["url"] == "http://shop.test/raw/path?z=26"
