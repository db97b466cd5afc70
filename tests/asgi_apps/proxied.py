"""The app the client-IP tests run under real uvicorn processes.

Configured from the environment: ``TESTAPP_WRITE_KEY``, ``TESTAPP_COLLECTOR_URL`` and
``TESTAPP_TRUSTED_PROXIES``. ``GET /visit`` tracks "Visited" (its context.ip is what the tests
look at); ``GET /health`` tracks nothing. The ``segment`` logger writes to stderr, which the
tests read: uvicorn configures only its own loggers, and the middleware's warnings must be seen.
"""

import logging
import os
import sys

from analytics_asgi import SegmentMiddleware
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import analytics_core

_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
logging.getLogger("segment").addHandler(_handler)
logging.getLogger("segment").setLevel(logging.WARNING)


async def visit(request):
    analytics_core.track(event="Visited")
    client = request.scope.get("client")
    # What the server put in the scope, for the failure messages.
    return JSONResponse({"scope_client": list(client) if client else None})


async def health(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/visit", visit), Route("/health", health)])
app.add_middleware(
    SegmentMiddleware,
    write_key=os.environ["TESTAPP_WRITE_KEY"],
    host=os.environ["TESTAPP_COLLECTOR_URL"],
    trusted_proxies=int(os.environ.get("TESTAPP_TRUSTED_PROXIES", "0")),
    upload_interval=0.05,  # delivered while the server runs; the shutdown delivers the rest
)
