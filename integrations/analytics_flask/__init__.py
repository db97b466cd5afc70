"""analytics_flask: Segment analytics for Flask, one line to set up.

::

    from flask import Flask
    from analytics_flask import Analytics

    app = Flask(__name__)
    app.config["ANALYTICS_WRITE_KEY"] = "YOUR_WRITE_KEY"
    analytics = Analytics(app)

    @app.post("/orders")
    def order():
        analytics.track(event="Order Completed", properties={"total": 12.5})
        # or, the same inside a request: analytics_core.track(event="Order Completed")
        return "ok"

With an application factory::

    analytics = Analytics()

    def create_app():
        app = Flask(__name__)
        app.config.from_object("settings")
        analytics.init_app(app)
        return app

Inside a request no user id and no context are needed: the request's ip, userAgent, locale,
page (url, path, search, referrer), the ``ajs_anonymous_id`` cookie of analytics.js and, with
Flask-Login, the logged-in user's id are filled in. Explicit arguments win, key by key.

Configuration (``app.config``, read by ``init_app``; ``CONFIG_DEFAULTS`` has every key and its
default): ``ANALYTICS_<OPTION>`` for every ``analytics_core.Client`` option (``WRITE_KEY``,
``HOST``, ``DEBUG``, ``SEND``, ``SYNC_MODE``, ``GZIP``, ``MAX_QUEUE_SIZE``, ``UPLOAD_SIZE``,
``UPLOAD_INTERVAL``, ``TIMEOUT``, ``MAX_RETRIES``, ``ON_ERROR`` (a callable or a dotted path),
``THREAD``, ``PROXIES``, ``LOG_HANDLER``, ``SHUTDOWN_TIMEOUT``, ``ON_FULL``, ``ON_FULL_TIMEOUT``,
``PERSIST``, ``OAUTH_*``), and:

- ``ANALYTICS_TRUSTED_PROXIES`` (0): proxy hops whose ``X-Forwarded-For`` / ``Forwarded`` entries
  are believed. 0 means the socket peer is the client's IP, whatever the headers say.
- ``ANALYTICS_FORWARDED_HEADER`` ("X-Forwarded-For"): the one header those proxies write
  (``"Forwarded"`` is read as RFC 7239); every other forwarding header is ignored.
- ``ANALYTICS_USER_ID`` (None): a callable taking the request (or its dotted path) that returns
  the user's id; None reads Flask-Login's user (its stable ``id``, else ``get_id()``).
- ``ANALYTICS_ANONYMOUS_ID_COOKIE`` (True): a visitor without ids whose request made a call gets
  the anonymous id minted for it as analytics.js's ``ajs_anonymous_id`` cookie;
  ``ANALYTICS_ANONYMOUS_ID_COOKIE_DOMAIN`` (None) is that cookie's Domain.
- ``ANALYTICS_PAGEVIEWS`` (False): a ``page`` call for every page a browser loads (an HTML
  document; see ``analytics_core.web.pageviews``), named after its URL rule.
- ``ANALYTICS_PAGEVIEWS_EXCLUDE`` (None): path prefixes and compiled regexes that never make a
  page view; None is ``analytics_core.web.pageviews.DEFAULT_EXCLUDE`` plus the app's static path.
- ``ANALYTICS_IDENTIFY_ON_LOGIN`` (False): an ``identify`` call when Flask-Login logs a user in,
  with the user's ``email`` and ``name`` as traits when it has them.
- ``ANALYTICS_FLUSH_EACH_REQUEST`` (None): deliver a request's events before its response is sent
  (waiting at most ``ANALYTICS_TIMEOUT``). None means: only under the Werkzeug development
  server, which a SIGTERM stops without giving the client a chance to deliver at exit.

A value of the wrong type for a known key raises :class:`ConfigError` (a ``ValueError``) naming
the key; an unknown ``ANALYTICS_*`` key (a typo, or the app's own ``ANALYTICS_GOOGLE_ID``) only
logs a warning with the closest known name. A missing write key only logs a warning: nothing is
sent.

Logging goes to the ``segment`` logger. ``ANALYTICS_DEBUG = True`` sets it to DEBUG (with a
handler if it has none); to choose the format and destination yourself::

    import logging
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    segment = logging.getLogger("segment")
    segment.addHandler(handler)
    segment.setLevel(logging.DEBUG)  # logging.WARNING: only delivery failures

Shutdown: what was accepted is delivered when the process exits normally (gunicorn's graceful
worker exits on SIGTERM, ``--max-requests`` recycling, ``--preload``'s forked workers, each with
their own uploader); the development server delivers each request's events as it goes.
"""

from .config import CONFIG_DEFAULTS, ConfigError
from .extension import Analytics

__all__ = ["CONFIG_DEFAULTS", "Analytics", "ConfigError"]
