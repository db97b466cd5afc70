"""``pageviews=True``: one ``page()`` call for every page a browser loads (see
:mod:`analytics_core.web.pageviews` for what counts, and how the page is named)."""

import logging
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple

from analytics_core.web.pageviews import (
    ExcludeRule,
    document_title,
    is_excluded,
    is_page_request,
    is_page_response,
    route_name,
)

from .asgi_types import Message, Scope
from .scope_context import ScopeRequestContext, _text, scope_path

__all__ = ["is_page_start", "page_name", "record_page_view"]

logger = logging.getLogger("segment")

# FastAPI's own pages: the interactive documentation and the schema behind it.
_DOCS_ATTRIBUTES = ("docs_url", "redoc_url", "openapi_url", "swagger_ui_oauth2_redirect_url")


def _content_type(message: Message) -> Optional[str]:
    for name, value in message.get("headers") or ():
        # Servers reject headers that are not bytes; this check must not fail before they do.
        if isinstance(name, bytes) and name.lower() == b"content-type":
            return value.decode("latin-1") if isinstance(value, bytes) else None
    return None


def _app_docs_paths(scope: Scope) -> Iterable[str]:
    app = scope.get("app")
    for attribute in _DOCS_ATTRIBUTES:
        value = getattr(app, attribute, None)
        if isinstance(value, str) and value.startswith("/"):
            yield value


def _route_path(scope: Scope) -> str:
    """The path inside the app that answered: without the root path of the server or of the
    Mount it sits under (a FastAPI app's ``docs_url`` is relative to that)."""
    path = _text(scope.get("path"))
    root_path = _text(scope.get("root_path")).rstrip("/")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path


def is_page_start(
    message: Message,
    scope: Scope,
    headers: Mapping[str, str],
    exclude: Sequence[ExcludeRule],
) -> bool:
    """Whether the ``http.response.start`` ``message`` begins a page view (the body, which
    follows, must still be a document)."""
    if not is_page_response(message.get("status"), _content_type(message)):
        return False
    if not is_page_request(str(scope.get("method", "")), headers):
        return False
    if is_excluded(scope_path(scope), exclude):
        return False
    path = _route_path(scope)
    return not any(path == docs or path.startswith(docs + "/") for docs in _app_docs_paths(scope))


# How deep _replayed_route follows Mounts and Hosts: far beyond any real app, and a bound for
# a router that (mis)contains itself.
_MAX_ROUTER_DEPTH = 32


def _replayed_route(scope: Scope, outer_root_path: Any) -> Any:
    """The route that Starlette's routers chose for ``scope``, found again as they found it.

    Starlette puts the route that answered in ``scope["route"]`` only since 1.7 (FastAPI's own
    routes always did); before, a router leaves only ``scope["router"]`` (the outermost one)
    and ``scope["endpoint"]``. So, as each ``Router`` does: the first route whose ``matches()``
    is FULL, else the first PARTIAL (a 405), then the same inside a Mount's or Host's routes,
    starting from the root path the server gave. None when there is no router or nothing
    matched; the Mount itself when it holds a plain ASGI app (no routes inside).
    """
    routes = getattr(scope.get("router"), "routes", None)
    if routes is None or scope.get("endpoint") is None:
        return None
    probe = dict(scope)
    probe["root_path"] = _text(outer_root_path)
    probe["path_params"] = {}
    # Set by the first Mount from the root path it saw: Mounts must see it unset again.
    probe.pop("app_root_path", None)
    for _ in range(_MAX_ROUTER_DEPTH):
        found, found_scope = None, None
        for route in routes:
            match, child_scope = route.matches(probe)
            # Starlette's Match enum, by name: this package does not import Starlette.
            kind = getattr(match, "name", None)
            if kind == "FULL":
                found, found_scope = route, child_scope
                break
            if kind == "PARTIAL" and found is None:
                found, found_scope = route, child_scope
        if found is None:  # a Mount with nothing inside for this path: a 404
            return None
        probe.update(found_scope or {})
        routes = getattr(found, "routes", None)
        if not routes:  # a Route, a WebSocketRoute, or a Mount of a plain ASGI app
            return found
    return None


def _route_pattern(scope: Scope, outer_root_path: Any = None) -> Optional[str]:
    """The path pattern of the endpoint route that answered, None for none (no router, or a
    route that is no endpoint: a Mount of a plain ASGI app, a Host)."""
    route = scope.get("route")
    if route is None:
        try:
            route = _replayed_route(scope, outer_root_path)
        except Exception:  # a router of another shape: the page is named after its path
            logger.debug("analytics_asgi: could not find the route of %r", scope.get("path"))
            route = None
    if route is None or getattr(route, "endpoint", None) is None:
        return None
    # FastAPI 0.137 and later include routers lazily: scope["route"] is the route as declared,
    # without the prefixes of include_router(prefix=...), and the prefixed path is in the
    # scope's effective route context.
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        effective = fastapi_scope.get("effective_route_context")
        path = getattr(effective, "path", None)
        if getattr(effective, "original_route", None) is route and isinstance(path, str) and path:
            return path
    pattern = getattr(route, "path", None)
    return pattern if isinstance(pattern, str) else None


def page_name(scope: Scope, outer_root_path: Any = None) -> str:
    """The matched route's path pattern (``/items/{item_id}``: Starlette and FastAPI put the
    route in the scope), or the path for a ``{...:path}`` catch-all or no route.

    Starlette's ``Mount`` adds the part of the path it matched to ``root_path`` and its own
    router then puts the inner route in the scope: that part (since ``outer_root_path``, what
    the server gave) is put back in front of the pattern, ``/blog`` + ``/{slug}``. A route
    that is no endpoint (a Mount of a plain ASGI app, a Host) is named after the path.
    """
    path = scope_path(scope)
    pattern = _route_pattern(scope, outer_root_path)
    if pattern is None:
        return route_name(None, path)
    root_path, outer = _text(scope.get("root_path")), _text(outer_root_path)
    if root_path != outer and root_path.startswith(outer):
        pattern = root_path[len(outer) :].rstrip("/") + "/" + pattern.lstrip("/")
    return route_name(pattern, path)


def record_page_view(
    target: Any,
    scope: Scope,
    context: ScopeRequestContext,
    body: Optional[bytes],
    outer_root_path: Any = None,
) -> Optional[bool]:
    """Send the page view of the request described by ``scope`` through ``target`` (a Client,
    or the ``analytics_core`` module for its default client). Never raises."""
    try:
        user_id, anonymous_id = _ids(context)
        properties = dict(context.context.get("page", {}))
        title = document_title(body)
        if title:
            properties["title"] = title
        # Everything passed explicitly: an app may send the response from a thread or task
        # that did not inherit the request's context.
        ok, _ = target.page(
            user_id=user_id,
            anonymous_id=anonymous_id,
            name=page_name(scope, outer_root_path),
            properties=properties,
            context=context.context,
        )
    except Exception:  # a page view must never turn a good response into an error
        logger.exception("analytics_asgi: recording the page view failed")
        return False
    return ok


def _ids(context: ScopeRequestContext) -> Tuple[Optional[str], Optional[str]]:
    user_id, anonymous_id = context.user_id, context.anonymous_id
    if user_id is None and anonymous_id is None:
        anonymous_id = context.mint_anonymous_id()
    return user_id, anonymous_id
