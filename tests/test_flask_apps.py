"""Several apps in one process, built by an application factory with one Analytics object:
each app's events go with its own write key to its own host."""

import threading

import pytest
from analytics_flask import Analytics
from flask import Flask

import analytics_core
from analytics_core.collector.access import write_key_fingerprint as fingerprint

from .flask_apps.factory import ajs_cookie
from .support.collector_process import CollectorProcess

analytics = Analytics()  # module level, as an application factory's extension object is


def create_app(name: str, write_key: str, host: str) -> Flask:
    """The application factory."""
    app = Flask(name)
    app.config.update(ANALYTICS_WRITE_KEY=write_key, ANALYTICS_HOST=host)
    analytics.init_app(app)

    @app.get("/module-level")
    def module_level():
        ok, _ = analytics_core.track(event="Module Level", properties={"app": name})
        return {"ok": ok}

    @app.get("/extension")
    def extension():
        ok, _ = analytics.track(event="Extension", properties={"app": name})
        return {"ok": ok}

    return app


@pytest.fixture
def second_collector():
    with CollectorProcess() as process:
        yield process


@pytest.fixture
def apps(collector, second_collector):
    shop = create_app("shop", "shop-key", collector.url)
    blog = create_app("blog", "blog-key", second_collector.url)
    yield shop, blog
    for app in (shop, blog):
        with app.app_context():
            analytics.shutdown(timeout=2)


def test_each_app_has_its_own_client(apps):
    shop, blog = apps
    with shop.app_context():
        shop_client = analytics.client
    with blog.app_context():
        blog_client = analytics.client
    assert shop_client is not blog_client
    assert (shop_client.write_key, blog_client.write_key) == ("shop-key", "blog-key")
    assert analytics_core.default_client not in (shop_client, blog_client)


def test_two_apps_deliver_to_their_own_hosts_with_their_own_keys(apps, collector, second_collector):
    shop, blog = apps
    errors = []

    def visit(app, number):
        try:
            client = app.test_client()
            client.set_cookie("ajs_anonymous_id", ajs_cookie(f"{app.name}-{number}"))
            for _ in range(5):
                assert client.get("/module-level").json["ok"]
                assert client.get("/extension").json["ok"]
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    # Both apps serve at once, on interleaved threads.
    threads = [
        threading.Thread(target=visit, args=(app, number))
        for number in range(3)
        for app in (shop, blog)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with shop.app_context():
        analytics.track("u1", "Outside A Request", {"app": "shop"})
        assert analytics.flush(timeout=5)
    with blog.app_context():
        analytics.track("u1", "Outside A Request", {"app": "blog"})
        assert analytics.flush(timeout=5)

    for process, name in ((collector, "shop"), (second_collector, "blog")):
        events = process.events(limit=0)
        assert len(events) == 3 * 5 * 2 + 1
        assert {event["_write_key_fingerprint"] for event in events} == {fingerprint(f"{name}-key")}
        assert {event["properties"]["app"] for event in events} == {name}
        in_requests = [event for event in events if event["event"] != "Outside A Request"]
        assert {event["anonymousId"].split("-")[0] for event in in_requests} == {name}
