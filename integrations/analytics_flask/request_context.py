"""Turning the current Flask request into the analytics context of its messages."""

import logging
from types import MappingProxyType, SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

from flask import Request, has_request_context
from flask import request as flask_request

from analytics_core.context import RequestContextBase
from analytics_core.web import headers_from_wsgi, request_fields
from analytics_core.web.anonymous_cookie import cookie_header, sets_anonymous_id_cookie

from .login import current_user_id
from .state import AppState

__all__ = ["FlaskRequestContext"]

# Where Werkzeug keeps the request object it made for an environ.
_FLASK_REQUEST = "werkzeug.request"
# RequestContext._fill until the request's fields were read (see _read_fields).
_UNREAD = True

logger = logging.getLogger("segment")


class FlaskRequestContext(RequestContextBase, SimpleNamespace):
    """The analytics context of one WSGI request to a Flask app (see
    :class:`~analytics_core.context.RequestContextBase`).

    Made on every request as ``FlaskRequestContext(environ=..., state=...,
    server_start_response=...)``: SimpleNamespace's constructor is C code, where a Python
    ``__init__`` alone would cost a request that sends nothing a third of its 2% budget. What
    every request starts with is a class attribute; the instance holds only what changed.

    Nothing is read from the request until a message needs it: most requests send nothing. The
    default user id is read from Flask-Login each time a message is built, not once when the
    request starts: a user who logs in (or out) during the request is who the following
    messages are about, and a request that sends nothing never loads its user.

    :meth:`start_response` is what Flask's app is given to start its response with: it adds
    the ``ajs_anonymous_id`` cookie for an id minted during the request, and notes whether the
    body is streamed.
    """

    environ: Dict[str, Any]
    state: AppState
    server_start_response: Callable[..., Any]

    _user_id: Optional[str] = None  # what analytics_core.set_user_id() assigned
    streamed = False  # the response has no Content-Length: a generator's body
    _context: Dict[str, Any] = MappingProxyType({})  # type: ignore[assignment]
    _anonymous_id: Optional[str] = None
    _fill = _UNREAD
    minted_anonymous_id: Optional[str] = None

    # One context is one request: compared and hashed by identity, not by its fields.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def client(self) -> Any:  # type: ignore[override]
        """The app's client: where the module-level API sends this request's calls."""
        return self.state.client

    def _read_fields(self) -> Tuple[Dict[str, Any], Optional[str]]:
        return _fields(self.environ, self.state)

    @property  # type: ignore[override]
    def user_id(self) -> Optional[str]:
        """The id assigned (``analytics_core.set_user_id``), else ``ANALYTICS_USER_ID``'s
        answer, else the logged-in Flask-Login user's stable id."""
        if self._user_id is not None:
            return self._user_id
        request = _flask_request(self.environ)
        if request is None:  # the request is over: whose user it was cannot be told
            return None
        resolver = self.state.user_id
        if resolver is not None:
            return _resolved(resolver, request)
        return current_user_id(request)

    @user_id.setter
    def user_id(self, value: Optional[str]) -> None:
        self._user_id = value

    def start_response(
        self, status: str, headers: List[Tuple[str, str]], exc_info: Any = None
    ) -> Any:
        """The WSGI ``start_response`` Flask's app is given: see the class docstring."""
        anonymous_id = self.minted_anonymous_id
        if anonymous_id is not None and self.state.cookie:
            headers = _with_cookie(headers, anonymous_id, self.environ, self.state.cookie_domain)
        for name, _value in headers:
            if name == "Content-Length":  # Werkzeug's spelling
                break
        else:
            self.streamed = True
        return self.server_start_response(status, headers, exc_info)


def _with_cookie(
    headers: List[Tuple[str, str]],
    anonymous_id: str,
    environ: Dict[str, Any],
    domain: Optional[str],
) -> List[Tuple[str, str]]:
    """``headers`` with analytics.js's cookie for ``anonymous_id`` (see
    :mod:`analytics_core.web.anonymous_cookie`), unless the app set that cookie itself."""
    try:
        for name, value in headers:
            if name.lower() == "set-cookie" and sets_anonymous_id_cookie(value):
                return headers  # the app's own cookie wins
        secure = environ.get("wsgi.url_scheme") == "https"
        # Without a leading dot, as Werkzeug's own set_cookie writes it (browsers ignore it; its
        # test client would not send the cookie to a subdomain with it).
        value = cookie_header(anonymous_id, secure=secure, domain=domain and domain.lstrip("."))
        return [*headers, ("Set-Cookie", value)]
    except Exception:  # the response goes out without the cookie rather than not at all
        logger.exception("analytics_flask: could not set the ajs_anonymous_id cookie")
        return headers


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


def _flask_request(environ: Dict[str, Any]) -> Optional[Request]:
    """Flask's request object for ``environ`` while its request context is active, else None.

    Werkzeug keeps it in the environ, and Flask clears that when its request context ends; a
    ``stream_with_context`` body pushes the context again, without the environ's entry."""
    request = environ.get(_FLASK_REQUEST)
    if request is not None:
        return request
    if has_request_context():
        current = flask_request._get_current_object()  # type: ignore[attr-defined]
        if current.environ is environ:
            return current
    return None


def _request_of(environ: Dict[str, Any], state: AppState) -> Request:
    # Flask's request, or (once the request is over: a plain streamed body, a message built
    # after the end; or before Flask made it: WSGI middleware between this one and Flask) one
    # of our own that reads the same environ, with the host check Flask would make.
    request = _flask_request(environ)
    if request is None:
        request = Request(environ, populate_request=False)
        request.trusted_hosts = state.app_config.get("TRUSTED_HOSTS")
    return request


def _fields(environ: Dict[str, Any], state: AppState) -> Tuple[Dict[str, Any], Optional[str]]:
    request = _request_of(environ, state)
    forwarded_header = state.forwarded_header
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
        trusted_proxies=state.trusted_proxies,
        forwarded_header=forwarded_header,
    )
