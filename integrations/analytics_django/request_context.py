"""A Django request's analytics context, with the user id resolved when a message needs it.

Why lazily: our middleware is first in the chain, so when it starts, AuthenticationMiddleware
has not run yet and ``request.user`` does not exist. Reading the user when a message is built
also gives the right answer after ``login()``/``logout()`` inside the view, and costs no
session or user query for requests that send nothing.

What "resolving" may do depends on where the message is built:

- ``request.user`` already evaluated (or replaced by ``login()``): its id, no query.
- In synchronous code (WSGI, or a sync view that ASGI Django runs in a thread): evaluate
  ``request.user``, exactly as the view itself would (one cached query per request).
- In an event loop (an async view): a synchronous query is forbidden there, so the id the
  middleware read before an async view ran is used (``resolve_async``: ``await
  request.auser()`` under ASGI; ``resolve_now``: ``request.user`` under WSGI, where Django runs
  the async view in an event loop of its own). A call made in an event loop before the view
  runs (in an async middleware) has no user id unless ``request.user`` was evaluated already.

The ``USER_ID`` setting's resolver is asked the same way: in synchronous code whenever a message
needs it; in an event loop it is asked first too (it may read a header, or a user that
``alogin()`` just set), and when it needed a database query there (``SynchronousOnlyOperation``),
the answer it gave before the async view ran, in a thread, is used.
"""

import asyncio
import logging
from typing import Any, Dict, Optional, Tuple

from asgiref.sync import sync_to_async
from django.core.exceptions import DisallowedHost, SynchronousOnlyOperation
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest
from django.utils.functional import LazyObject, empty

from analytics_core.context import RequestContext
from analytics_core.web import (
    headers_from_wsgi,
    request_fields,
    warn_if_the_server_rewrote_the_peer,
)

from .options import RequestOptions

__all__ = ["DjangoRequestContext", "context_for", "user_id_of"]

logger = logging.getLogger("segment")

_UNRESOLVED = object()


def user_id_of(user: Any) -> Optional[str]:
    """The primary key of an authenticated user, as a string; None for anonymous users."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class DjangoRequestContext(RequestContext):
    """A :class:`RequestContext` whose ``user_id`` is read from the request on demand."""

    __slots__ = ("request", "options", "_explicit_user_id", "_early_user_id")

    def __init__(self, request: HttpRequest, options: RequestOptions) -> None:
        self.request = request
        self.options = options
        self._explicit_user_id: Optional[str] = None
        self._early_user_id: Any = _UNRESOLVED
        # Every request builds one, most of which send nothing: the base's fields are set here,
        # not through RequestContext._start (one call less) nor user_id's property, and read by
        # _read_fields, without a partial to make, the first time a message needs them.
        self._context: Dict[str, Any] = {}
        self._anonymous_id: Optional[str] = None
        self._fill: Any = True
        self.client = None
        self.minted_anonymous_id: Optional[str] = None

    def _read_fields(self) -> Tuple[Dict[str, Any], Optional[str]]:
        options = self.options
        return _fields(self.request, options.trusted_proxies, options.forwarded_header)

    @property  # type: ignore[override]
    def user_id(self) -> Optional[str]:
        """The request's user id: assigned (``analytics_core.set_user_id``), else the
        ``USER_ID`` setting's answer, else the authenticated ``request.user``'s primary key
        (see the module docstring for when that is read)."""
        if self._explicit_user_id is not None:
            return self._explicit_user_id
        resolver = self.options.user_id
        if resolver is not None:
            return self._resolver_user_id(resolver)
        user = getattr(self.request, "user", None)
        if user is None:  # django.contrib.auth's middleware is not installed (or not yet run)
            return None
        evaluated = not isinstance(user, LazyObject) or user._wrapped is not empty
        if not evaluated:
            if self._early_user_id is not _UNRESOLVED:
                return self._early_user_id
            if _in_event_loop():
                return None
        try:
            return user_id_of(user)
        except Exception:  # a failing session or user query must not break the caller's call
            logger.warning("analytics_django: could not read request.user", exc_info=True)
            return None

    @user_id.setter
    def user_id(self, value: Optional[str]) -> None:
        self._explicit_user_id = value

    def _resolver_user_id(self, resolver: Any) -> Optional[str]:
        if not _in_event_loop():
            return _resolved(resolver, self.request)
        try:
            return _resolved(resolver, self.request, (SynchronousOnlyOperation,))
        except SynchronousOnlyOperation:
            # It queries the database (a session, request.user, a table of its own): use
            # what it answered before the async view ran.
            if self._early_user_id is _UNRESOLVED:
                logger.warning(
                    "analytics_django: ANALYTICS['USER_ID'] needs the database, which cannot be "
                    "queried in an event loop here; no user id"
                )
                return None
            return self._early_user_id

    def resolve_now(self) -> None:
        """Read ``request.user``, or ask the ``USER_ID`` resolver (once), for messages built
        later in an event loop."""
        if self._early_user_id is not _UNRESOLVED:
            return
        resolver = self.options.user_id
        if resolver is not None:
            self._early_user_id = _resolved(resolver, self.request)
            return
        try:
            self._early_user_id = user_id_of(getattr(self.request, "user", None))
        except Exception:
            logger.warning("analytics_django: could not read request.user", exc_info=True)
            self._early_user_id = None

    async def resolve_async(self) -> None:
        """Read the user with ``await request.auser()``, or ask the ``USER_ID`` resolver in a
        thread (once), for messages built in the loop."""
        if self._early_user_id is not _UNRESOLVED:
            return
        request = self.request
        resolver = self.options.user_id
        if resolver is not None:
            # In a thread: the project's resolver may query the database.
            self._early_user_id = await sync_to_async(_resolved)(resolver, request)
            return
        try:
            auser = getattr(request, "auser", None)
            if auser is not None:
                self._early_user_id = user_id_of(await auser())
            elif hasattr(request, "user"):  # Django 4.2 has no auser(): evaluate in a thread
                self._early_user_id = await sync_to_async(user_id_of)(request.user)
            else:
                self._early_user_id = None
        except Exception:
            logger.warning("analytics_django: could not read the request's user", exc_info=True)
            self._early_user_id = None


def _resolved(
    resolver: Any, request: HttpRequest, passthrough: Tuple[type, ...] = ()
) -> Optional[str]:
    """The resolver's answer as a user id (None for nobody); ``passthrough`` exceptions are
    raised to the caller, every other one is logged."""
    try:
        value = resolver(request)
    except passthrough:
        raise
    except Exception:  # the project's resolver must not break its own analytics calls
        logger.exception("analytics_django: ANALYTICS['USER_ID'] raised; no user id")
        return None
    if value is None or isinstance(value, bool):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _warn_if_the_server_rewrote_the_peer(request: HttpRequest, trusted_proxies: int) -> None:
    # Under ASGI, uvicorn may have replaced REMOTE_ADDR (the scope's client) with an address
    # from X-Forwarded-For; WSGI servers hand Django the socket peer (gunicorn, runserver).
    if trusted_proxies or not isinstance(request, ASGIRequest):
        return
    meta = request.META
    peer, forwarded_for = meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR")
    if isinstance(peer, str) and isinstance(forwarded_for, str):
        warn_if_the_server_rewrote_the_peer(peer, forwarded_for, "ANALYTICS['TRUSTED_PROXIES']")


def _fields(
    request: HttpRequest, trusted_proxies: int, forwarded_header: str
) -> Tuple[Dict[str, Any], Optional[str]]:
    meta = request.META
    _warn_if_the_server_rewrote_the_peer(request, trusted_proxies)
    try:
        host: Optional[str] = request.get_host()
    except DisallowedHost:
        # Django answers 400 for this request anyway; its url is not worth reporting.
        host = None
    return request_fields(
        peer=meta.get("REMOTE_ADDR"),
        scheme=request.scheme,
        host=host,
        path=request.path,
        query_string=meta.get("QUERY_STRING", ""),
        # META, not request.headers / request.COOKIES: those parse every header and cookie.
        headers=headers_from_wsgi(meta, forwarded_header),
        trusted_proxies=trusted_proxies,
        forwarded_header=forwarded_header,
    )


def context_for(request: HttpRequest, options: RequestOptions) -> DjangoRequestContext:
    """The analytics context of ``request`` (ip, userAgent, locale, page, anonymous id, user),
    read from the request when the first message needs it."""
    return DjangoRequestContext(request, options)
