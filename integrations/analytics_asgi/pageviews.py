"""``pageviews=True``: one ``page()`` call for every successful HTML response."""

import logging
from typing import Any, Optional

from .asgi_types import Message, Scope, Send
from .scope_context import ScopeRequestContext

__all__ = ["is_page_view", "page_name", "record_page_view", "recording_page_views"]

logger = logging.getLogger("segment")


def is_page_view(message: Message) -> bool:
    """An ``http.response.start`` message with a 2xx status and an HTML content type."""
    status = message.get("status")
    if not isinstance(status, int) or not 200 <= status < 300:
        return False
    for name, value in message.get("headers") or ():
        # Servers reject headers that are not bytes; this check must not fail before they do.
        if isinstance(name, bytes) and name.lower() == b"content-type":
            if not isinstance(value, bytes):
                return False
            return value.split(b";", 1)[0].strip().lower() == b"text/html"
    return False


def page_name(scope: Scope) -> str:
    """The matched route's name (Starlette and FastAPI put the route in the scope; its name is
    the endpoint's unless given), else the endpoint's ``__name__``, else the path."""
    for name in (
        getattr(scope.get("route"), "name", None),
        getattr(scope.get("endpoint"), "__name__", None),
    ):
        if isinstance(name, str) and name:
            return name
    return str(scope.get("path") or "/")


def record_page_view(target: Any, scope: Scope, context: ScopeRequestContext) -> Optional[bool]:
    """Send the page view of the request described by ``scope`` through ``target`` (a Client,
    or the ``analytics_core`` module for its default client).

    Skipped (None) when the visitor has neither a user id nor an anonymous id: Segment needs one,
    and inventing an id per request would count every request as a new visitor.
    """
    user_id, anonymous_id = context.user_id, context.anonymous_id
    if user_id is None and anonymous_id is None:
        logger.debug("analytics_asgi: no id; no page view of %s", scope.get("path"))
        return None
    try:
        # Everything passed explicitly: an app may send the response from a thread or task
        # that did not inherit the request's context.
        ok, _ = target.page(
            user_id=user_id,
            anonymous_id=anonymous_id,
            name=page_name(scope),
            properties=dict(context.context.get("page", {})),
            context=context.context,
        )
    except Exception:  # a page view must never turn a good response into an error
        logger.exception("analytics_asgi: recording the page view failed")
        return False
    return ok


def recording_page_views(
    send: Send, target: Any, scope: Scope, context: ScopeRequestContext
) -> Send:
    """``send``, wrapped to record a page view once the start of an HTML 2xx response is sent.

    The view is recorded at the response's start because only then does the scope carry what
    the app found out (the route, the authenticated user).
    """

    async def send_and_record(message: Message) -> None:
        await send(message)
        if message["type"] == "http.response.start" and is_page_view(message):
            record_page_view(target, scope, context)

    return send_and_record
