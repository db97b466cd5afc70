"""analytics_asgi and the lifespan scope: the queue is delivered when the server shuts the app down.

The clients here hold events for a minute (``upload_interval=60``), so whatever reaches the
collector was delivered by the lifespan shutdown, not by the uploader's timer. And it must be
there as soon as the server hears "shutdown complete": after that the process may die.
"""

import asyncio
import contextlib
import logging
import time

import pytest
from analytics_asgi import SegmentMiddleware
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import analytics_core

from .asgi_apps.support import Clients, LifespanDriver, TestClient, call_http, http_scope
from .asgi_apps.support import visitor_headers as browser

KEY = "asgi-lifespan-key"
HOLD = {"upload_interval": 60, "upload_size": 1000}


@pytest.fixture
def clients(collector):
    with Clients(collector.url) as made:
        yield made


async def track_request(request):
    analytics_core.track(event="Served", properties={"path": request.url.path})
    return PlainTextResponse("ok")


def app_with_lifespan(on_shutdown, **options) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        on_shutdown()

    app = Starlette(routes=[Route("/{name}", track_request)], lifespan=lifespan)
    app.add_middleware(SegmentMiddleware, **options)
    return app


def test_shutdown_delivers_what_was_served_and_what_the_shutdown_handler_tracked(
    collector, clients
):
    client = clients.make(KEY, **HOLD)
    app = app_with_lifespan(
        lambda: client.track(user_id="system", event="App Stopping"), client=client
    )
    with TestClient(app) as http:
        for number in range(5):
            http.get(f"/page-{number}", headers=browser("anon-l"))
        assert collector.events(write_key=KEY) == []  # held: nothing sent yet
    # No waiting: the events were delivered before the server was told shutdown is complete.
    events = collector.events(write_key=KEY, order="asc", limit=0)
    assert [e["event"] for e in events] == ["Served"] * 5 + ["App Stopping"]
    assert [e["properties"].get("path") for e in events[:5]] == [f"/page-{n}" for n in range(5)]


def test_shutdown_delivers_the_default_client_when_the_middleware_uses_it(collector):
    analytics_core.write_key = KEY
    analytics_core.host = collector.url
    analytics_core.upload_interval = 60
    app = app_with_lifespan(lambda: analytics_core.track(user_id="system", event="Bye"))
    with TestClient(app) as http:
        http.get("/one", headers=browser("anon-d"))
    events = collector.events(write_key=KEY, order="asc", limit=0)
    assert [e["event"] for e in events] == ["Served", "Bye"]


def test_the_client_works_again_after_a_shutdown(collector, clients):
    # Tests (and servers that restart an app in process) run the lifespan more than once.
    client = clients.make(KEY, **HOLD)
    app = app_with_lifespan(lambda: None, client=client)
    for round_ in range(2):
        with TestClient(app) as http:
            http.get(f"/round-{round_}", headers=browser("anon-r"))
        assert len(collector.events(write_key=KEY, limit=0)) == round_ + 1


def test_a_failing_shutdown_handler_still_delivers_and_the_failure_is_reported(collector, clients):
    client = clients.make(KEY, **HOLD)

    def crash():
        client.track(user_id="system", event="Tried To Stop")
        raise RuntimeError("cannot stop")

    app = app_with_lifespan(crash, client=client)

    async def run() -> list:
        driver = LifespanDriver(app)
        driver.start()
        assert (await driver.ask("startup"))["type"] == "lifespan.startup.complete"
        await call_http(app, http_scope("/x", headers=[(b"cookie", b"ajs_anonymous_id=a1")]))
        answer = await driver.ask("shutdown")
        delivered = collector.events(write_key=KEY, order="asc", limit=0)
        # Starlette answers "failed" and re-raises; the server must see both.
        with pytest.raises(RuntimeError, match="cannot stop"):
            await driver.task
        return [answer["type"], [e["event"] for e in delivered]]

    assert asyncio.run(run()) == ["lifespan.shutdown.failed", ["Served", "Tried To Stop"]]


def test_a_failing_startup_reaches_the_server(clients):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        raise RuntimeError("no database")
        yield

    app = Starlette(lifespan=lifespan)
    app.add_middleware(SegmentMiddleware, client=clients.make(KEY))
    with pytest.raises(RuntimeError, match="no database"), TestClient(app):
        pass


@pytest.mark.parametrize("behaviour", ["raises", "returns", "raises-after-receiving"])
def test_an_app_without_lifespan_support_still_delivers_at_shutdown(
    collector, clients, behaviour, caplog
):
    client = clients.make(KEY, **HOLD)

    async def raw_app(scope, receive, send):
        if scope["type"] == "lifespan":
            if behaviour == "raises":
                raise ValueError(f"unsupported scope {scope['type']}")
            if behaviour == "raises-after-receiving":
                await receive()
                raise ValueError("unexpected message")
            return
        analytics_core.track(event="Raw Served")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = SegmentMiddleware(raw_app, client=client)

    async def run() -> list:
        driver = LifespanDriver(app)
        driver.start()
        answers = [(await driver.ask("startup"))["type"]]
        await call_http(app, http_scope("/raw", headers=[(b"cookie", b"ajs_anonymous_id=a2")]))
        answers.append((await driver.ask("shutdown"))["type"])
        answers.append(len(collector.events(write_key=KEY, limit=0)))
        await driver.task  # and the lifespan call ends without an error
        return answers

    with caplog.at_level(logging.INFO, logger="segment"):
        answers = asyncio.run(run())
    assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete", 1]
    assert "SegmentMiddleware answers it" in caplog.text


def test_delivery_is_bounded_and_what_did_not_go_is_reported(collector, clients):
    # The collector keeps failing: the client retries until its shutdown_timeout, then hands
    # the events to on_error. The lifespan shutdown must not hang on it.
    reported = []
    client = clients.make(
        KEY,
        shutdown_timeout=0.5,
        max_retries=10,
        on_error=lambda error, items: reported.extend(items),
        **HOLD,
    )
    collector.set_faults([{"status": 503, "times": 1000}])
    app = app_with_lifespan(lambda: None, client=client)
    with TestClient(app) as http:
        http.get("/lost", headers=browser("anon-e"))
        started = time.monotonic()
    elapsed = time.monotonic() - started
    assert elapsed < 5
    assert [item["event"] for item in reported] == ["Served"]


def test_the_event_loop_keeps_running_while_the_queue_is_delivered(collector, clients):
    client = clients.make(KEY, **HOLD)
    collector.set_faults([{"status": 200, "delay": 0.5, "times": 1}])  # a slow collector
    app = app_with_lifespan(lambda: None, client=client)

    async def run() -> int:
        driver = LifespanDriver(app)
        driver.start()
        await driver.ask("startup")
        await call_http(app, http_scope("/slow", headers=[(b"cookie", b"ajs_anonymous_id=a3")]))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.ensure_future(ticker())
        await driver.ask("shutdown")
        ticking.cancel()
        await driver.task
        return ticks

    # Delivery took about 0.5 s in a worker thread; the loop ran the ticker all along.
    assert asyncio.run(run()) >= 10
    assert len(collector.events(write_key=KEY, limit=0)) == 1
