"""What ``Analytics.init_app(app)`` keeps for one app.

Flask's extension guide puts the extension object itself in ``app.extensions["analytics"]``, so
``current_app.extensions["analytics"].track(...)`` works in a factory-pattern app; the app's own
state (its client and settings) is kept by that object, per app.
"""

from typing import Any, Callable, Mapping, Optional, Tuple

from analytics_core import Client
from analytics_core.web.pageviews import DEFAULT_EXCLUDE, ExcludeRule, compile_exclude

__all__ = ["EXTENSION_KEY", "AppState", "state_of"]

EXTENSION_KEY = "analytics"


def _pageview_exclude(config: Mapping[str, Any], static_url_path: Any) -> Tuple[ExcludeRule, ...]:
    value = config["ANALYTICS_PAGEVIEWS_EXCLUDE"]
    if value is not None:
        return compile_exclude(value, "ANALYTICS_PAGEVIEWS_EXCLUDE")
    if isinstance(static_url_path, str) and static_url_path.startswith("/"):
        return (*DEFAULT_EXCLUDE, static_url_path.rstrip("/") + "/")
    return DEFAULT_EXCLUDE


class AppState:
    """One app's settings and client. Nothing is kept anywhere else, so several apps in one
    process each deliver with their own write key to their own host."""

    __slots__ = (
        "extension",
        "client",
        "config",
        "app_config",
        "trusted_proxies",
        "forwarded_header",
        "user_id",
        "cookie",
        "cookie_domain",
        "pageviews",
        "pageview_exclude",
        "identify_on_login",
        "flush_each_request",
        "flush_timeout",
    )

    def __init__(
        self,
        extension: Any,
        client: Client,
        config: Mapping[str, Any],
        static_url_path: Optional[str] = None,
        app_config: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.extension = extension
        self.client = client
        self.config = config
        # The app's own config, live (TRUSTED_HOSTS is read from it when the request is gone).
        self.app_config: Mapping[str, Any] = app_config if app_config is not None else {}
        self.trusted_proxies: int = config["ANALYTICS_TRUSTED_PROXIES"]
        self.forwarded_header: str = config["ANALYTICS_FORWARDED_HEADER"]
        # The app's resolver (request -> user id); None reads Flask-Login.
        self.user_id: Optional[Callable[[Any], Any]] = config["ANALYTICS_USER_ID"]
        self.cookie: bool = config["ANALYTICS_ANONYMOUS_ID_COOKIE"]
        self.cookie_domain: Optional[str] = config["ANALYTICS_ANONYMOUS_ID_COOKIE_DOMAIN"]
        self.pageviews: bool = config["ANALYTICS_PAGEVIEWS"]
        self.pageview_exclude = _pageview_exclude(config, static_url_path)
        self.identify_on_login: bool = config["ANALYTICS_IDENTIFY_ON_LOGIN"]
        # None: only under the Werkzeug development server (decided per request).
        self.flush_each_request: Optional[bool] = config["ANALYTICS_FLUSH_EACH_REQUEST"]
        # Waiting for one request's events is bounded like one HTTP request to the API.
        self.flush_timeout: float = config["ANALYTICS_TIMEOUT"]

    def __repr__(self) -> str:
        return f"<analytics_flask.AppState client={self.client!r}>"


def state_of(app: Any) -> Optional[AppState]:
    """The state ``init_app`` left for ``app`` (a Flask app), or None."""
    extensions = getattr(app, "extensions", None)
    if not isinstance(extensions, dict):
        return None
    extension = extensions.get(EXTENSION_KEY)
    states = getattr(extension, "_states", None)
    if states is None:
        return None
    state = states.get(app)
    return state if isinstance(state, AppState) else None
