"""Turning the current Flask request into the analytics context of its messages."""

import logging
import weakref
from functools import partial
from typing import Any, Callable, Dict, Optional, Tuple

from flask import Request

from analytics_core.context import RequestContext
from analytics_core.web import headers_from_wsgi, request_fields

from .login import current_user_id
from .state import AppState

__all__ = ["FlaskRequestContext", "context_for"]

logger = logging.getLogger("segment")


class FlaskRequestContext(RequestContext):
    """A :class:`~analytics_core.context.RequestContext` whose default user id is read from
    Flask-Login each time a message is built, not once when the request starts: a user who logs
    in (or out) during the request is who the following messages are about, and a request
    that sends nothing never loads its user."""

    __slots__ = ("_user_id", "_request", "_resolver", "ended")

    def __init__(self, request: Request, state: AppState) -> None:
        # Weak: the request's environ holds this context, which must not hold the request back.
        # (The fill holds it until it ran or the request ended: see hooks._Active.end.)
        self._request = weakref.ref(request)
        self._resolver: Optional[Callable[[Any], Any]] = state.user_id
        self.ended = False  # set when the request's hooks undid it
        self._user_id: Optional[str] = None
        # Every request builds one, most of which send nothing: the base's fields are set
        # without assigning user_id through this class's property (see RequestContext._start).
        self._start(
            state.client, partial(_fields, request, state.trusted_proxies, state.forwarded_header)
        )

    @property  # type: ignore[override]
    def user_id(self) -> Optional[str]:
        """The id assigned (``analytics_core.set_user_id``), else ``ANALYTICS_USER_ID``'s
        answer, else the logged-in Flask-Login user's stable id."""
        if self._user_id is not None:
            return self._user_id
        request = self._request()
        if request is None:
            return None
        if self._resolver is not None:
            return _resolved(self._resolver, request)
        return current_user_id(request)

    @user_id.setter
    def user_id(self, value: Optional[str]) -> None:
        self._user_id = value


def _host(request: Request) -> Optional[str]:
    # With app.config["TRUSTED_HOSTS"] an untrusted Host header makes request.host raise; Flask
    # answers that request with a 400 itself, and the context simply has no URL.
    try:
        return request.host or None
    except Exception:
        return None


def _resolved(resolver: Callable[[Any], Any], request: Request) -> Optional[str]:
    try:
        value = resolver(request)
    except Exception:  # the app's resolver must not break its own analytics calls
        logger.exception("analytics_flask: ANALYTICS_USER_ID raised; no user id")
        return None
    if value is None or isinstance(value, bool):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _fields(
    request: Request, trusted_proxies: int, forwarded_header: str
) -> Tuple[Dict[str, Any], Optional[str]]:
    environ = request.environ
    return request_fields(
        # REMOTE_ADDR: the socket peer (or what the app's own ProxyFix made of it); forwarding
        # headers are believed only across ANALYTICS_TRUSTED_PROXIES hops, never by default.
        peer=request.remote_addr,
        scheme=request.scheme,
        host=_host(request),
        # The browser's location.pathname includes the mount point (SCRIPT_NAME).
        path=request.script_root + request.path,
        query_string=environ.get("QUERY_STRING", ""),
        headers=headers_from_wsgi(environ, forwarded_header),
        trusted_proxies=trusted_proxies,
        forwarded_header=forwarded_header,
    )


def context_for(request: Request, state: AppState) -> FlaskRequestContext:
    """The context of ``request``, whose module-level analytics calls go to the app's client;
    read from the request when the first message needs it."""
    return FlaskRequestContext(request, state)
