"""Turning the current Flask request into the analytics context of its messages."""

import logging
from types import MappingProxyType, SimpleNamespace
from typing import Any, Callable, Dict, Optional, Tuple

from flask import Request, has_request_context
from flask import request as flask_request

try:
    from flask.globals import _cv_request
except ImportError:  # pragma: no cover - Flask keeps it in every release we support (2.3+)
    _cv_request = None

from analytics_core.context import RequestContextBase, add_request_context_lookup
from analytics_core.web import headers_from_wsgi, request_fields

from .login import current_user_id
from .state import AppState

__all__ = ["CONTEXT_KEY", "STATE_KEY", "FlaskRequestContext", "context_of", "current_flask_context"]

STATE_KEY = "analytics_flask.state"
"""The environ key where the app's middleware leaves its :class:`AppState`: the request is one
the extension serves."""
CONTEXT_KEY = "analytics_flask.context"  # the request's FlaskRequestContext, once made

# Where Werkzeug keeps the request object it made for an environ.
_FLASK_REQUEST = "werkzeug.request"
# RequestContext._fill until the request's fields were read (see _read_fields).
_UNREAD = True

logger = logging.getLogger("segment")


class FlaskRequestContext(RequestContextBase, SimpleNamespace):
    """The analytics context of one WSGI request to a Flask app (see
    :class:`~analytics_core.context.RequestContextBase`).

    Made by :func:`current_flask_context` when a message of the request first needs it, as
    ``FlaskRequestContext(environ=..., state=...)``: SimpleNamespace's constructor is C code, a
    Python ``__init__`` is not. What every request starts with is a class attribute; the
    instance holds only what changed.

    Nothing is read from the request until a message needs it: most requests send nothing. The
    default user id is read from Flask-Login each time a message is built, not once when the
    request starts: a user who logs in (or out) during the request is who the following
    messages are about, and a request that sends nothing never loads its user.
    """

    environ: Dict[str, Any]
    state: AppState

    _user_id: Optional[str] = None  # what analytics_core.set_user_id() assigned
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


def _current_flask_request() -> Optional[Request]:
    # Flask's request whose request context is current, if any.
    if _cv_request is not None:
        flask_context = _cv_request.get(None)
        return None if flask_context is None else flask_context.request
    if not has_request_context():  # pragma: no cover - see the import of _cv_request
        return None
    return flask_request._get_current_object()  # type: ignore[attr-defined]  # pragma: no cover


def _flask_request(environ: Dict[str, Any]) -> Optional[Request]:
    """Flask's request object for ``environ`` while its request context is active, else None.

    Werkzeug keeps it in the environ, and Flask clears that when its request context ends; a
    ``stream_with_context`` body pushes the context again, without the environ's entry."""
    request = environ.get(_FLASK_REQUEST)
    if request is not None:
        return request
    current = _current_flask_request()
    return current if current is not None and current.environ is environ else None


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


def context_of(environ: Dict[str, Any], state: AppState) -> FlaskRequestContext:
    """The context of the request ``environ`` describes: made the first time it is asked for,
    the same one afterwards, from every thread."""
    context = environ.get(CONTEXT_KEY)
    if context is None:
        # setdefault: two threads of one request asking at once agree on one context.
        context = environ.setdefault(CONTEXT_KEY, FlaskRequestContext(environ=environ, state=state))
    return context


def made_context(environ: Dict[str, Any]) -> Optional[FlaskRequestContext]:
    """The request's context if a message (or the app) asked for it, else None."""
    return environ.get(CONTEXT_KEY)


def current_flask_context() -> Optional[FlaskRequestContext]:
    """The analytics context of the Flask request whose request context is current, if the
    extension's middleware served it (``app.test_request_context()`` alone has none).

    The lookup ``analytics_core.current_request_context()`` asks when no integration set a
    context: Flask already keeps its request in a contextvar of its own, pushed and popped on
    every request, so this extension sets none and a request that sends nothing pays nothing
    for it. Where Flask's request context goes (a ``stream_with_context`` body, a
    ``copy_current_request_context`` thread, ``with client:`` in a test, which keeps the last
    request's context after it), the analytics context goes too.
    """
    request = _current_flask_request()
    if request is None:
        return None
    environ = request.environ
    state = environ.get(STATE_KEY)
    if state is None:
        return None
    return context_of(environ, state)


add_request_context_lookup(current_flask_context)
