"""Per-request context held in ``contextvars``, merged into every message built while it is set.

Integrations call :func:`set_request_context` when a request starts and
:func:`reset_request_context` when it ends (exception or not). ``contextvars`` makes this
correct under threads and asyncio alike.
"""

import contextvars
import logging
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import ValidationError
from .ids import new_message_id

logger = logging.getLogger("segment")

# Two threads of one request may need an id at the same moment; they must agree on one.
_mint_lock = threading.Lock()

_request: contextvars.ContextVar = contextvars.ContextVar("analytics_request_context", default=None)


class RequestContextBase:
    """What every request context does with its fields, whatever stores them: reading them
    when a message first needs them (``_fill``, then :meth:`_read_fields`), the ``context`` and
    ``anonymous_id`` properties, and minting an anonymous id.

    :class:`RequestContext` stores them in slots. An integration whose context is made on
    every request may store them otherwise (Flask's is built by C code: see
    ``analytics_flask.request_context``). Every subclass has ``_context``, ``_anonymous_id``,
    ``_fill``, ``user_id``, ``client`` and ``minted_anonymous_id``.
    """

    __slots__ = ()

    _context: Dict[str, Any]
    _anonymous_id: Optional[str]
    _fill: Any
    user_id: Optional[str]
    client: Any
    minted_anonymous_id: Optional[str]

    def _run_fill(self) -> None:
        fill = self._fill
        if fill is None:
            return
        try:
            context, anonymous_id = self._read_fields()
        except Exception:  # a request we cannot read still gets its messages sent
            logger.exception("analytics: could not read the request's context; sending without")
            context, anonymous_id = {}, None
        # What was assigned before the fill ran (explicitly, by the app) wins over the request.
        context.update(self._context)
        self._context = context
        if self._anonymous_id is None:
            self._anonymous_id = anonymous_id
        # Cleared last: another thread that sees no fill sees the filled fields.
        self._fill = None

    def _read_fields(self) -> Tuple[Dict[str, Any], Optional[str]]:
        """The request's ``(context, anonymous_id)``: what ``fill`` answers. A subclass that
        reads its request itself overrides this, and sets ``_fill`` to any value but None until
        it ran (one object less to make on every request)."""
        return self._fill()  # type: ignore[misc]

    @property
    def was_read(self) -> bool:
        """Whether the request's fields were read: a message of this request was built (or the
        app read them). Until then the request has queued nothing that needs delivering."""
        return self._fill is None

    @property
    def context(self) -> Dict[str, Any]:
        """The request's context fields (ip, userAgent, locale, page, ...)."""
        if self._fill is not None:
            self._run_fill()
        return self._context

    @context.setter
    def context(self, value: Dict[str, Any]) -> None:
        self._run_fill()
        self._context = value

    @property
    def anonymous_id(self) -> Optional[str]:
        """The browser's ``ajs_anonymous_id``, or what the app assigned."""
        if self._fill is not None:
            self._run_fill()
        return self._anonymous_id

    @anonymous_id.setter
    def anonymous_id(self, value: Optional[str]) -> None:
        self._run_fill()
        self._anonymous_id = value

    def mint_anonymous_id(self) -> str:
        """The request's anonymous id, minted (a random UUID) the first time a message needs one
        and the request has none: every later message of the request carries the same one."""
        with _mint_lock:
            anonymous_id = self.anonymous_id
            if anonymous_id is None:
                anonymous_id = new_message_id()
                self._anonymous_id = anonymous_id
                self.minted_anonymous_id = anonymous_id
        return anonymous_id

    def __repr__(self) -> str:
        return (
            f"RequestContext(context={self.context!r}, user_id={self.user_id!r}, "
            f"anonymous_id={self.anonymous_id!r})"
        )


class RequestContext(RequestContextBase):
    """What a request contributes to messages: context fields, default user ids and, for
    integrations that own a client (Flask, ASGI), the client the module-level API uses.

    Integrations pass ``fill`` rather than ``context`` and ``anonymous_id``: a callable that
    returns ``(context, anonymous_id)`` and runs when a message first needs them. Most requests
    send no analytics at all, and parsing headers, cookies and the client address costs them
    more than the rest of a hello-world request does. ``fill`` may run more than once when two
    threads of one request need it at the same moment; it must be free of side effects.
    """

    __slots__ = ("_context", "_anonymous_id", "_fill", "user_id", "client", "minted_anonymous_id")

    def __init__(
        self,
        context: Optional[Dict[str, Any]] = None,
        user_id: Optional[str] = None,
        anonymous_id: Optional[str] = None,
        client: Any = None,
        fill: "Optional[Callable[[], Tuple[Dict[str, Any], Optional[str]]]]" = None,
    ) -> None:
        self._start(client, fill, context, anonymous_id)
        self.user_id = user_id

    def _start(
        self,
        client: Any,
        fill: "Optional[Callable[[], Tuple[Dict[str, Any], Optional[str]]]]",
        context: "Optional[Dict[str, Any]]" = None,
        anonymous_id: Optional[str] = None,
    ) -> None:
        """Everything ``__init__`` sets but ``user_id``: for an integration's subclass whose
        ``user_id`` is a property of its own, set up in its own ``__init__`` (every request
        builds one, so assigning ``user_id`` through that property would be a wasted call)."""
        self._context = context or {}
        self._anonymous_id = anonymous_id
        self._fill = fill
        self.client = client
        # Set when this request had no anonymous id of its own and a message needed one: the
        # integration then hands it to the browser as the ajs_anonymous_id cookie.
        self.minted_anonymous_id: Optional[str] = None


context_set_by_integration: "Callable[[], Optional[RequestContextBase]]" = _request.get
"""The context an integration made current with :func:`set_request_context`, if any
(``ContextVar.get`` itself: the client's hot path calls it, then the lookups only if None)."""

request_context_lookups: "List[Callable[[], Optional[RequestContextBase]]]" = []
"""Where else a request's context may be found (:func:`add_request_context_lookup`), in the
order they are asked; changed in place, never rebound, so a module that imported it sees every
lookup added later."""

_outermost_lookups: "List[Callable[[], Optional[RequestContextBase]]]" = []


def add_request_context_lookup(
    lookup: "Callable[[], Optional[RequestContextBase]]", *, outermost: bool = False
) -> None:
    """Find the current request's context with ``lookup()`` when no integration set one: for a
    framework that already keeps its current request in a contextvar of its own, where setting
    ours as well would cost every request (Flask: see ``analytics_flask.request_context``), or
    for an integration that keeps a cheaper record of its request (ASGI).

    ``lookup`` answers None outside its requests, quickly: every call outside a request asks
    it. Adding the same lookup twice adds it once. An ``outermost`` lookup (the ASGI
    middleware's: the server's side of every other framework) is asked after all the others,
    so that a Flask app mounted in a Starlette one, whose requests are inside the ASGI one,
    gets its own context."""
    if lookup in request_context_lookups:
        return
    if outermost:
        _outermost_lookups.append(lookup)
        request_context_lookups.append(lookup)
    else:
        # Before the outermost ones, in the order they were added.
        request_context_lookups.insert(
            len(request_context_lookups)
            - sum(1 for added in request_context_lookups if added in _outermost_lookups),
            lookup,
        )


def looked_up_request_context() -> "Optional[RequestContextBase]":
    """The first context a lookup finds, or None (a lookup that raises is logged, skipped)."""
    for lookup in request_context_lookups:
        try:
            found = lookup()
        except Exception:  # a broken lookup must not break the app's analytics calls
            logger.exception("analytics: looking up the request's context failed")
            continue
        if found is not None:
            return found
    return None


def current_request_context() -> "Optional[RequestContextBase]":
    """The context of the request being handled on this thread / task, if any: the one an
    integration set, else the one a lookup finds."""
    request = _request.get()
    if request is None and request_context_lookups:
        return looked_up_request_context()
    return request


set_request_context: "Callable[[Optional[RequestContext]], contextvars.Token]" = _request.set
"""Make ``value`` the current request context; returns a token to reset it with
(``ContextVar.set`` itself: integrations call it on every request, most of which send nothing)."""

reset_request_context: "Callable[[contextvars.Token], None]" = _request.reset
"""Restore the context that was current before :func:`set_request_context` (``ContextVar.reset``
itself; ``ValueError`` for a token made in another ``contextvars.Context``)."""


def set_user_id(user_id: Any) -> bool:
    """Tell the integration who the current request's user is, for every later message of the
    request that names no user: for authentication the integration cannot read by itself
    (a FastAPI dependency, a session key of the app's own, a custom Django backend).

    A string, a number or a UUID (written as text); ``None`` forgets what was set (the
    framework's user, if any, applies again). Returns True when the request's user was set.
    Outside a request handled by an integration nothing changes and it returns False. Any other
    value is a :class:`~analytics_core.ValidationError`: raised outside a request (and under a
    test capture), logged inside one, where the request must not fail for it.
    """
    request = current_request_context()
    try:
        text = _user_id_text(user_id)
    except ValidationError as error:
        from .tools import capture  # here: capture must stay importable without the client

        if request is None or capture.sink() is not None:
            raise
        logger.error("analytics: %s", error)
        return False
    if request is None:
        logger.debug("analytics: set_user_id() outside a request changes nothing")
        return False
    request.user_id = text
    return True


def _user_id_text(user_id: Any) -> Optional[str]:
    if user_id is None:
        return None
    uuid_module = sys.modules.get("uuid")  # a UUID exists only once uuid was imported
    allowed = (str, int, float) + ((uuid_module.UUID,) if uuid_module is not None else ())
    if isinstance(user_id, bool) or not isinstance(user_id, allowed):
        raise ValidationError(
            f"set_user_id: user_id must be a string, a number or a UUID, "
            f"got {type(user_id).__name__}"
        )
    text = str(user_id)
    if not text.strip():
        raise ValidationError("set_user_id: user_id must not be empty")
    return text


def request_ids(request: RequestContext, user_id: Any, anonymous_id: Any) -> Tuple[Any, Any]:
    """The ids of a message built inside ``request``, key by key: what the caller passed wins,
    the rest comes from the request (an explicit ``user_id`` keeps the request's anonymous id,
    which is what lets Segment join the visitor's anonymous history to the user). A message
    that ends up with neither gets the request's minted anonymous id."""
    if user_id is None:
        user_id = request.user_id
    if anonymous_id is None:
        anonymous_id = request.anonymous_id
        if anonymous_id is None and user_id is None:
            anonymous_id = request.mint_anonymous_id()
    return user_id, anonymous_id


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
