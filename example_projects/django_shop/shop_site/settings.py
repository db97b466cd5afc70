"""Settings of the example shop.

The analytics set-up is the ``"analytics_django"`` line in INSTALLED_APPS plus the ANALYTICS
dict below, read from the environment:

- ``ANALYTICS_WRITE_KEY``: your Segment source's write key (any value works with the local
  collector, ``python -m analytics_core.collector``).
- ``ANALYTICS_HOST``: where events go; by default the local collector on port 8086.
- ``ANALYTICS_LOG_LEVEL``: the level of the ``segment`` logger (``DEBUG`` logs every batch).
- ``SHOP_DB``: the SQLite file (default ``db.sqlite3`` next to manage.py).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example-shop-not-a-secret")
DEBUG = os.environ.get("SHOP_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "shop",
    "analytics_django",  # the whole analytics set-up: it adds its middleware by itself
]

ANALYTICS = {
    "WRITE_KEY": os.environ.get("ANALYTICS_WRITE_KEY", "example-shop-write-key"),
    "HOST": os.environ.get("ANALYTICS_HOST", "http://127.0.0.1:8086"),
    "PAGEVIEWS": True,  # a page call for every HTML page served
    "IDENTIFY_ON_LOGIN": True,  # an identify call when someone logs in
    # Who the events are about, for the API's token authentication, which Django's auth (read
    # by default) does not see: a function taking the request.
    "USER_ID": "shop.analytics.customer_id",
    # On by default: a visitor without the cookie gets one the first time a call needs an id.
    # False keeps that id to the request (for a site that asks consent before such cookies).
    "ANONYMOUS_ID_COOKIE": True,
}

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "shop_site.urls"
WSGI_APPLICATION = "shop_site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"

# The analytics client logs on the "segment" logger: delivery failures as warnings, every
# delivered batch at DEBUG.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "segment": {
            "handlers": ["console"],
            "level": os.environ.get("ANALYTICS_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
    },
}
