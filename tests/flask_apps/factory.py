"""Flask apps with the extension, pointed at the test collector, for the in-process tests."""

import json
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import quote

from analytics_flask import Analytics
from analytics_flask.state import state_of
from flask import Flask, request

import analytics_core

WRITE_KEY = "flask-test-key"


def ajs_cookie(anonymous_id: str) -> str:
    """The ``ajs_anonymous_id`` cookie value as analytics.js writes it: JSON, then URL-encoded."""
    return quote(json.dumps(anonymous_id))


def add_track_route(app: Flask) -> Flask:
    """``/track``: one module-level ``track()``; a JSON body gives its keyword arguments."""

    @app.route("/track", methods=["GET", "POST"])
    def track():
        arguments = request.get_json(silent=True) or {}
        ok, message = analytics_core.track(event=arguments.pop("event", "Test Event"), **arguments)
        return {"ok": ok, "messageId": message["messageId"]}

    return app


class AppFactory:
    """Makes apps whose client delivers to ``host``; :meth:`close` shuts their clients down so
    no uploader thread outlives the test."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.apps: List[Flask] = []

    def __call__(
        self,
        name: str = "app",
        analytics: Optional[Analytics] = None,
        flask_options: Optional[Dict[str, Any]] = None,
        before_init: Optional[Callable[[Flask], Any]] = None,
        **config: Any,
    ) -> Flask:
        """An app named ``name`` (``flask_options`` go to ``Flask()``: a static folder, say)
        with ``config`` and the extension (``analytics``, or a new ``Analytics()``);
        ``before_init(app)`` runs first, for hooks an app registers before its extensions."""
        app = Flask(name, **(flask_options or {}))
        app.config.update(ANALYTICS_WRITE_KEY=WRITE_KEY, ANALYTICS_HOST=self.host)
        app.config.update(config)
        if before_init is not None:
            before_init(app)
        (analytics or Analytics()).init_app(app)
        self.apps.append(app)
        return app

    def close(self) -> None:
        for app in self.apps:
            state = state_of(app)
            if state is not None:
                state.client.shutdown(timeout=2)


def flush(app: Flask) -> None:
    """Deliver everything ``app``'s client queued."""
    state = state_of(app)
    assert state is not None
    assert state.client.flush(timeout=5)
