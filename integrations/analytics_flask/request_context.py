"""Turning the current Flask request into the analytics context of its messages."""

import weakref
from typing import Any, Dict, Optional

from flask import Request

from analytics_core.context import RequestContext
from analytics_core.web import ANONYMOUS_ID_COOKIE, build_request_context

from .login import current_user_id

__all__ = ["FlaskRequestContext", "context_for"]


class FlaskRequestContext(RequestContext):
    """A :class:`~analytics_core.context.RequestContext` whose default user id is read from
    Flask-Login each time a message is built, not once when the request starts: a user who logs
    in (or out) during the request is who the following messages are about, and a request
    that sends nothing never loads its user."""

    __slots__ = ("_user_id", "_request", "ended")

    def __init__(self, base: RequestContext, request: Request) -> None:
        # Weak: the request's environ holds this context, which must not hold the request back.
        self._request = weakref.ref(request)
        self.ended = False  # set when the request's hooks undid it
        super().__init__(
            base.context,
            user_id=base.user_id,
            anonymous_id=base.anonymous_id,
            client=base.client,
        )

    @property  # type: ignore[override]
    def user_id(self) -> Optional[str]:
        """The id given when the context was built, else the logged-in Flask-Login user's."""
        if self._user_id is not None:
            return self._user_id
        request = self._request()
        return None if request is None else current_user_id(request)

    @user_id.setter
    def user_id(self, value: Optional[str]) -> None:
        self._user_id = value


def _headers(request: Request) -> Dict[str, str]:
    # The WSGI server already joined repeated headers; names are lower-cased for web.py.
    return {name.lower(): value for name, value in request.headers.items()}


def _host(request: Request) -> Optional[str]:
    # With app.config["TRUSTED_HOSTS"] an untrusted Host header makes request.host raise; Flask
    # answers that request with a 400 itself, and the context simply has no URL.
    try:
        return request.host or None
    except Exception:
        return None


def context_for(request: Request, client: Any, trusted_proxies: int) -> FlaskRequestContext:
    """The context of ``request``, whose module-level analytics calls go to ``client``."""
    environ = request.environ
    base = build_request_context(
        # REMOTE_ADDR: the socket peer (or what the app's own ProxyFix made of it); forwarding
        # headers are believed only across ANALYTICS_TRUSTED_PROXIES hops, never by default.
        peer=request.remote_addr,
        scheme=request.scheme,
        host=_host(request),
        # The browser's location.pathname includes the mount point (SCRIPT_NAME).
        path=request.script_root + request.path,
        query_string=environ.get("QUERY_STRING", ""),
        headers=_headers(request),
        trusted_proxies=trusted_proxies,
        anonymous_id_cookie=request.cookies.get(ANONYMOUS_ID_COOKIE),
        client=client,
    )
    return FlaskRequestContext(base, request)
