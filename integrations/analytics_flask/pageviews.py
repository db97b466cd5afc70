"""``ANALYTICS_PAGEVIEWS``: one ``page()`` call for every page a browser loads (see
:mod:`analytics_core.web.pageviews` for what counts, and how the page is named)."""

import logging
import zlib
from typing import Optional

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

__all__ = ["PageViewHook", "is_page_view", "page_name", "record_page_view"]

logger = logging.getLogger("segment")

# The request headers the page-view rules read.
_PAGE_HEADERS = (
    "user-agent",
    "hx-request",
    "x-requested-with",
    "sec-fetch-dest",
    "sec-purpose",
    "purpose",
    "accept",
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


def is_page_view(state: AppState, request: Request, response: Response) -> bool:
    """Whether ``response`` to ``request`` is a page a browser loaded."""
    if not is_page_response(response.status_code, response.headers.get("Content-Type")):
        return False
    headers = {name: request.headers[name] for name in _PAGE_HEADERS if name in request.headers}
    if not is_page_request(request.method, headers):
        return False
    # Rules name app paths (the app's static_url_path, "/health"), or the full path the browser
    # sees under a mount point (SCRIPT_NAME, DispatcherMiddleware): either excludes.
    path = request.path
    if is_excluded(path, state.pageview_exclude) or (
        request.script_root and is_excluded(request.script_root + path, state.pageview_exclude)
    ):
        return False
    return is_document(_body(response))


def page_name(request: Request) -> str:
    """The matched URL rule (``/post/<int:id>/update``), or the path for a ``<path:...>``
    catch-all or a request no rule matched."""
    rule = request.url_rule
    pattern = rule.rule if rule is not None else None
    name = route_name(pattern, request.path)
    return request.script_root + name


def record_page_view(
    client: Client, request: Request, response: Response, context: RequestContext
) -> None:
    """Send the page view of ``request`` on ``client`` (a visitor without ids gets the
    request's minted anonymous id, like any call). Never raises."""
    try:
        properties = dict(context.context.get("page", {}))
        title = document_title(_body(response))
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
        try:
            page_view = is_page_view(state, request, response)
        except Exception:  # a page view is not worth a failed response
            logger.exception("analytics_flask: could not tell whether this is a page view")
            return response
        if page_view:
            record_page_view(state.client, request, response, context)
        return response
