"""An ASGI app for uvicorn that queues events on import, as a Django project does in its
AppConfig: uvicorn's command line imports it inside ``Server.capture_signals``, so the client is
made while uvicorn's own SIGTERM handler is installed (see stopped.py for the environment)."""

from tests.signal_scripts.stopped import make_client, queue_events

client = make_client()
queue_events(client)


async def app(scope, receive, send):
    """Answer every HTTP request with an empty 200 (the tests only need to know it serves)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
