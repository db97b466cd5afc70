"""A Flask app mounted in a Starlette app, each with its own analytics integration.

Teams moving from Flask to FastAPI mount the old app under the new one; a request to the Flask
part is then inside the ASGI one too. Flask's own context (its client, its request's page, its
user) is the one its events get; the Starlette routes keep theirs. Real apps, run in process
through Starlette's TestClient and its WSGI adapter, sending to the real collector.
"""

import warnings

from analytics_asgi import SegmentMiddleware
from analytics_flask import Analytics
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import analytics_core

from .asgi_apps.support import TestClient, visitor_headers

with warnings.catch_warnings():
    # Deprecated in recent Starlette (a2wsgi replaces it); what matters here is any WSGI bridge.
    warnings.simplefilter("ignore")
    from starlette.middleware.wsgi import WSGIMiddleware

ASGI_KEY = "mounted-asgi-key"
FLASK_KEY = "mounted-flask-key"


def _apps(collector):
    flask_app = Flask("legacy")
    flask_app.config.update(
        ANALYTICS_WRITE_KEY=FLASK_KEY,
        ANALYTICS_HOST=collector.url,
        ANALYTICS_USER_ID=lambda request: request.headers.get("X-Legacy-User"),
    )
    extension = Analytics(flask_app)

    @flask_app.route("/checkout")
    def checkout():
        analytics_core.track(event="Legacy Checkout")
        return "ok"

    async def new(request):
        analytics_core.track(event="New Page")
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/new", new), Mount("/legacy", app=WSGIMiddleware(flask_app))],
    )
    app.add_middleware(SegmentMiddleware, write_key=ASGI_KEY, host=collector.url)
    return app, extension, flask_app


def test_the_mounted_flask_apps_events_get_flasks_context_and_client(collector):
    app, extension, flask_app = _apps(collector)
    with TestClient(app) as http:
        legacy = http.get(
            "/legacy/checkout", headers={**visitor_headers("anon-l"), "X-Legacy-User": "u-7"}
        )
        assert legacy.status_code == 200
        assert http.get("/new", headers=visitor_headers("anon-n")).status_code == 200
    with flask_app.app_context():
        extension.client.flush()
    (legacy_event,) = collector.wait_for(1, write_key=FLASK_KEY)
    assert legacy_event["event"] == "Legacy Checkout"
    assert legacy_event["userId"] == "u-7"
    assert legacy_event["anonymousId"] == "anon-l"
    assert legacy_event["context"]["page"]["path"] == "/legacy/checkout"
    (new_event,) = collector.wait_for(1, write_key=ASGI_KEY)
    assert new_event["event"] == "New Page"
    assert new_event["anonymousId"] == "anon-n"
    assert new_event["context"]["page"]["path"] == "/new"
