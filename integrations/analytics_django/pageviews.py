"""``PAGEVIEWS``: one ``page()`` call for every successful HTML response."""

import logging
from typing import Optional

from django.http import HttpRequest, HttpResponseBase

import analytics_core

from .request_context import DjangoRequestContext

__all__ = ["is_page_view", "page_name", "record_page_view"]

logger = logging.getLogger("segment")


def is_page_view(response: HttpResponseBase) -> bool:
    """A 2xx response whose Content-Type is HTML."""
    if not 200 <= response.status_code < 300:
        return False
    content_type = response.get("Content-Type") or ""
    return content_type.lower().startswith("text/html")


def page_name(request: HttpRequest) -> str:
    """The resolved URL's name (``namespace:name`` when namespaced), else the path."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.url_name:
        return match.view_name
    return request.path


def record_page_view(request: HttpRequest, context: DjangoRequestContext) -> Optional[bool]:
    """Send the page view of ``request`` on the default client, inside its context.

    Skipped (None) when the visitor has neither a user id nor an anonymous id: Segment needs one,
    and inventing an id per request would count every request as a new visitor.
    """
    if context.user_id is None and context.anonymous_id is None:
        logger.debug("analytics_django: no user or anonymous id; page view of %s skipped", request)
        return None
    try:
        ok, _ = analytics_core.page(
            name=page_name(request), properties=dict(context.context.get("page", {}))
        )
    except Exception:  # a page view must never turn a good response into an error
        logger.exception("analytics_django: recording the page view failed")
        return False
    return ok
