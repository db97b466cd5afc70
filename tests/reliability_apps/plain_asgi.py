"""A plain ASGI app (no framework, no analytics_asgi middleware) for uvicorn.

Each ``GET /track/<n>`` calls ``analytics_core.track`` through the module-level API; the events
wait in the queue (the upload interval is a minute), so whatever reaches the collector was
delivered by analytics_core's own exit handling when the server stopped. Run it with
``--lifespan off``: the app has no start-up or shutdown hooks of its own.

Configured from the environment like ``preload_wsgi``.
"""

import json
import os

import analytics_core

analytics_core.write_key = os.environ["RELIABILITY_WRITE_KEY"]
analytics_core.host = os.environ["RELIABILITY_COLLECTOR_URL"]
analytics_core.upload_interval = 60
analytics_core.upload_size = 1000
RUN = os.environ["RELIABILITY_RUN"]


async def app(scope, receive, send):
    """``/track/<n>``: track event n and answer which process did; anything else: the pid."""
    if scope["type"] != "http":
        raise RuntimeError(f"this app serves HTTP only, not {scope['type']}")
    path = scope["path"]
    if path.startswith("/track/"):
        number = int(path.rsplit("/", 1)[1])
        ok, _ = analytics_core.track(
            anonymous_id=RUN, event="Request", properties={"number": number, "pid": os.getpid()}
        )
        body = json.dumps({"ok": ok, "pid": os.getpid()}).encode()
    else:
        body = str(os.getpid()).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
