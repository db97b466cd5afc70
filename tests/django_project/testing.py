"""Helpers shared by the Django tests (the fixtures live in the test modules)."""

import json
import uuid
from typing import Any, Dict, List
from urllib.parse import quote

import django
import pytest
from asgiref.sync import async_to_sync

import analytics_core

WRITE_KEY = "django-test-key"

# The login views, as parameters: ``/alogin/`` awaits aauthenticate() and alogin(), which
# Django has only since 5.0 (on 4.2 an async view can only log in through sync_to_async).
LOGIN_VIEWS = [
    "/login/",
    pytest.param(
        "/alogin/",
        marks=pytest.mark.skipif(
            django.VERSION < (5, 0),
            reason=f"Django {django.get_version()} has no aauthenticate()/alogin() (Django 5.0+)",
        ),
    ),
]


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


def request(client: Any, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
    """``client.<method>(path, ...)`` with Django's ``Client`` or ``AsyncClient`` (run to the
    end), so one test body covers the WSGI and the ASGI handler."""
    call = getattr(client, method)
    if client.__class__.__name__ == "AsyncClient":
        # Through a coroutine function: Django 4.2's AsyncClient.get() is a plain method that
        # returns a coroutine, which async_to_sync warns about.
        async def run() -> Any:
            return await call(path, *args, **kwargs)

        return async_to_sync(run)()
    return call(path, *args, **kwargs)


def get(client: Any, path: str, **kwargs: Any) -> Any:
    """GET with either test client."""
    return request(client, "get", path, **kwargs)


def post(client: Any, path: str, data: Any = None, **kwargs: Any) -> Any:
    """POST with either test client."""
    return request(client, "post", path, data, **kwargs)


def only(events: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The one message of ``events`` (fails showing them all otherwise)."""
    assert len(events) == 1, events
    return events[0]


def minted(anonymous_id: Any) -> str:
    """``anonymous_id``, asserted to be what the integration mints: a random UUID, as text."""
    assert isinstance(anonymous_id, str), anonymous_id
    parsed = uuid.UUID(anonymous_id)
    assert parsed.version == 4 and str(parsed) == anonymous_id, anonymous_id
    return anonymous_id
