"""Cheap message ids and timestamps for the hot path.

``str(uuid.uuid4())`` costs one ``os.urandom`` syscall per call; drawing the random bytes for 256
ids at once and formatting them by hand is several times cheaper. ``datetime.now().isoformat()``
is recomputed only when the millisecond changes, since busy callers repeat it many times.
"""

import datetime as _dt
import os
import threading
import time
from typing import Tuple

_IDS_PER_DRAW = 256
_VARIANT = "89ab"


class _IdSource:
    """Random UUID4 strings from a buffer of random bytes refilled in bulk."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hex = ""
        self._offset = 0

    def reset(self) -> None:
        """Forget buffered randomness (after ``fork()`` the child must not repeat the parent's ids)."""
        self._lock = threading.Lock()
        self._hex = ""
        self._offset = 0

    def next_id(self) -> str:
        with self._lock:
            offset = self._offset
            if offset >= len(self._hex):
                self._hex = os.urandom(16 * _IDS_PER_DRAW).hex()
                offset = 0
            self._offset = offset + 32
            h = self._hex[offset : offset + 32]
        # Version 4 in the 13th digit and the RFC 4122 variant in the 17th, as uuid.uuid4() does.
        return (
            f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
        )


_source = _IdSource()

new_message_id = _source.next_id
"""Return a fresh random UUID4 string."""

reset_after_fork = _source.reset

_UTC = _dt.timezone.utc
_last_stamp: Tuple[int, str] = (-1, "")


def now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds and offset, cached per millisecond."""
    global _last_stamp
    now = time.time()
    millis = int(now * 1000)
    cached = _last_stamp  # one read of a tuple: safe without a lock
    if cached[0] == millis:
        return cached[1]
    text = _dt.datetime.fromtimestamp(millis / 1000, _UTC).isoformat(timespec="milliseconds")
    _last_stamp = (millis, text)
    return text
