"""The request's context around Flask's own WSGI app.

``init_app`` wraps the app's WSGI callable, ``app.wsgi_app = wrap_wsgi_app(app.wsgi_app,
state)``, the way Flask's documentation applies WSGI middleware, rather than as
request hooks: Flask inspects every hook function on every request (``ensure_sync``), and three
empty hooks cost a hello-world request 6%, more than this whole middleware.

The request's context is current:

- while Flask handles the request: ``before_request`` functions, the view, ``after_request`` and
  ``teardown_request`` functions, error handlers;
- for a streamed body (a response without ``Content-Length``: a generator), while the server
  has each chunk made and while it closes the body. Its analytics calls belong to the request,
  with or without ``stream_with_context`` (only with it can the logged-in user be read).

It is not current anywhere else: once Flask's test client has its answer, the test's own calls
are outside the request, closed or not.

The ``ajs_anonymous_id`` cookie is added as the response starts, after every ``after_request``
function: an id minted in any of them still reaches the browser.

Under the Werkzeug development server (or with ``ANALYTICS_FLUSH_EACH_REQUEST = True``) the
request's events are also delivered before it ends. Its reloader's parent process answers
SIGTERM by SIGKILLing the child that serves requests (``subprocess.call`` kills the child when
the wait is interrupted), and without the reloader SIGTERM ends Python without running atexit
hooks: in neither case could the client deliver its queue at exit.
"""

import logging
from typing import Any, Callable, Iterable, Iterator, Optional

from analytics_core.context import reset_request_context, set_request_context

from .request_context import FlaskRequestContext
from .state import AppState

__all__ = ["StreamedBody", "wrap_wsgi_app"]

logger = logging.getLogger("segment")

_DEV_SERVER = "Werkzeug/"  # the development server's SERVER_SOFTWARE

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


def wrap_wsgi_app(wsgi_app: WSGIApp, state: AppState) -> WSGIApp:
    """``wsgi_app`` (the app's previous ``wsgi_app``) with each request's
    :class:`FlaskRequestContext` current while Flask handles it: see the module docstring.

    A function rather than an object with ``__call__``: calling an instance costs a request
    more than everything else this does until a message is built."""

    def end(context: FlaskRequestContext) -> None:
        # The request is over, and it built a message: deliver now if this server needs that
        # (see the module docstring).
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

    def analytics_wsgi_app(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        # Every request takes this path and most send nothing, so it is written out here
        # rather than split into helpers: each call layer costs about as much as its work.
        try:
            context = FlaskRequestContext(
                environ=environ, state=state, server_start_response=start_response
            )
        except Exception:  # a request we cannot describe still gets the app's own answer
            logger.exception("analytics_flask: could not build the request's context")
            return wsgi_app(environ, start_response)
        streamed = False
        token = set_request_context(context)
        try:
            body = wsgi_app(environ, context.start_response)
            streamed = context.streamed
            if streamed:
                return StreamedBody(body, context, end)
            return body
        finally:
            reset_request_context(token)
            # A request whose fields nobody read built no message: nothing to wait for.
            if not streamed and context._fill is None:  # was_read, without a property call
                end(context)

    analytics_wsgi_app.__wrapped__ = wsgi_app  # type: ignore[attr-defined]
    return analytics_wsgi_app


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
            if context.was_read:
                self._end(context)
