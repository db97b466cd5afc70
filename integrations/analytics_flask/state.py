"""What ``Analytics.init_app(app)`` keeps for one app, in ``app.extensions["analytics"]``."""

from typing import Any, Mapping, Optional

from analytics_core import Client

__all__ = ["EXTENSION_KEY", "AppState", "state_of"]

EXTENSION_KEY = "analytics"


class AppState:
    """One app's settings and client. Nothing is kept anywhere else, so several apps in one
    process each deliver with their own write key to their own host."""

    __slots__ = (
        "extension",
        "client",
        "config",
        "trusted_proxies",
        "pageviews",
        "identify_on_login",
        "flush_each_request",
        "flush_timeout",
    )

    def __init__(self, extension: Any, client: Client, config: Mapping[str, Any]) -> None:
        self.extension = extension
        self.client = client
        self.config = config
        self.trusted_proxies: int = config["ANALYTICS_TRUSTED_PROXIES"]
        self.pageviews: bool = config["ANALYTICS_PAGEVIEWS"]
        self.identify_on_login: bool = config["ANALYTICS_IDENTIFY_ON_LOGIN"]
        # None: only under the Werkzeug development server (decided per request).
        self.flush_each_request: Optional[bool] = config["ANALYTICS_FLUSH_EACH_REQUEST"]
        # Waiting for one request's events is bounded like one HTTP request to the API.
        self.flush_timeout: float = config["ANALYTICS_TIMEOUT"]

    def __repr__(self) -> str:
        return f"<analytics_flask.AppState client={self.client!r}>"


def state_of(app: Any) -> Optional[AppState]:
    """The state ``init_app`` left on ``app`` (a Flask app), or None."""
    extensions = getattr(app, "extensions", None)
    if not isinstance(extensions, dict):
        return None
    state = extensions.get(EXTENSION_KEY)
    return state if isinstance(state, AppState) else None
