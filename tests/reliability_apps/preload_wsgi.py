"""A plain WSGI app for ``gunicorn --preload``: analytics_core is used when the module is imported.

With ``--preload`` gunicorn imports this module once, in the master, before forking workers: the
"Preloaded" event is queued in the master and must be delivered once, by the master, not by each
worker that inherited a copy of its queue. Every ``GET /track/<n>`` tracks one "Request" event in
a worker. Nothing is sent before the server stops: the upload interval is a minute.

Configured from the environment: ``RELIABILITY_WRITE_KEY``, ``RELIABILITY_COLLECTOR_URL`` and
``RELIABILITY_RUN`` (the anonymous id of every event, so a test finds its own).
"""

import json
import os

import analytics_core

analytics_core.write_key = os.environ["RELIABILITY_WRITE_KEY"]
analytics_core.host = os.environ["RELIABILITY_COLLECTOR_URL"]
analytics_core.upload_interval = 60
analytics_core.upload_size = 1000
RUN = os.environ["RELIABILITY_RUN"]

analytics_core.track(anonymous_id=RUN, event="Preloaded", properties={"pid": os.getpid()})


def app(environ, start_response):
    """``/track/<n>``: track event n and answer which process did; anything else: the pid."""
    path = environ.get("PATH_INFO", "")
    if path.startswith("/track/"):
        number = int(path.rsplit("/", 1)[1])
        ok, _ = analytics_core.track(
            anonymous_id=RUN, event="Request", properties={"number": number, "pid": os.getpid()}
        )
        body = json.dumps({"ok": ok, "pid": os.getpid()}).encode()
    else:
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
