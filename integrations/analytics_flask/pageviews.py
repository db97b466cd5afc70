"""``ANALYTICS_PAGEVIEWS``: one ``page()`` call for every successful HTML response."""

import logging

from flask import Request, Response

from analytics_core import Client
from analytics_core.context import RequestContext

__all__ = ["is_page_view", "record_page_view"]

logger = logging.getLogger("segment")


def is_page_view(response: Response) -> bool:
    """A 2xx response whose content type is HTML."""
    return 200 <= response.status_code < 300 and response.mimetype == "text/html"


def record_page_view(client: Client, request: Request, context: RequestContext) -> None:
    """Send the page view of ``request`` (named after its endpoint) on ``client``.

    Skipped when the visitor has neither a user id nor an anonymous id: Segment needs one, and
    inventing an id per request would count every request as a new visitor.
    """
    if context.user_id is None and context.anonymous_id is None:
        logger.debug("analytics_flask: no user or anonymous id; page view of %s skipped", request)
        return
    try:
        client.page(
            name=request.endpoint or request.path,
            properties=dict(context.context.get("page", {})),
        )
    except Exception:  # a page view must never turn a good response into an error
        logger.exception("analytics_flask: recording the page view failed")
