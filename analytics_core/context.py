"""Per-request context held in ``contextvars``, merged into every message built while it is set.

Integrations call :func:`set_request_context` when a request starts and
:func:`reset_request_context` when it ends (exception or not). ``contextvars`` makes this
correct under threads and asyncio alike.
"""

import contextvars
from typing import Any, Callable, Dict, Optional

_request: contextvars.ContextVar = contextvars.ContextVar("analytics_request_context", default=None)


class RequestContext:
    """What a request contributes to messages: context fields, default user ids and, for
    integrations that own a client (Flask, ASGI), the client the module-level API uses."""

    __slots__ = ("context", "user_id", "anonymous_id", "client")

    def __init__(
        self,
        context: Optional[Dict[str, Any]] = None,
        user_id: Optional[str] = None,
        anonymous_id: Optional[str] = None,
        client: Any = None,
    ) -> None:
        self.context = context or {}
        self.user_id = user_id
        self.anonymous_id = anonymous_id
        self.client = client

    def __repr__(self) -> str:
        return (
            f"RequestContext(context={self.context!r}, user_id={self.user_id!r}, "
            f"anonymous_id={self.anonymous_id!r})"
        )


current_request_context: "Callable[[], Optional[RequestContext]]" = _request.get
"""The context of the request being handled on this thread / task, if any (``ContextVar.get``
itself, so the hot path pays no extra Python call)."""


def set_request_context(value: Optional[RequestContext]) -> contextvars.Token:
    """Make ``value`` the current request context; returns a token to reset it with."""
    return _request.set(value)


def reset_request_context(token: contextvars.Token) -> None:
    """Restore the context that was current before :func:`set_request_context`."""
    _request.reset(token)


def merge_context(explicit: Optional[Dict[str, Any]], request: Dict[str, Any]) -> Dict[str, Any]:
    """The request's context under the caller's: explicit keys win, key by key (one level deep
    for dict values such as ``page``, so a caller can override ``page.url`` alone)."""
    if not explicit:
        return dict(request)
    merged = dict(request)
    for key, value in explicit.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            combined = dict(base)
            combined.update(value)
            merged[key] = combined
        else:
            merged[key] = value
    return merged
