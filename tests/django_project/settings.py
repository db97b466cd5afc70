"""Settings of the Django project the integration is tested with.

Nothing is sent unless a test configures it (``ANALYTICS = {"SEND": False}``): the test-client
tests point ``ANALYTICS`` at the collector fixture with pytest-django's ``settings`` fixture.
The end-to-end tests run this project in real servers and configure it from the environment:

- ``ANALYTICS_TEST_HOST``: the collector's URL; when set, events are sent there.
- ``ANALYTICS_TEST_UPLOAD_INTERVAL``: seconds a batch waits (default 60, so that only the
  delivery at shutdown can get the events out: that is what those tests prove).
- ``ANALYTICS_TEST_DB``: the SQLite file (default: in memory).
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
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "analytics_django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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
    return {
        "WRITE_KEY": "django-e2e-key",
        "HOST": host,
        "UPLOAD_INTERVAL": float(os.environ.get("ANALYTICS_TEST_UPLOAD_INTERVAL", "60")),
        "UPLOAD_SIZE": 1000,
    }


ANALYTICS = _analytics()
