"""Settings of the Django project the integration is tested with.

Nothing is sent unless a test configures it (``ANALYTICS = {"SEND": False}``): the test-client
tests point ``ANALYTICS`` at the collector fixture with pytest-django's ``settings`` fixture.
The end-to-end tests run this project in real servers and configure it from the environment:

- ``ANALYTICS_TEST_HOST``: the collector's URL; when set, events are sent there.
- ``ANALYTICS_TEST_UPLOAD_INTERVAL``: seconds a batch waits (default 60, so that only the
  delivery at shutdown can get the events out: that is what those tests prove).
- ``ANALYTICS_TEST_FLUSH_EACH_REQUEST``: ``"0"`` or ``"1"`` sets ``FLUSH_EACH_REQUEST``
  (default: unset, so runserver flushes each request and the other servers do not).
- ``ANALYTICS_TEST_DB``: the SQLite file (default: in memory).

django.contrib.admin is installed (mounted at /backoffice/ by site_urls.py) so the page-view
tests meet a real admin whose mount point is not the default ``/admin/``.
"""

import os

SECRET_KEY = "tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The whole set-up of the integration is its line in INSTALLED_APPS: it puts its middleware
# first in MIDDLEWARE by itself.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "analytics_django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
# What the admin needs to render (its system checks stop runserver otherwise).
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.django_project.urls"
WSGI_APPLICATION = "tests.django_project.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ANALYTICS_TEST_DB", ":memory:"),
    }
}
# Logging in test users is not what is being measured.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _analytics() -> dict:
    host = os.environ.get("ANALYTICS_TEST_HOST")
    if not host:
        return {"SEND": False}
    analytics = {
        "WRITE_KEY": "django-e2e-key",
        "HOST": host,
        "UPLOAD_INTERVAL": float(os.environ.get("ANALYTICS_TEST_UPLOAD_INTERVAL", "60")),
        "UPLOAD_SIZE": 1000,
    }
    flush = os.environ.get("ANALYTICS_TEST_FLUSH_EACH_REQUEST")
    if flush is not None:
        analytics["FLUSH_EACH_REQUEST"] = flush == "1"
    return analytics


ANALYTICS = _analytics()
