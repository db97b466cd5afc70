"""A plain WSGI app for ``gunicorn --preload``: analytics_core is used when the module is imported.

With ``--preload`` gunicorn imports this module once, in the master, before forking workers: the
"Preloaded" event is queued in the master and must be delivered once, by the master, not by each
worker that inherited a copy of its queue. Every ``GET /track/<n>`` tracks one "Request" event in
a worker. Nothing is sent before the server stops: the upload interval is a minute.

Configured from the environment (see ``shared``).
"""

import os

import analytics_core

from .shared import RUN, answer

analytics_core.track(anonymous_id=RUN, event="Preloaded", properties={"pid": os.getpid()})


def app(environ, start_response):
    """``/track/<n>``: track event n and answer which process did; anything else: the pid."""
    body = answer(environ.get("PATH_INFO", ""))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
