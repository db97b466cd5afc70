"""The app the end-to-end tests serve with gunicorn and ``flask run``.

Each ``GET /track/<n>`` tracks one "Server Event" through the module-level API, with no ids and
no context: the extension supplies both. Settings come from ``TESTAPP_``-prefixed environment
variables (``TESTAPP_ANALYTICS_HOST=...`` becomes ``app.config["ANALYTICS_HOST"]``).
"""

import os

from analytics_flask import Analytics
from flask import Flask

import analytics_core


def create_app() -> Flask:
    """The app, configured from the environment."""
    app = Flask(__name__)
    app.config.from_prefixed_env("TESTAPP")
    Analytics(app)

    @app.get("/")
    def index():
        return "ready"

    @app.get("/pid")
    def pid():
        return str(os.getpid())

    @app.get("/track/<int:number>")
    def track(number: int):
        ok, _ = analytics_core.track(
            event="Server Event", properties={"n": number, "pid": os.getpid()}
        )
        return {"ok": ok, "pid": os.getpid()}

    return app


app = create_app()
