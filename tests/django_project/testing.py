"""Helpers shared by the Django tests (the fixtures live in the test modules)."""

import json
from typing import Any, Dict, List
from urllib.parse import quote

import analytics_core

WRITE_KEY = "django-test-key"


def browser_cookie(anonymous_id: str) -> str:
    """``ajs_anonymous_id`` as analytics.js stores it: JSON-quoted, then URL-encoded."""
    return quote(json.dumps(anonymous_id))


def collector_settings(collector: Any, **extra: Any) -> Dict[str, Any]:
    """``settings.ANALYTICS`` that sends to ``collector`` (plus ``extra`` keys)."""
    return {"WRITE_KEY": WRITE_KEY, "HOST": collector.url, "UPLOAD_INTERVAL": 0.05, **extra}


def delivered(collector: Any, **filters: Any) -> List[Dict[str, Any]]:
    """Flush the default client, then every message the collector holds, oldest first."""
    assert analytics_core.flush(timeout=10), "the client did not deliver within 10 s"
    return collector.events(limit=0, order="asc", **filters)
