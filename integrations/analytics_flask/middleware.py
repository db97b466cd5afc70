"""The extension's WSGI middleware around Flask's own app.

``init_app`` wraps the app's WSGI callable, ``app.wsgi_app = wrap_wsgi_app(app.wsgi_app,
state)``, the way Flask's documentation applies WSGI middleware, rather than installing request
hooks: Flask inspects every hook function on every request (``ensure_sync``), and three empty
hooks cost a hello-world request 6%, three times what this whole middleware costs.

Where the request's analytics context is current:

- wherever Flask's request context is (the analytics context rides on it: see
  ``request_context.current_flask_context``): ``before_request`` functions, the view,
  ``after_request`` and ``teardown_request`` functions, error handlers, a
  ``stream_with_context`` body, a ``copy_current_request_context`` thread, and after the
  request inside a test's ``with client:`` block, which keeps Flask's request context;
- for a streamed body (a response without ``Content-Length``: a generator), while the server
  has each chunk made and while it closes the body, with or without ``stream_with_context``
  (only with it can the logged-in user be read). Between chunks, and once Flask's test client
  has its answer, the test's own calls are outside the request.

The ``ajs_anonymous_id`` cookie is added as the response starts, after every ``after_request``
function: an id minted in any of them still reaches the browser.

Under the Werkzeug development server (or with ``ANALYTICS_FLUSH_EACH_REQUEST = True``) the
request's events are also delivered before it ends. Its reloader's parent process answers
SIGTERM by SIGKILLing the child that serves requests (``subprocess.call`` kills the child when
the wait is interrupted), and without the reloader SIGTERM ends Python without running atexit
hooks: in neither case could the client deliver its queue at exit.
"""

import logging
from functools import partial
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from analytics_core.context import reset_request_context, set_request_context
from analytics_core.web.anonymous_cookie import cookie_header, sets_anonymous_id_cookie

from .request_context import CONTEXT_KEY, STATE_KEY, FlaskRequestContext, context_of
from .state import AppState

__all__ = ["StreamedBody", "wrap_wsgi_app"]

logger = logging.getLogger("segment")

_DEV_SERVER = "Werkzeug/"  # the development server's SERVER_SOFTWARE
_STREAMED_KEY = "analytics_flask.streamed"  # set when the response has no Content-Length

WSGIApp = Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wrap_wsgi_app(wsgi_app: WSGIApp, state: AppState) -> WSGIApp:
    """``wsgi_app`` (the app's previous ``wsgi_app``) serving each request as the module
    docstring says.

    A function rather than an object with ``__call__``: calling an instance costs a request
    more than everything else this does until a message is built."""

    def end(context: FlaskRequestContext) -> None:
        # The request is over: if it built a message, deliver now if this server needs that
        # (see the module docstring).
        if not context.was_read:
            return
        flush = state.flush_each_request
        if flush is None:
            software = context.environ.get("SERVER_SOFTWARE")
            flush = isinstance(software, str) and software.startswith(_DEV_SERVER)
        if not flush:
            return
        try:
            context.client.flush(state.flush_timeout)
        except Exception:  # delivery problems are the client's to report, not the request's
            logger.exception("analytics_flask: flushing at the end of the request failed")

    def analytics_wsgi_app(
        environ: Dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        # Every request takes this path and most send nothing: it marks the request as this
        # app's (the context itself is made when a message needs it, by current_flask_context)
        # and hands Flask a start_response that can add the cookie. No context is set here.
        environ[STATE_KEY] = state
        streamed = False
        try:
            body = wsgi_app(environ, partial(_start_response, environ, start_response))
            streamed = _STREAMED_KEY in environ
            if streamed:  # the body ends the request when it is closed
                return StreamedBody(body, context_of(environ, state), end)
            return body
        finally:
            if not streamed:
                # environ.get rather than made_context(): a call less on every request.
                context = environ.get(CONTEXT_KEY)
                if context is not None:
                    end(context)

    analytics_wsgi_app.__wrapped__ = wsgi_app  # type: ignore[attr-defined]
    return analytics_wsgi_app


def _start_response(
    environ: Dict[str, Any],
    start_response: Callable[..., Any],
    status: str,
    headers: List[Tuple[str, str]],
    exc_info: Any = None,
) -> Any:
    """The ``start_response`` Flask's app is given (bound to the request with ``partial``):
    adds the ``ajs_anonymous_id`` cookie for an id minted during the request, after every
    ``after_request`` function ran, and notes a streamed body."""
    context = environ.get(CONTEXT_KEY)  # made_context(environ), without the call
    if context is not None and context.minted_anonymous_id is not None and context.state.cookie:
        headers = _with_cookie(headers, context.minted_anonymous_id, environ, context.state)
    for name, _value in headers:
        if name == "Content-Length":  # Werkzeug's spelling
            break
    else:
        environ[_STREAMED_KEY] = True
    return start_response(status, headers, exc_info)


def _with_cookie(
    headers: List[Tuple[str, str]],
    anonymous_id: str,
    environ: Dict[str, Any],
    state: AppState,
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
        domain = state.cookie_domain and state.cookie_domain.lstrip(".")
        value = cookie_header(anonymous_id, secure=secure, domain=domain)
        return [*headers, ("Set-Cookie", value)]
    except Exception:  # the response goes out without the cookie rather than not at all
        logger.exception("analytics_flask: could not set the ajs_anonymous_id cookie")
        return headers


class StreamedBody:
    """A streamed response body: the request's context is current while each chunk is made
    and while the server closes the body, then the request ends (``end``: see
    :func:`wrap_wsgi_app`).

    Between chunks it is not: the server's own code (or a test's) runs outside the request."""

    __slots__ = ("_body", "_iterator", "_context", "_end")

    def __init__(
        self,
        body: Iterable[bytes],
        context: FlaskRequestContext,
        end: Callable[[FlaskRequestContext], None],
    ) -> None:
        self._body = body
        self._iterator: Iterator[bytes] = iter(body)
        self._context: Optional[FlaskRequestContext] = context
        self._end = end

    def __iter__(self) -> "StreamedBody":
        return self

    def __next__(self) -> bytes:
        token = set_request_context(self._context)
        try:
            return next(self._iterator)
        finally:
            reset_request_context(token)

    def close(self) -> None:
        """Close the app's body (its generator's ``finally`` runs in the request's context),
        then end the request; only the first call does anything."""
        context, self._context = self._context, None
        if context is None:
            return
        token = set_request_context(context)
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            reset_request_context(token)
            self._end(context)
