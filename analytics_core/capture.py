"""Process-wide capture of outgoing messages, for tests (see :mod:`analytics_core.testing`).

While a capture is active, every message any :class:`~analytics_core.Client` accepts (the
module-level API, clients made by the integrations, a user's own) is appended to it, in its
wire form, instead of being queued or sent. One module-global list, so the client's hot path
pays a single global lookup when no test is capturing.
"""

import threading
from typing import Any, Dict, List, Optional

active: Optional[List[Dict[str, Any]]] = None
"""The list messages go to while a capture is active; None otherwise (read by Client)."""

_lock = threading.Lock()


def start() -> List[Dict[str, Any]]:
    """Begin capturing; the list that will receive the messages."""
    global active
    with _lock:
        if active is not None:
            raise RuntimeError("analytics_core: a capture is already active")
        active = []
        return active


def stop() -> None:
    """Stop capturing: clients queue and send again."""
    global active
    with _lock:
        active = None
