"""The ``Analytics`` extension: ``Analytics(app)`` or ``Analytics()`` + ``init_app(app)``."""

import logging
import weakref
from typing import Any, Dict, Optional, Tuple

from flask import Flask, current_app, has_app_context

from analytics_core import Client, ValidationError

from . import config as settings
from . import login
from .middleware import wrap_wsgi_app
from .pageviews import PageViewHook
from .state import EXTENSION_KEY, AppState, state_of

__all__ = ["Analytics"]

logger = logging.getLogger("segment")

Result = Tuple[bool, Dict[str, Any]]


def _build_client(options: Dict[str, Any], app: Flask) -> Client:
    if options["send"] and not options["write_key"]:
        # A development machine without the key must still run the app: warn, send nothing.
        logger.warning(
            "analytics_flask: ANALYTICS_WRITE_KEY is not set for app %r; its events will not "
            "be sent (set ANALYTICS_SEND = False to silence this warning)",
            app.name,
        )
        options = dict(options, send=False)
    try:
        return Client(**options)
    except ValidationError as error:
        raise settings.ConfigError(f"analytics_flask: {error}") from None


class Analytics:
    """Segment analytics for Flask apps.

    ``Analytics(app)``, or ``analytics = Analytics()`` then ``analytics.init_app(app)`` in an
    application factory. Each app gets its own ``analytics_core.Client``, configured from its
    ``ANALYTICS_*`` config keys (see ``analytics_flask.CONFIG_DEFAULTS``); keyword ``overrides``
    (``Analytics(write_key=..., pageviews=True)``, the key without its ``ANALYTICS_`` prefix, in
    lower case) win over ``app.config`` for every app this object initialises.

    While a request is handled, every analytics call (this object's and the module-level
    ``analytics_core.track(...)`` alike) goes to the app's client and carries the request's
    context: ip, userAgent, locale, page, the ``ajs_anonymous_id`` cookie and the Flask-Login
    user's id.
    """

    def __init__(self, app: Optional[Flask] = None, **overrides: Any) -> None:
        self._overrides = settings.override_keys(overrides)
        # Each app's state; weak, so an app the program dropped is not kept alive by us.
        self._states: weakref.WeakKeyDictionary[Flask, AppState] = weakref.WeakKeyDictionary()
        # Only for calls made outside any application context (a script, a thread) when the app
        # was given here; inside one, current_app decides.
        self._app: Optional[Flask] = None
        if app is not None:
            self.init_app(app)
            self._app = app

    def init_app(self, app: Flask) -> None:
        """Read ``app``'s ``ANALYTICS_*`` config, build its client and wrap its ``wsgi_app``
        (see :mod:`analytics_flask.middleware`).

        Raises :class:`~analytics_flask.ConfigError` (a ``ValueError``) naming the key when a
        known key has the wrong type (an unknown ``ANALYTICS_*`` key only logs a warning), and
        ``RuntimeError`` if ``app`` already has one.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"analytics_flask: app {app.name!r} already has an Analytics extension; "
                "call init_app once per app"
            )
        config = settings.read(app.config, self._overrides)
        if config["ANALYTICS_IDENTIFY_ON_LOGIN"] and not login.available():
            raise settings.ConfigError(
                "ANALYTICS_IDENTIFY_ON_LOGIN needs Flask-Login (pip install Flask-Login)"
            )
        client = _build_client(settings.client_options(config), app)
        state = AppState(self, client, config, app.static_url_path, app.config)
        self._states[app] = state
        # The extension object itself, as Flask's extension guide says: in a factory-pattern
        # app, current_app.extensions["analytics"].track(...) is this object's track().
        app.extensions[EXTENSION_KEY] = self
        app.wsgi_app = wrap_wsgi_app(app.wsgi_app, state)  # type: ignore[method-assign]
        if state.pageviews:
            PageViewHook(state).install(app)
        if state.identify_on_login:
            login.connect_identify_on_login()

    # -- the app's client --------------------------------------------------------------------

    def _state(self) -> AppState:
        app = current_app._get_current_object() if has_app_context() else self._app
        if app is None and len(self._states) == 1:
            # Outside any application context (a script, a thread) with only one app: it.
            app = next(iter(self._states.keys()))
        if app is None:
            raise RuntimeError(
                "analytics_flask: no application context, and this Analytics object serves "
                f"{len(self._states)} apps; use `with app.app_context():`"
            )
        state = state_of(app)
        if state is None:
            raise RuntimeError(f"analytics_flask: Analytics.init_app() was not called for {app!r}")
        return state

    @property
    def client(self) -> Client:
        """The current app's ``analytics_core.Client``."""
        return self._state().client

    def track(self, *args: Any, **kwargs: Any) -> Result:
        """Record an action on the current app's client (see ``Client.track``)."""
        return self._state().client.track(*args, **kwargs)

    def identify(self, *args: Any, **kwargs: Any) -> Result:
        """Identify a user on the current app's client (see ``Client.identify``)."""
        return self._state().client.identify(*args, **kwargs)

    def page(self, *args: Any, **kwargs: Any) -> Result:
        """Record a page view on the current app's client (see ``Client.page``)."""
        return self._state().client.page(*args, **kwargs)

    def screen(self, *args: Any, **kwargs: Any) -> Result:
        """Record a screen view on the current app's client (see ``Client.screen``)."""
        return self._state().client.screen(*args, **kwargs)

    def group(self, *args: Any, **kwargs: Any) -> Result:
        """Associate a user with a group on the current app's client (see ``Client.group``)."""
        return self._state().client.group(*args, **kwargs)

    def alias(self, *args: Any, **kwargs: Any) -> Result:
        """Merge two user ids on the current app's client (see ``Client.alias``)."""
        return self._state().client.alias(*args, **kwargs)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Block until the current app's client delivered everything queued (or ``timeout``)."""
        return self._state().client.flush(timeout)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver what the current app's client queued and stop its uploader (also done for
        every client at interpreter exit)."""
        return self._state().client.shutdown(timeout)
