"""A plain ASGI app (no framework, no analytics_asgi middleware) for uvicorn.

Each ``GET /track/<n>`` calls ``analytics_core.track`` through the module-level API; the events
wait in the queue (the upload interval is a minute), so whatever reaches the collector was
delivered by analytics_core's own exit handling when the server stopped. Run it with
``--lifespan off``: the app has no start-up or shutdown hooks of its own.

Configured from the environment (see ``shared``).
"""

from .shared import answer


async def app(scope, receive, send):
    """``/track/<n>``: track event n and answer which process did; anything else: the pid."""
    if scope["type"] != "http":
        raise RuntimeError(f"this app serves HTTP only, not {scope['type']}")
    body = answer(scope["path"])
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
