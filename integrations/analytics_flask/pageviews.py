"""``ANALYTICS_PAGEVIEWS``: one ``page()`` call for every page a browser loads (see
:mod:`analytics_core.web.pageviews` for what counts, and how the page is named)."""

import logging
import zlib
from typing import Optional, Union

from flask import Flask, Request, Response, request

from analytics_core import Client
from analytics_core.context import RequestContext, current_request_context
from analytics_core.web.pageviews import (
    document_title,
    is_document,
    is_excluded,
    is_page_request,
    is_page_response,
    route_name,
)

from .state import AppState

__all__ = ["PageViewHook", "page_name", "page_view_body", "record_page_view"]

logger = logging.getLogger("segment")

# The request headers the page-view rules read, by their WSGI environ key. Read from the
# environ: each header Werkzeug's request.headers does not have raises and catches a KeyError
# inside `in`, and most of these are absent (26 µs for the seven, against under 1 µs).
_PAGE_HEADERS = (
    ("HTTP_USER_AGENT", "user-agent"),
    ("HTTP_HX_REQUEST", "hx-request"),
    ("HTTP_X_REQUESTED_WITH", "x-requested-with"),
    ("HTTP_SEC_FETCH_DEST", "sec-fetch-dest"),
    ("HTTP_SEC_PURPOSE", "sec-purpose"),
    ("HTTP_PURPOSE", "purpose"),
    ("HTTP_ACCEPT", "accept"),
)


# As much of a compressed body as the document sniff and the <title> search read.
_DECODED_BYTES = 64 * 1024


def _body(response: Response) -> Optional[bytes]:
    # A streamed body (a generator, send_file) cannot be looked at without consuming it.
    if response.is_streamed or response.direct_passthrough:
        return None
    data = response.get_data()
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if not encoding or encoding == "identity":
        return data
    # An after_request hook that ran before this one compressed the body (Flask-Compress does,
    # when it was set up after Analytics): the sniff must read the document, not gzip bytes.
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            # 47 = 32 + 15: a gzip or a zlib header, detected.
            return zlib.decompressobj(wbits=47).decompress(data, _DECODED_BYTES)
        except zlib.error:
            pass
    return None  # br, zstd, or broken: not at hand, so it counts (without a title)


class _NotAPageView:
    """The type of what :func:`page_view_body` answers for a response that is no page view."""


_NOT_A_PAGE_VIEW = _NotAPageView()


def page_view_body(
    state: AppState, request: Request, response: Response
) -> Union[bytes, None, _NotAPageView]:
    """``_NOT_A_PAGE_VIEW`` unless ``response`` to ``request`` is a page a browser loaded;
    then its body as the title search reads it (None: not at hand), read once for both."""
    if not is_page_response(response.status_code, response.headers.get("Content-Type")):
        return _NOT_A_PAGE_VIEW
    environ = request.environ
    headers = {name: environ[key] for key, name in _PAGE_HEADERS if key in environ}
    if not is_page_request(request.method, headers):
        return _NOT_A_PAGE_VIEW
    # Rules name app paths (the app's static_url_path, "/health"), or the full path the browser
    # sees under a mount point (SCRIPT_NAME, DispatcherMiddleware): either excludes.
    path = request.path
    if is_excluded(path, state.pageview_exclude) or (
        request.script_root and is_excluded(request.script_root + path, state.pageview_exclude)
    ):
        return _NOT_A_PAGE_VIEW
    body = _body(response)
    return body if is_document(body) else _NOT_A_PAGE_VIEW


def page_name(request: Request) -> str:
    """The matched URL rule (``/post/<int:id>/update``), or the path for a ``<path:...>``
    catch-all or a request no rule matched."""
    rule = request.url_rule
    pattern = rule.rule if rule is not None else None
    name = route_name(pattern, request.path)
    return request.script_root + name


def record_page_view(
    client: Client, request: Request, body: Optional[bytes], context: RequestContext
) -> None:
    """Send the page view of ``request`` on ``client`` (a visitor without ids gets the
    request's minted anonymous id, like any call); ``body`` is the page's, as
    :func:`page_view_body` read it. Never raises."""
    try:
        properties = dict(context.context.get("page", {}))
        title = document_title(body)
        if title:
            properties["title"] = title
        client.page(name=page_name(request), properties=properties)
    except Exception:  # a page view must never turn a good response into an error
        logger.exception("analytics_flask: recording the page view failed")


class PageViewHook:
    """The ``after_request`` function of an app with ``ANALYTICS_PAGEVIEWS`` on: records the
    page view of each response that is one."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def install(self, app: Flask) -> None:
        """Register it on ``app``. Flask runs ``after_request`` functions last-registered first:
        this one goes first in the list, so it runs after every other one, whenever the app or
        an extension registered it, and sees the response as the browser will (Flask-Compress's
        gzip included)."""
        app.after_request_funcs.setdefault(None, []).insert(0, self)

    def __call__(self, response: Response) -> Response:
        context = current_request_context()
        if context is None:  # the app is served without its wsgi_app (app.test_request_context)
            return response
        state = self.state
        # The request itself, not Flask's proxy: each attribute read through the proxy looks
        # up the current request context again (about 1.5 µs each, a dozen of them here).
        current = request._get_current_object()  # type: ignore[attr-defined]
        try:
            body = page_view_body(state, current, response)
        except Exception:  # a page view is not worth a failed response
            logger.exception("analytics_flask: could not tell whether this is a page view")
            return response
        if body is not _NOT_A_PAGE_VIEW:
            record_page_view(state.client, current, body, context)
        return response
