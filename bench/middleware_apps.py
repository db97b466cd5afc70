"""Hello-world apps for the middleware-overhead benchmark, one module attribute per server.

The variant comes from the environment, so the same module serves every run:

- ``BENCH_FRAMEWORK``: ``django``, ``flask`` or ``starlette``;
- ``BENCH_VARIANT``: ``plain`` (no analytics at all), ``integration`` (the one-line set-up,
  the endpoint still only says hello) or ``tracking`` (the set-up, and the endpoint tracks one
  event, which shows what a real analytics call adds on top), or ``empty`` (no analytics, but
  the framework's cheapest hook point holding code that does nothing: three empty Flask hooks,
  an empty Django middleware, a pass-through ASGI class; the floor any integration pays);
- ``BENCH_COLLECTOR``: the local collector the integration sends to.

Served as ``bench.middleware_apps:wsgi`` (gunicorn) or ``bench.middleware_apps:asgi`` (uvicorn).
Both variants of a framework have the same stack otherwise; the Django one keeps the session
and authentication middleware of a new project, because that is what users run.
"""

import os

FRAMEWORK = os.environ.get("BENCH_FRAMEWORK", "flask")
VARIANT = os.environ.get("BENCH_VARIANT", "plain")
COLLECTOR = os.environ.get("BENCH_COLLECTOR", "http://127.0.0.1:8086")
WRITE_KEY = "bench-middleware-write-key"
GREETING = "Hello, world!"

if VARIANT not in ("plain", "integration", "tracking", "empty"):
    raise SystemExit(
        f"BENCH_VARIANT must be plain, integration, tracking or empty, not {VARIANT!r}"
    )

TRACKS = VARIANT == "tracking"
INTEGRATED = VARIANT in ("integration", "tracking")
EMPTY = VARIANT == "empty"


class PassThrough:
    """The ``empty`` variant's Django middleware: calls the rest of the chain, nothing else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


class AsgiPassThrough:
    """A pure ASGI middleware that only awaits the app it wraps."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def _nothing(*args):
    return args[0] if args else None


def _track() -> None:
    import analytics_core

    # No ids and no context: the integration fills them in from the request.
    analytics_core.track(event="Hello Served", properties={"greeting": GREETING})


def _django_wsgi():
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpResponse
    from django.urls import path

    def hello(request):
        if TRACKS:
            _track()
        return HttpResponse(GREETING, content_type="text/plain")

    apps = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"]
    if INTEGRATED:
        apps.append("analytics_django")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=apps,
        MIDDLEWARE=[
            *([f"{__name__}.PassThrough"] if EMPTY else []),
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        ANALYTICS={"WRITE_KEY": WRITE_KEY, "HOST": COLLECTOR},
        USE_TZ=True,
    )
    globals()["urlpatterns"] = [path("", hello)]
    django.setup()
    return get_wsgi_application()


def _flask_wsgi():
    from flask import Flask

    app = Flask(__name__)
    if INTEGRATED:
        from analytics_flask import Analytics

        app.config.update(ANALYTICS_WRITE_KEY=WRITE_KEY, ANALYTICS_HOST=COLLECTOR)
        Analytics(app)
    elif EMPTY:
        app.before_request(_nothing)
        app.after_request(_nothing)
        app.teardown_request(_nothing)

    @app.route("/")
    def hello():
        if TRACKS:
            _track()
        return GREETING, 200, {"Content-Type": "text/plain"}

    return app


def _starlette_asgi():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        if TRACKS:
            _track()
        return PlainTextResponse(GREETING)

    app = Starlette(routes=[Route("/", hello)])
    if INTEGRATED:
        from analytics_asgi import SegmentMiddleware

        app.add_middleware(SegmentMiddleware, write_key=WRITE_KEY, host=COLLECTOR)
    elif EMPTY:
        app.add_middleware(AsgiPassThrough)
    return app


if FRAMEWORK == "django":
    wsgi = _django_wsgi()
elif FRAMEWORK == "flask":
    wsgi = _flask_wsgi()
elif FRAMEWORK == "starlette":
    asgi = _starlette_asgi()
else:
    raise SystemExit(f"BENCH_FRAMEWORK must be django, flask or starlette, not {FRAMEWORK!r}")
