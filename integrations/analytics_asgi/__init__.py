"""analytics_asgi: Segment analytics for Starlette, FastAPI and any ASGI app, one line to set up.

::

    from fastapi import FastAPI
    from analytics_asgi import SegmentMiddleware
    import analytics_core

    app = FastAPI()
    app.add_middleware(SegmentMiddleware, write_key="YOUR_WRITE_KEY")

    @app.post("/orders")
    async def order():
        analytics_core.track(event="Order Completed", properties={"total": 12.5})
        return {"ok": True}

Any other ASGI app: ``app = SegmentMiddleware(app, write_key=...)``.

Inside a request no user id and no context are needed: the request's ip, userAgent, locale,
page (url, path, search, referrer), the ``ajs_anonymous_id`` cookie of analytics.js and the
authenticated user's id (``scope["user"]``, as Starlette's AuthenticationMiddleware sets it)
are filled in; explicit arguments win, key by key. The queue is delivered when the server shuts
the app down (the lifespan shutdown), so a graceful stop of uvicorn or gunicorn loses nothing.

This package imports no web framework: it speaks ASGI only.
"""

from .middleware import SegmentMiddleware
from .users import user_id_from_scope_user

__all__ = ["SegmentMiddleware", "user_id_from_scope_user"]
