"""``PAGEVIEWS``: one ``page()`` call for every page a browser loads (see
:mod:`analytics_core.web.pageviews` for what counts, and how the page is named)."""

import logging
from typing import Optional

from django.http import HttpRequest, HttpResponseBase

import analytics_core
from analytics_core.web.pageviews import (
    document_title,
    is_document,
    is_excluded,
    is_page_request,
    is_page_response,
    route_name,
)

from .options import pageview_exclude
from .request_context import DjangoRequestContext

__all__ = ["is_page_view", "page_name", "record_page_view"]

logger = logging.getLogger("segment")

# The request headers the page-view rules read, by their META key.
_PAGE_HEADERS = {
    "HTTP_USER_AGENT": "user-agent",
    "HTTP_HX_REQUEST": "hx-request",
    "HTTP_X_REQUESTED_WITH": "x-requested-with",
    "HTTP_SEC_FETCH_DEST": "sec-fetch-dest",
    "HTTP_SEC_PURPOSE": "sec-purpose",
    "HTTP_PURPOSE": "purpose",
    "HTTP_ACCEPT": "accept",
}


def _body(response: HttpResponseBase) -> Optional[bytes]:
    if getattr(response, "streaming", False):
        return None
    content = getattr(response, "content", None)
    return content if isinstance(content, bytes) else None


def is_page_view(request: HttpRequest, response: HttpResponseBase) -> bool:
    """Whether ``response`` to ``request`` is a page a browser loaded."""
    if not is_page_response(response.status_code, response.get("Content-Type")):
        return False
    meta = request.META
    headers = {name: meta[key] for key, name in _PAGE_HEADERS.items() if key in meta}
    if not is_page_request(request.method or "", headers):
        return False
    # Rules name paths inside the project ("/health", "/static/"), or full paths under a mount
    # point (SCRIPT_NAME: a reversed admin URL, STATIC_URL carry it): either excludes.
    rules = pageview_exclude()
    if is_excluded(request.path_info, rules) or (
        request.path != request.path_info and is_excluded(request.path, rules)
    ):
        return False
    return is_document(_body(response))


def _mount_point(request: HttpRequest) -> str:
    """What the server puts in front of the project's own paths (SCRIPT_NAME), or ``""``."""
    path, path_info = request.path, request.path_info
    if path != path_info and path.endswith(path_info):
        return path[: len(path) - len(path_info)]
    return ""


def page_name(request: HttpRequest) -> str:
    """The matched route's pattern (``/blog/<slug:slug>/``), or the path for a catch-all or a
    regular-expression route (Wagtail serves every page through one); under a mount point
    (SCRIPT_NAME) prefixed with it, as the browser sees the page."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match is not None else None
    name = route_name(route if isinstance(route, str) else None, request.path_info)
    return _mount_point(request) + name


def record_page_view(
    request: HttpRequest, response: HttpResponseBase, context: DjangoRequestContext
) -> Optional[bool]:
    """Send the page view of ``request`` on the default client, inside its context (a visitor
    without ids gets the request's minted anonymous id, like any call). Never raises."""
    try:
        properties = dict(context.context.get("page", {}))
        title = document_title(_body(response))
        if title:
            properties["title"] = title
        ok, _ = analytics_core.page(name=page_name(request), properties=properties)
    except Exception:  # a page view must never turn a good response into an error
        logger.exception("analytics_django: recording the page view failed")
        return False
    return ok
