"""What the middleware does to an ``http`` response on its way out: the page view and the
``ajs_anonymous_id`` cookie.

The cookie can only travel in ``http.response.start``. A page view is only known to be one once
the first body chunk shows a document (not a plain-string health check), and recording it may
mint the anonymous id that the cookie must carry: so the start of a response that may be a page
view is held back until its first body message, as Starlette's GZipMiddleware does. An app
that ends or raises after its start without a body still gets that start to the server, so the
server answers as it would have without the middleware.
"""

# Annotations stay strings: a nested function's would otherwise be evaluated each time its
# ``def`` runs, on every response (``Awaitable[None]`` alone cost 2,000 instructions).
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, List, Optional, Sequence, Tuple

from analytics_core.web import headers_from_asgi
from analytics_core.web.anonymous_cookie import cookie_header, sets_anonymous_id_cookie
from analytics_core.web.pageviews import ExcludeRule, is_document

from .asgi_types import Message, Scope, Send
from .pageviews import is_page_start, record_page_view
from .scope_context import ScopeRequestContext

__all__ = ["CookieOptions", "responding", "send_with_cookie"]

logger = logging.getLogger("segment")

_SECURE_SCHEMES = ("https", "wss")


class CookieOptions:
    """Whether to hand minted anonymous ids to the browser, and the cookie's domain."""

    __slots__ = ("enabled", "domain")

    def __init__(self, enabled: bool, domain: Optional[str]) -> None:
        self.enabled = enabled
        self.domain = domain


def _with_cookie(
    message: Message, scope: Scope, context: ScopeRequestContext, cookie: CookieOptions
) -> Message:
    anonymous_id = context.minted_anonymous_id
    if anonymous_id is None or not cookie.enabled:
        return message
    headers = list(message.get("headers") or ())
    for name, value in headers:
        if (
            isinstance(name, bytes)
            and name.lower() == b"set-cookie"
            and isinstance(value, bytes)
            and sets_anonymous_id_cookie(value.decode("latin-1"))
        ):
            return message  # the app's own cookie wins
    value = cookie_header(
        anonymous_id, secure=scope.get("scheme") in _SECURE_SCHEMES, domain=cookie.domain
    )
    headers.append((b"set-cookie", value.encode("latin-1")))
    return {**message, "headers": headers}


def responding(
    send: Send,
    scope: Scope,
    context: ScopeRequestContext,
    *,
    target: Any,
    pageviews: bool,
    exclude: Sequence[ExcludeRule],
    cookie: CookieOptions,
) -> Tuple[Send, Callable[[], Awaitable[None]]]:
    """With page views on: ``send``, wrapped to record page views and set the cookie (see the
    module docstring), and ``release``: the middleware awaits it once the app returned or
    raised, so a start still held (the app sent no body after it) reaches the server as the
    app sent it. (Without page views the middleware uses :func:`cookie_sender` alone.)"""
    held: Optional[Message] = None
    # What the server (or an outer app) gave: the part of root_path the app's own Mounts add
    # later belongs to the page's name.
    outer_root_path = scope.get("root_path")

    async def send_response(message: Message) -> None:
        nonlocal held
        kind = message.get("type")
        if kind == "http.response.start":
            if pageviews and _starts_page(message, scope, exclude):
                held = message
                return
            await send(_with_cookie(message, scope, context, cookie))
            return
        if held is not None:
            start, held = held, None
            if kind == "http.response.body":
                body = message.get("body")
                if not isinstance(body, bytes):
                    body = None
                # A first chunk with more to come is a stream: it counts, as the rule says for
                # streamed bodies (its first chunk may be a blank line a template yielded).
                if message.get("more_body") or is_document(body):
                    record_page_view(target, scope, context, body, outer_root_path)
            else:  # a file sent by path (http.response.pathsend): the body is not at hand
                record_page_view(target, scope, context, None, outer_root_path)
            await send(_with_cookie(start, scope, context, cookie))
        await send(message)

    async def release() -> None:
        nonlocal held
        if held is None:
            return
        # The app ended (or raised) after its start and before any body: no page view, but the
        # server must see the start, or it answers 500 where the app answered otherwise.
        start, held = held, None
        await send(_with_cookie(start, scope, context, cookie))

    return send_response, release


def send_with_cookie(
    send: Send, scope: Scope, slot: List[Any], cookie: CookieOptions, message: Message
) -> Awaitable[None]:
    """``send(message)``, with the ``ajs_anonymous_id`` cookie added to the response's start if
    the request minted an anonymous id. Without page views this is all the middleware does to a
    response: bound with ``functools.partial`` (made by C code) as the ``send`` the app gets,
    it looks at one list item per message until a message made the request's context
    (``slot[2]``: see :func:`~analytics_asgi.scope_context.context_in`).

    A plain function answering ``send``'s own awaitable, not an ``async def``: that would make a
    coroutine object per message, on every response (the ASGI spec asks for an awaitable
    callable, which this is)."""
    context = slot[2]
    if (
        context
        and context.minted_anonymous_id is not None
        and message["type"] == "http.response.start"
    ):
        message = _with_cookie(message, scope, context, cookie)
    return send(message)


def _starts_page(message: Message, scope: Scope, exclude: Sequence[ExcludeRule]) -> bool:
    try:
        headers = headers_from_asgi(scope.get("headers") or ())
        return is_page_start(message, scope, headers, exclude)
    except Exception:  # a page view is not worth a failed response
        logger.exception("analytics_asgi: could not tell whether this is a page view")
        return False
