"""``AnalyticsMiddleware``: makes each request's context current while Django handles it.

Hybrid (sync and async capable), so it adds no thread hop under WSGI or ASGI. Every analytics
call made while the request is handled (in the view, in other middleware, in signal receivers)
is merged with the request's context and, when it names no user, takes the request's user id
and ``ajs_anonymous_id``. The context is always reset when the request ends, exception or not.

It is inserted first in ``settings.MIDDLEWARE`` automatically (``AUTO_MIDDLEWARE``), so that
the context also covers the other middleware.

When the response is ready: the page view (``PAGEVIEWS``), then the ``ajs_anonymous_id`` cookie
if a call of this request minted an anonymous id (``ANONYMOUS_ID_COOKIE``), then, under
``runserver`` (``FLUSH_EACH_REQUEST``), the delivery of the request's events.

Note: the body of a streaming response is produced after the middleware returned, so calls made
while streaming see no request context.
"""

import asyncio
import contextlib
import logging
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple, Union

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

import analytics_core
from analytics_core.context import (
    context_set_by_integration,
    reset_request_context,
    set_request_context,
)

from .options import RequestOptions, get_options
from .pageviews import is_page_view, record_page_view
from .request_context import DjangoRequestContext
from .responses import flush_wanted, set_anonymous_id_cookie

__all__ = ["AnalyticsMiddleware"]

logger = logging.getLogger("segment")

GetResponse = Callable[[HttpRequest], Union[HttpResponseBase, Awaitable[HttpResponseBase]]]


class AnalyticsMiddleware:
    """Sets the per-request analytics context (see the module docstring)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view

    # The user id is read lazily, when a message is built (see request_context.py), except for an
    # async view: a message built in an event loop cannot query the database synchronously, so
    # the user is read before such a view runs. process_view is the first hook that runs after
    # the inner middleware (AuthenticationMiddleware among them) set request.user / auser. A
    # sync view needs nothing here, so it pays for no query it might not use.

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Tuple[Any, ...],
        view_kwargs: Dict[str, Any],
    ) -> Optional[HttpResponseBase]:
        """Sync chain (WSGI): read the user now if the view is async (it runs in a loop)."""
        try:  # _is_async_view's cache, looked up here: one call less on every request
            is_async = _ASYNC_VIEWS[view_func]
        except (KeyError, TypeError):  # not seen yet, or unhashable
            is_async = _is_async_view(view_func)
        if is_async:
            context = _context_of(request)
            if context is not None:
                context.resolve_now()
        return None

    async def _aprocess_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Tuple[Any, ...],
        view_kwargs: Dict[str, Any],
    ) -> Optional[HttpResponseBase]:
        """Async chain (ASGI): ``await request.auser()`` if the view is async."""
        if _is_async_view(view_func):
            context = _context_of(request)
            if context is not None:
                await context.resolve_async()
        return None

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        options = get_options()
        try:  # _build_context, written out: one call less on every request
            context = DjangoRequestContext(request, options)
        except Exception:  # the request is served without analytics context rather than not at all
            logger.exception("analytics_django: could not build the request's analytics context")
            return self.get_response(request)
        token = set_request_context(context)
        try:
            response = self.get_response(request)
            # Most requests send nothing: the checks that then come out false are made here,
            # before any call (each call costs about what its check does).
            if options.pageviews and _is_page_view(request, response):
                record_page_view(request, response, context)
            if context.minted_anonymous_id is not None:
                set_anonymous_id_cookie(request, response, context, options)
            # context._fill is None: was_read, without a property call.
            if context._fill is None and flush_wanted(request, options):
                _flush(options)
            return response
        finally:
            reset_request_context(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        """The async path: same as ``__call__``, awaiting the inner chain."""
        options = get_options()
        context = _build_context(request, options)
        if context is None:
            return await self.get_response(request)
        token = set_request_context(context)
        try:
            response = await self.get_response(request)
            if options.pageviews and _is_page_view(request, response):
                # The page call is built here, in the loop: read the user asynchronously unless
                # process_view did (it does not for a sync view, nor when a middleware answered).
                await context.resolve_async()
                record_page_view(request, response, context)
            set_anonymous_id_cookie(request, response, context, options)
            if flush_wanted(request, options):
                await asyncio.get_running_loop().run_in_executor(None, _flush, options)
            return response
        finally:
            reset_request_context(token)


_ASYNC_VIEWS: Dict[Any, bool] = {}
"""Whether each view function seen is async: asking inspect costs every request about as much
as the rest of the middleware does. Views are few and live as long as the URLconf."""

_ASYNC_VIEWS_LIMIT = 10_000
"""Beyond this many (views made per request?), stop remembering: ask inspect each time."""


def _is_async_view(view_func: Callable[..., Any]) -> bool:
    try:
        return _ASYNC_VIEWS[view_func]
    except (KeyError, TypeError):  # not seen yet, or unhashable
        found = iscoroutinefunction(view_func)
    if len(_ASYNC_VIEWS) < _ASYNC_VIEWS_LIMIT:
        with contextlib.suppress(TypeError):
            _ASYNC_VIEWS[view_func] = found
    return found


def _build_context(request: HttpRequest, options: RequestOptions) -> Optional[DjangoRequestContext]:
    try:
        return DjangoRequestContext(request, options)
    except Exception:  # the request is served without analytics context rather than not at all
        logger.exception("analytics_django: could not build the request's analytics context")
        return None


def _is_page_view(request: HttpRequest, response: HttpResponseBase) -> bool:
    try:
        return is_page_view(request, response)
    except Exception:  # a page view is not worth a failed response
        logger.exception("analytics_django: could not tell whether this is a page view")
        return False


def _flush(options: RequestOptions) -> None:
    try:
        analytics_core.flush(options.flush_timeout)
    except Exception:  # delivery problems are the client's to report, not the request's
        logger.exception("analytics_django: delivering the request's events failed")


def _context_of(request: HttpRequest) -> Optional[DjangoRequestContext]:
    context = context_set_by_integration()  # this middleware set it (C, no lookups)
    if isinstance(context, DjangoRequestContext) and context.request is request:
        return context
    return None
