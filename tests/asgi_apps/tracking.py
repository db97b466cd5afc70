"""The app the end-to-end tests run under real servers (uvicorn, gunicorn's uvicorn worker).

Configured from the environment: ``TESTAPP_WRITE_KEY`` and ``TESTAPP_COLLECTOR_URL``. The client
holds events for a minute, so what reaches the collector was delivered by the shutdown path
under test, not by the uploader's timer.

- ``app``: a Starlette app with ``app.add_middleware(SegmentMiddleware, ...)``;
- ``raw_app``: a bare ASGI callable that does not speak the lifespan protocol, wrapped.
"""

import os

from analytics_asgi import SegmentMiddleware
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import analytics_core

OPTIONS = {
    "write_key": os.environ["TESTAPP_WRITE_KEY"],
    "host": os.environ["TESTAPP_COLLECTOR_URL"],
    "upload_interval": 60,
    "upload_size": 1000,
}
if os.environ.get("TESTAPP_PERSIST"):  # a spool path (the tests give one that cannot be opened)
    OPTIONS["persist"] = os.environ["TESTAPP_PERSIST"]


async def track(request):
    number = int(request.path_params["number"])
    analytics_core.track(event="Request Tracked", properties={"number": number})
    return JSONResponse({"ok": True, "pid": os.getpid()})


async def health(request):
    # The readiness probe: tracks nothing, says which worker answered.
    return PlainTextResponse(str(os.getpid()))


app = Starlette(routes=[Route("/track/{number}", track), Route("/health", health)])
app.add_middleware(SegmentMiddleware, **OPTIONS)


async def bare(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(f"this app serves HTTP only, not {scope['type']}")
    path = scope["path"]
    body = b"ok"
    if path.startswith("/track/"):
        number = int(path.rsplit("/", 1)[1])
        analytics_core.track(event="Request Tracked", properties={"number": number})
        body = b'{"ok": true, "pid": %d}' % os.getpid()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


raw_app = SegmentMiddleware(bare, **OPTIONS)
