"""``SegmentMiddleware``: per-request analytics context and delivery at shutdown, pure ASGI."""

import logging
from functools import partial
from typing import Any, Dict, Optional, Sequence, Union

import analytics_core
from analytics_core import Client
from analytics_core.client import ErrorHandler
from analytics_core.errors import SpoolError
from analytics_core.web.pageviews import ExcludeRule

from .asgi_types import ASGIApp, Receive, Scope, Send
from .lifespan import refuse_startup, run_lifespan
from .options import (
    NOT_GIVEN,
    check_middleware_options,
    choose_client,
    cookie_domain_option,
    forwarded_header_option,
    pageviews_exclude_option,
    user_id_from_scope_option,
)
from .responses import CookieOptions, responding, send_with_cookie
from .scope_context import context_in, end_request, start_request
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
      ``proxies``, ``thread``, ``log_handler``, ``oauth_*``, ``max_total_backoff_duration``,
      ``max_rate_limit_duration``, ``shutdown_timeout``, ``on_full``, ``on_full_timeout``,
      ``persist``); one left out (None) keeps Client's default. ``write_key=None`` or ``""``
      (an unset environment variable) builds a client that sends nothing, with a warning;
    - with neither, analytics_core's module-level default client, configured by
      ``analytics_core.write_key = ...`` etc. before the first request.

    Options of the middleware itself:

    - ``trusted_proxies`` (0): proxy hops whose ``forwarded_header`` entries are believed. 0
      means the socket peer is the client's IP, whatever the headers say (but see the README on
      uvicorn's own ``--forwarded-allow-ips``).
    - ``forwarded_header`` (``"X-Forwarded-For"``): the one header those proxies write;
      ``"Forwarded"`` (RFC 7239) or another list of addresses (``"X-Real-IP"``).
    - ``user_id_from_scope``: ``scope -> user id or None`` (or its dotted path), called
      whenever a message is built without ids. The default reads ``scope["user"]`` as
      Starlette's AuthenticationMiddleware sets it: its ``identity``, ``id`` or ``pk``, if
      authenticated. For FastAPI's dependency-based auth, call
      ``analytics_core.set_user_id(user.id)`` in the dependency instead.
    - ``anonymous_id_cookie`` (True): hand an anonymous id minted for a visitor without one to
      the browser as analytics.js's ``ajs_anonymous_id`` cookie; ``anonymous_id_cookie_domain``
      (None) its Domain attribute.
    - ``pageviews`` (False): a ``page`` call for every page a browser loads
      (:mod:`analytics_core.web.pageviews`); ``pageviews_exclude`` (None: the defaults, plus
      FastAPI's documentation pages) the paths that never make one.

    A bad option (or a ``persist`` spool that cannot be opened) is an error naming it: logged
    when the middleware is built, and raised by the lifespan's startup, which fails with it (the
    server stops, saying why). Where no lifespan runs, requests are served by a client that
    sends nothing, never answered with a 500.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: Optional[Client] = None,
        trusted_proxies: int = 0,
        forwarded_header: str = "X-Forwarded-For",
        pageviews: bool = False,
        pageviews_exclude: Optional[Sequence[ExcludeRule]] = None,
        user_id_from_scope: Union[UserIdFromScope, str, None] = None,
        anonymous_id_cookie: bool = True,
        anonymous_id_cookie_domain: Optional[str] = None,
        write_key: Optional[str] = NOT_GIVEN,
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
        max_total_backoff_duration: Optional[float] = None,
        max_rate_limit_duration: Optional[float] = None,
        shutdown_timeout: Optional[float] = None,
        on_full: Optional[str] = None,
        on_full_timeout: Optional[float] = None,
        persist: Optional[str] = None,
    ) -> None:
        if not callable(app):
            raise analytics_core.ValidationError(
                f"SegmentMiddleware: app must be an ASGI callable, got {app!r}"
            )
        self.app = app
        self.setup_error: Optional[Exception] = None
        client_options = {
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
            "max_total_backoff_duration": max_total_backoff_duration,
            "max_rate_limit_duration": max_rate_limit_duration,
            "shutdown_timeout": shutdown_timeout,
            "on_full": on_full,
            "on_full_timeout": on_full_timeout,
            "persist": persist,
        }
        middleware_options = {
            "trusted_proxies": trusted_proxies,
            "forwarded_header": forwarded_header,
            "pageviews": pageviews,
            "pageviews_exclude": pageviews_exclude,
            "user_id_from_scope": user_id_from_scope,
            "anonymous_id_cookie": anonymous_id_cookie,
            "anonymous_id_cookie_domain": anonymous_id_cookie_domain,
        }
        try:
            self._configure(client, client_options, middleware_options)
        except (ValueError, SpoolError) as error:
            # Starlette and FastAPI build their middleware on the first call, inside the
            # server: raised here, the error would fail that call only. uvicorn's default
            # lifespan mode then reads it as "lifespan unsupported", starts anyway and answers
            # every request with a 500. Instead, the lifespan's startup fails with the error
            # (the server stops at once, saying why), and where no lifespan runs the app is
            # served by a client that sends nothing, with the options' defaults.
            self.setup_error = error
            logger.error(
                "%s; this app's events will not be sent (its lifespan startup fails with this "
                "error)",
                error,
            )
            defaults = SegmentMiddleware.__init__.__kwdefaults__
            self._configure(
                Client(send=False), {}, {name: defaults[name] for name in middleware_options}
            )
        # What page() and shutdown() are called on: the client, or the module-level API that
        # resolves the default client when it is needed (it may be configured after this).
        self._target: Any = self.client if self.client is not None else analytics_core

    def _configure(
        self,
        client: Optional[Client],
        client_options: Dict[str, Any],
        options: Dict[str, Any],
    ) -> None:
        """Check the options and set what requests read; raises the first bad option's error."""
        check_middleware_options(
            options["trusted_proxies"], options["pageviews"], options["anonymous_id_cookie"]
        )
        self.trusted_proxies = int(options["trusted_proxies"])
        self.forwarded_header = forwarded_header_option(options["forwarded_header"])
        self.pageviews = options["pageviews"]
        self.pageviews_exclude = pageviews_exclude_option(options["pageviews_exclude"])
        self.user_id_from_scope: UserIdFromScope = (
            user_id_from_scope_option(options["user_id_from_scope"]) or user_id_from_scope_user
        )
        self.cookie = CookieOptions(
            options["anonymous_id_cookie"],
            cookie_domain_option(options["anonymous_id_cookie_domain"]),
        )
        # None when the middleware uses analytics_core's default client.
        self.client: Optional[Client] = choose_client(client, client_options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: see the class docstring."""
        kind = scope["type"]
        if kind == "http" and not self.pageviews:
            # Every request takes this path and most send nothing: it makes one list current
            # and wraps send for the cookie; the context is made only when a message needs it
            # (scope_context.current_scope_context). Written out here, not split into helpers:
            # each call layer costs about as much as this work.
            slot = [scope, self, None]
            token = start_request(slot)
            try:
                await self.app(
                    scope,
                    receive,
                    partial(send_with_cookie, send, scope, slot, self.cookie)
                    if self.cookie.enabled
                    else send,
                )
            finally:
                end_request(token)
            return
        if kind == "http" or kind == "websocket":
            await self._serve(kind, scope, receive, send)
        elif kind == "lifespan":
            if self.setup_error is not None:
                await refuse_startup(receive, send, self.setup_error)
            else:
                await run_lifespan(self.app, scope, receive, send, self._deliver)
        else:
            await self.app(scope, receive, send)

    async def _serve(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        """A websocket connection, or an ``http`` request with page views on: a start that may
        be a page view is held until its first body (see :mod:`analytics_asgi.responses`)."""
        slot = [scope, self, None]
        context = context_in(slot) if kind == "http" else None
        if context is not None:
            send, release = responding(
                send,
                scope,
                context,
                target=self._target,
                pageviews=True,
                exclude=self.pageviews_exclude,
                cookie=self.cookie,
            )
        else:  # a websocket, or a request we cannot describe (logged): no page views
            release = None
        # The app's tasks (a streamed body, background tasks, a threadpool for sync endpoints)
        # start from a copy of this context, so they carry the request's context too.
        token = start_request(slot)
        try:
            await self.app(scope, receive, send)
        except Exception:
            if release is not None:
                try:
                    await release()
                except Exception:  # the app's own exception is the one the server must see
                    logger.debug("analytics_asgi: a held response start could not be sent")
            raise
        else:
            if release is not None:
                await release()
        finally:
            end_request(token)

    async def _deliver(self) -> None:
        """Deliver the client's queue, then stop its uploader (a later event restarts it).

        Shutting down rather than flushing reports what cannot be delivered in time to
        ``on_error``: after this the process may die without running ``atexit`` hooks.
        """
        try:
            await run_blocking(self._target.shutdown)
        except Exception:  # delivery problems are the client's to report, not the server's
            logger.exception("analytics_asgi: delivering the queue at shutdown failed")
