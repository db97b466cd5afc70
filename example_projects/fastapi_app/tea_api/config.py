"""The shop's settings, read from the environment once, at import."""

import os

WRITE_KEY = os.environ.get("ANALYTICS_WRITE_KEY", "example-fastapi-write-key")
"""Your Segment source's write key (the local collector accepts any key)."""

HOST = os.environ.get("ANALYTICS_HOST", "http://127.0.0.1:8086")
"""Where events go: the local collector (``python -m analytics_core.collector``) by default;
``https://api.segment.io`` (or your region's endpoint) in production."""

TRUSTED_PROXIES = int(os.environ.get("ANALYTICS_TRUSTED_PROXIES", "0"))
"""How many proxies (a load balancer, nginx) sit in front of the app and append to
X-Forwarded-For; 0 when browsers connect to uvicorn directly."""

DEBUG = os.environ.get("ANALYTICS_DEBUG", "") == "1"
"""``ANALYTICS_DEBUG=1`` logs every delivered batch on the ``segment`` logger."""

SECRET = os.environ.get("SHOP_SECRET", "change-me: only for the example")
"""Signs the session cookie. Set your own outside a demo."""
