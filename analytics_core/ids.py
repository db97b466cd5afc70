"""Cheap message ids and timestamps for the hot path.

``str(uuid.uuid4())`` costs one ``os.urandom`` syscall per call; drawing the random bytes for 256
ids at once and formatting them by hand is several times cheaper. ``datetime.now().isoformat()``
is recomputed only when the millisecond changes, since busy callers repeat it many times.
"""

import datetime as _dt
import os
import threading
import time
from typing import List, Tuple

_IDS_PER_DRAW = 512
# The RFC 4122 variant digit for each possible random hex digit (its top two bits become 10).
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _draw_ids(count: int) -> List[str]:
    h = os.urandom(16 * count).hex()
    # Version 4 in the 13th digit and the variant in the 17th, as uuid.uuid4() does.
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


class _IdSource:
    """Random UUID4 strings, formatted in bulk from one ``os.urandom`` call per 512 ids."""

    def __init__(self) -> None:
        self._ids: List[str] = []
        self._refill_lock = threading.Lock()

    def reset(self) -> None:
        """Forget buffered ids (after ``fork()`` the child must not repeat the parent's ids)."""
        self._ids = []
        self._refill_lock = threading.Lock()

    def next_id(self) -> str:
        try:
            return self._ids.pop()  # list.pop is atomic under the GIL: no lock on the hot path
        except IndexError:
            with self._refill_lock:
                if not self._ids:
                    self._ids = _draw_ids(_IDS_PER_DRAW)
            return self.next_id()


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
