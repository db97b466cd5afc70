"""``SegmentMiddleware``: per-request analytics context and delivery at shutdown, pure ASGI."""

import logging
from typing import Any, Dict, Optional

import analytics_core
from analytics_core import Client
from analytics_core.client import ErrorHandler
from analytics_core.context import reset_request_context, set_request_context

from .asgi_types import ASGIApp, Receive, Scope, Send
from .lifespan import run_lifespan
from .options import check_middleware_options, choose_client
from .pageviews import recording_page_views
from .scope_context import context_for_scope
from .threads import run_blocking
from .users import UserIdFromScope, user_id_from_scope_user

__all__ = ["SegmentMiddleware"]

logger = logging.getLogger("segment")


class SegmentMiddleware:
    """Segment analytics for any ASGI app: ``app.add_middleware(SegmentMiddleware, write_key=...)``.

    For every ``http`` request and ``websocket`` connection, the request's context (ip,
    userAgent, locale, page, the ``ajs_anonymous_id`` cookie, the authenticated user's id) is
    current while the app handles it, streamed bodies and background tasks included: every
    analytics call made meanwhile carries it, and the module-level ``analytics_core.track(...)``
    goes to this middleware's client. At the ``lifespan`` shutdown the client's queue is
    delivered (bounded by its ``shutdown_timeout``). Other scopes pass straight through.

    The client is, in this order of choice:

    - ``client``: an ``analytics_core.Client`` you built (no client option may be given then);
    - built from the client options, every ``analytics_core.Client`` option (``write_key``,
      ``host``, ``debug``, ``send``, ``sync_mode``, ``gzip``, ``max_queue_size``,
      ``upload_size``, ``upload_interval``, ``timeout``, ``max_retries``, ``on_error``,
      ``proxies``, ``thread``, ``log_handler``, ``oauth_*``, ``shutdown_timeout``, ``on_full``,
      ``on_full_timeout``, ``persist``); one left out
      (None) keeps Client's default;
    - with neither, analytics_core's module-level default client, configured by
      ``analytics_core.write_key = ...`` etc. before the first request.

    Options of the middleware itself:

    - ``trusted_proxies`` (0): proxy hops whose ``X-Forwarded-For`` / ``Forwarded`` entries are
      believed. 0 means the socket peer is the client's IP, whatever the headers say.
    - ``pageviews`` (False): a ``page`` call for every 2xx ``text/html`` response.
    - ``user_id_from_scope``: ``scope -> user id or None``, called whenever a message is built
      without ids. The default reads ``scope["user"]`` as Starlette's AuthenticationMiddleware
      sets it: its ``identity``, ``id`` or ``pk``, if authenticated.

    Bad options raise :class:`analytics_core.ValidationError` (a ValueError) naming the option.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: Optional[Client] = None,
        trusted_proxies: int = 0,
        pageviews: bool = False,
        user_id_from_scope: Optional[UserIdFromScope] = None,
        write_key: Optional[str] = None,
        host: Optional[str] = None,
        debug: Optional[bool] = None,
        max_queue_size: Optional[int] = None,
        send: Optional[bool] = None,
        on_error: Optional[ErrorHandler] = None,
        gzip: Optional[bool] = None,
        max_retries: Optional[int] = None,
        sync_mode: Optional[bool] = None,
        timeout: Optional[float] = None,
        proxies: Optional[Dict[str, str]] = None,
        thread: Optional[int] = None,
        upload_size: Optional[int] = None,
        upload_interval: Optional[float] = None,
        log_handler: Optional[logging.Handler] = None,
        oauth_client_id: Optional[str] = None,
        oauth_client_key: Optional[str] = None,
        oauth_key_id: Optional[str] = None,
        oauth_auth_server: Optional[str] = None,
        oauth_scope: Optional[str] = None,
        shutdown_timeout: Optional[float] = None,
        on_full: Optional[str] = None,
        on_full_timeout: Optional[float] = None,
        persist: Optional[str] = None,
    ) -> None:
        if not callable(app):
            raise analytics_core.ValidationError(
                f"SegmentMiddleware: app must be an ASGI callable, got {app!r}"
            )
        check_middleware_options(trusted_proxies, pageviews, user_id_from_scope)
        self.app = app
        self.trusted_proxies = int(trusted_proxies)
        self.pageviews = pageviews
        self.user_id_from_scope: UserIdFromScope = user_id_from_scope or user_id_from_scope_user
        # None when the middleware uses analytics_core's default client.
        self.client: Optional[Client] = choose_client(
            client,
            {
                "write_key": write_key,
                "host": host,
                "debug": debug,
                "max_queue_size": max_queue_size,
                "send": send,
                "on_error": on_error,
                "gzip": gzip,
                "max_retries": max_retries,
                "sync_mode": sync_mode,
                "timeout": timeout,
                "proxies": proxies,
                "thread": thread,
                "upload_size": upload_size,
                "upload_interval": upload_interval,
                "log_handler": log_handler,
                "oauth_client_id": oauth_client_id,
                "oauth_client_key": oauth_client_key,
                "oauth_key_id": oauth_key_id,
                "oauth_auth_server": oauth_auth_server,
                "oauth_scope": oauth_scope,
                "shutdown_timeout": shutdown_timeout,
                "on_full": on_full,
                "on_full_timeout": on_full_timeout,
                "persist": persist,
            },
        )
        # What page() and shutdown() are called on: the client, or the module-level API that
        # resolves the default client when it is needed (it may be configured after this).
        self._target: Any = self.client if self.client is not None else analytics_core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: see the class docstring."""
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            await self._with_context(scope, receive, send)
        elif kind == "lifespan":
            await run_lifespan(self.app, scope, receive, send, self._deliver)
        else:
            await self.app(scope, receive, send)

    async def _with_context(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            context = context_for_scope(
                scope,
                trusted_proxies=self.trusted_proxies,
                client=self.client,
                user_id_from_scope=self.user_id_from_scope,
            )
        except Exception:  # a request we cannot describe still gets the app's own answer
            logger.exception("analytics_asgi: could not build the request's context")
            await self.app(scope, receive, send)
            return
        if self.pageviews and scope["type"] == "http":
            send = recording_page_views(send, self._target, scope, context)
        # The app's tasks (a streamed body, background tasks, a threadpool for sync endpoints)
        # start from a copy of this context, so they carry the request's context too.
        token = set_request_context(context)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_request_context(token)

    async def _deliver(self) -> None:
        """Deliver the client's queue, then stop its uploader (a later event restarts it).

        Shutting down rather than flushing reports what cannot be delivered in time to
        ``on_error``: after this the process may die without running ``atexit`` hooks.
        """
        try:
            await run_blocking(self._target.shutdown)
        except Exception:  # delivery problems are the client's to report, not the server's
            logger.exception("analytics_asgi: delivering the queue at shutdown failed")
