"""Setting the analytics context when a request starts and undoing it when the request ends.

``before_request`` makes the request's context current; ``teardown_request`` undoes it, whether
the view returned or raised. A streamed body is the exception: its generator runs after
``teardown_request``, when the WSGI server iterates the response, and its analytics calls
belong to the request too, so the context is undone when the server closes the response.
(Every WSGI server closes it; Flask's test client leaves that to the test: close streamed
responses, or pass ``buffered=True``.)

Under the Werkzeug development server (or with ``ANALYTICS_FLUSH_EACH_REQUEST = True``) the
request's events are also delivered before it ends. Its reloader's parent process answers
SIGTERM by SIGKILLing the child that serves requests (``subprocess.call`` kills the child when
the wait is interrupted), and without the reloader SIGTERM ends Python without running atexit
hooks: in neither case could the client deliver its queue at exit.
"""

import contextvars
import logging
import types
from typing import Optional

from flask import Flask, Response, request

from analytics_core.context import (
    current_request_context,
    reset_request_context,
    set_request_context,
)
from analytics_core.web import ANONYMOUS_ID_COOKIE
from analytics_core.web.anonymous_cookie import (
    COOKIE_MAX_AGE,
    cookie_value,
    sets_anonymous_id_cookie,
)

from .pageviews import is_page_view, record_page_view
from .request_context import FlaskRequestContext
from .state import AppState

__all__ = ["RequestHooks"]

logger = logging.getLogger("segment")

# Where a request's _Active lives: the WSGI environ is per request. (flask.g belongs to the
# application context, which a test's `with app.app_context():` shares across requests.)
_ENVIRON_KEY = "analytics_flask.active"
_DEV_SERVER = "Werkzeug/"  # the development server's SERVER_SOFTWARE


class _Active:
    """One request's context, and what ending it needs."""

    __slots__ = ("context", "token", "until_close", "flush_timeout")

    def __init__(
        self,
        context: FlaskRequestContext,
        token: contextvars.Token,
        flush_timeout: Optional[float],
    ) -> None:
        self.context: Optional[FlaskRequestContext] = context
        self.token: Optional[contextvars.Token] = token
        self.until_close = False  # a streamed body: end on close, not at teardown
        self.flush_timeout = flush_timeout  # None: leave delivery to the uploader

    def end(self) -> None:
        """Deliver if asked to, then restore the context that was current before (once)."""
        token, self.token = self.token, None
        if token is None:
            return
        context = self.context
        context.ended = True
        if self.flush_timeout is not None:
            try:
                context.client.flush(self.flush_timeout)
            except Exception:  # delivery problems are the client's to report, not the request's
                logger.exception("analytics_flask: flushing at the end of the request failed")
        try:
            reset_request_context(token)
        except ValueError:
            # The token belongs to another contextvars.Context: teardown or close ran in a copy
            # of the request's context (a server or middleware that copies it per call). Undo
            # it in this copy; the original keeps it until the end of its thread's next request.
            if current_request_context() is context:
                previous = token.old_value
                set_request_context(None if previous is contextvars.Token.MISSING else previous)
        # What was current before may be a request that ended in such a copy: it is over, and
        # outside any request there is no context.
        restored = current_request_context()
        if isinstance(restored, FlaskRequestContext) and restored.ended:
            set_request_context(None)
        # The context's fill may hold the request, whose environ holds this _Active: let go,
        # so the request is freed without waiting for the cycle collector.
        self.context = None


def _is_page_view(state: AppState, response: Response) -> bool:
    try:
        return is_page_view(state, request, response)
    except Exception:  # a page view is not worth a failed response
        logger.exception("analytics_flask: could not tell whether this is a page view")
        return False


def _set_anonymous_id_cookie(response: Response, anonymous_id: str, domain: Optional[str]) -> None:
    """analytics.js's cookie, as :mod:`analytics_core.web.anonymous_cookie` describes it, unless
    the app set it itself."""
    try:
        if any(sets_anonymous_id_cookie(value) for value in response.headers.getlist("Set-Cookie")):
            return
        response.set_cookie(
            ANONYMOUS_ID_COOKIE,
            cookie_value(anonymous_id),
            max_age=COOKIE_MAX_AGE,
            path="/",
            domain=domain,
            secure=request.is_secure,
            httponly=False,  # analytics.js in the page reads it
            samesite="Lax",
        )
    except Exception:  # the response goes out without the cookie rather than not at all
        logger.exception("analytics_flask: could not set the ajs_anonymous_id cookie")


def _current_active() -> Optional[_Active]:
    """The current request's :class:`_Active`, if its context was set.

    Through ``_get_current_object()``: an attribute read through werkzeug's proxy costs about
    3 µs, the proxy's own method about 0.4 µs, on every request."""
    current = request._get_current_object()  # type: ignore[attr-defined]
    return current.environ.get(_ENVIRON_KEY)


class RequestHooks:
    """The ``before_request`` / ``after_request`` / ``teardown_request`` functions of one app."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def install(self, app: Flask) -> None:
        """Register the three hooks on ``app``."""
        app.before_request(self.before_request)
        # Flask runs after_request functions last-registered first: put ours first in the list,
        # so it runs after every other one, whenever the app or an extension registered it.
        # Then a track() in an app's own after_request still gets the cookie for its minted id,
        # and an ajs_anonymous_id cookie the app sets there is seen (and left alone).
        app.after_request_funcs.setdefault(None, []).insert(0, self.after_request)
        app.teardown_request(self.teardown_request)

    def before_request(self) -> None:
        """Make the request's context current (on any failure: log it, carry on without)."""
        state = self.state
        try:
            # The request object itself, not the proxy: the context compares it with the
            # current request later, to never read another request's user (and an attribute
            # read through the proxy costs about 3 µs: see _current_active).
            current = request._get_current_object()  # type: ignore[attr-defined]
            context = FlaskRequestContext(current, state)
        except Exception:  # a broken request must get the app's own answer, not ours
            logger.exception("analytics_flask: could not build the request's context")
            return
        token = set_request_context(context)
        environ = current.environ
        flush = state.flush_each_request
        if flush is None:
            flush = str(environ.get("SERVER_SOFTWARE", "")).startswith(_DEV_SERVER)
        environ[_ENVIRON_KEY] = _Active(context, token, state.flush_timeout if flush else None)

    def after_request(self, response: Response) -> Response:
        """Record the page view, hand a minted anonymous id to the browser, and keep the
        context for a streamed body until it is closed."""
        active = _current_active()
        if active is None:
            return response
        state = self.state
        context = active.context
        if state.pageviews and _is_page_view(state, response):
            record_page_view(state.client, request, response, context)
        if state.cookie and context is not None and context.minted_anonymous_id is not None:
            _set_anonymous_id_cookie(response, context.minted_anonymous_id, state.cookie_domain)
        # Only a generator body runs the app's code after teardown. Other streamed bodies (an
        # HTTPException's, send_file's) run none, and a direct_passthrough one reaches the server
        # without the wrapper that calls the response's close hooks: those end at teardown.
        if isinstance(response.response, types.GeneratorType) and not response.direct_passthrough:
            active.until_close = True
            response.call_on_close(active.end)
        return response

    def teardown_request(self, error: Optional[BaseException]) -> None:
        """Undo the context, unless a streamed body is still to come (then only on error)."""
        active = _current_active()
        if active is None:
            return
        if active.until_close and error is None:
            # Only the first teardown waits: stream_with_context pushes the request again while
            # the body is iterated, and its teardown comes when the body is done.
            active.until_close = False
            return
        active.end()
