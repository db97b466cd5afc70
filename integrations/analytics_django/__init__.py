"""analytics_django: analytics_core for Django, set up by adding the app.

::

    INSTALLED_APPS += ["analytics_django"]
    ANALYTICS = {"WRITE_KEY": os.environ.get("SEGMENT_WRITE_KEY")}

That is all. When the app is ready it builds an ``analytics_core.Client`` from
``settings.ANALYTICS`` and makes it ``analytics_core.default_client``, so
``import analytics_core as analytics; analytics.track(...)`` anywhere in the project uses it; and
it puts ``analytics_django.middleware.AnalyticsMiddleware`` first in ``settings.MIDDLEWARE``
(unless it is listed already or ``"AUTO_MIDDLEWARE": False``). Inside a request,
``analytics.track(event="Order Completed")`` needs no ids and no context: the request's ``ip``,
``userAgent``, ``locale``, ``page`` and who the visitor is (the ``USER_ID`` setting's answer or
the authenticated user's id, else the browser's ``ajs_anonymous_id`` cookie, else an anonymous
id minted for the request and handed to the browser as that cookie) are filled in; what the
call passes explicitly wins, key by key. A call with bad arguments inside a request is logged,
never raised into it.

Keys of ``settings.ANALYTICS`` (see ``analytics_django.settings.CONFIG_DEFAULTS``): the client's
options ``WRITE_KEY``, ``HOST``, ``DEBUG``, ``SEND``, ``SYNC_MODE``, ``GZIP``,
``MAX_QUEUE_SIZE``, ``UPLOAD_SIZE``, ``UPLOAD_INTERVAL``, ``TIMEOUT``, ``MAX_RETRIES``,
``ON_ERROR`` (a callable or its dotted path), ``THREAD``, ``PROXIES``, ``SHUTDOWN_TIMEOUT``,
``ON_FULL``, ``ON_FULL_TIMEOUT``, ``PERSIST`` and
``OAUTH_CLIENT_ID``, ``OAUTH_CLIENT_KEY``, ``OAUTH_KEY_ID``, ``OAUTH_AUTH_SERVER``,
``OAUTH_SCOPE``; and the integration's own (defaults and meanings in
``analytics_django.settings.CONFIG_DEFAULTS``): ``TRUSTED_PROXIES``, ``FORWARDED_HEADER``,
``USER_ID``, ``ANONYMOUS_ID_COOKIE``, ``ANONYMOUS_ID_COOKIE_DOMAIN``, ``PAGEVIEWS``,
``PAGEVIEWS_EXCLUDE``, ``IDENTIFY_ON_LOGIN``, ``FLUSH_EACH_REQUEST`` and ``AUTO_MIDDLEWARE``.
``manage.py check`` reports mistakes (``analytics_django.E001`` to ``E005``); they never stop
the project from starting.

Logging: the client logs on the ``segment`` logger (delivery failures as warnings; each delivered
batch at DEBUG). ``"DEBUG": True`` sets that logger to DEBUG. To route it with Django's
``LOGGING``::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "loggers": {
            "segment": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }

Shutdown: what is queued is delivered when the process exits (analytics_core's ``atexit``
hook, bounded by ``SHUTDOWN_TIMEOUT``), including gunicorn workers that are recycled or stopped.
A process stopped with SIGTERM would die before that hook (the default disposition, or uvicorn
re-raising SIGTERM after its graceful shutdown), so when the client sends, the app installs
analytics_core's SIGTERM handling, which delivers first and then lets the process die by the
signal as it would have (``analytics_core.signals``). Under ``runserver``, whose autoreloader
SIGKILLs the serving process on SIGTERM, each request's events are delivered before its response
(``FLUSH_EACH_REQUEST``).

In tests nothing is sent: under Django's test runner messages go to ``analytics_django.outbox``
(see ``analytics_django.testing``), under pytest to analytics-core's ``analytics_events``
capture. ``override_settings(ANALYTICS={...})`` (or pytest-django's ``settings`` fixture)
rebuilds the client from the new settings.
"""


def __getattr__(name: str) -> object:
    # ``analytics_django.outbox``: computed on each access, like Django's mail.outbox it is a new
    # list for each test, and it exists only while Django's test environment is set up.
    if name == "outbox":
        from .testing import current_outbox

        outbox = current_outbox()
        if outbox is not None:
            return outbox
    raise AttributeError(f"module 'analytics_django' has no attribute {name!r}")
