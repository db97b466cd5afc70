"""Process-wide capture of outgoing messages, for tests (see :mod:`analytics_core.testing`).

While a capture is active, every message any :class:`~analytics_core.Client` accepts (the
module-level API, clients made by the integrations, a user's own) is appended to it, in its
wire form, instead of being queued or sent. One module-global list, so the client's hot path
pays a single global lookup when no test is capturing.

Captures nest: :func:`start` begins one on top of whatever is active and :func:`stop` goes back
to it. :func:`start_sending` is the opposite, for a test that wants real delivery: nothing is
captured until the matching :func:`stop`, not even by :data:`redirect`.
"""

import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

Message = Dict[str, Any]

active: Optional[List[Message]] = None
"""The list messages go to while a capture is active; None otherwise (read by Client)."""

redirect: Optional[Callable[[], Optional[List[Message]]]] = None
"""Consulted when no capture is active: a list to capture into, or None to send. The Django app
installs one that answers with ``analytics_django.outbox`` while Django's test runner runs."""

sending = False
"""True while a test asked for real delivery (:func:`start_sending`): ``redirect`` is ignored."""

_lock = threading.Lock()
_saved: List[Tuple[Optional[List[Message]], bool]] = []


def start() -> List[Message]:
    """Begin capturing (on top of any capture already active); the list that will receive
    the messages until the matching :func:`stop`."""
    global active
    with _lock:
        _saved.append((active, sending))
        active = []
        return active


def start_sending() -> None:
    """Until the matching :func:`stop`, messages are sent, whatever captured them before."""
    global active, sending
    with _lock:
        _saved.append((active, sending))
        active = None
        sending = True


def stop() -> None:
    """End the innermost :func:`start` or :func:`start_sending`: what was active before is
    active again."""
    global active, sending
    with _lock:
        if not _saved:
            raise RuntimeError("analytics_core: no capture to stop")
        active, sending = _saved.pop()


def sink() -> Optional[List[Message]]:
    """Where messages go instead of being sent right now, or None when they are sent."""
    if active is not None:
        return active
    if redirect is not None and not sending:
        return redirect()
    return None
