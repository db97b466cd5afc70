"""Cheap message ids and timestamps for the hot path.

``str(uuid.uuid4())`` costs one ``os.urandom`` syscall per call; drawing the random bytes for 512
ids at once and formatting them by hand is several times cheaper, and the uploader thread draws
the next 512 while it waits for the network (:func:`prepare_message_ids`), so a caller's
``track()`` usually only pops one. ``datetime.now().isoformat()`` is recomputed only when the
millisecond changes, since busy callers repeat it many times.
"""

import datetime as _dt
import os
import threading
import time
from typing import List, Optional, Tuple

_IDS_PER_DRAW = 512


def _draw_ids(count: int) -> List[str]:
    raw = bytearray(os.urandom(16 * count))
    # Version 4 in the 7th byte's high nibble, the RFC 4122 variant (binary 10) in the 9th
    # byte's top bits, as uuid.uuid4() sets them: a whole column of the draw at a time.
    raw[6::16] = bytes(byte & 0x0F | 0x40 for byte in raw[6::16])
    raw[8::16] = bytes(byte & 0x3F | 0x80 for byte in raw[8::16])
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


class _IdSource:
    """Random UUID4 strings, formatted in bulk from one ``os.urandom`` call per 512 ids.

    Callers pop from ``_ids``. When it runs out, the ``_reserve`` an uploader prepared takes its
    place, or the caller draws a new list. A list is only ever popped from once it is ``_ids``
    and a reserve is handed over once, under the lock, so no id can be given out twice.
    """

    def __init__(self) -> None:
        self._ids: List[str] = []
        self._reserve: Optional[List[str]] = None
        self._refill_lock = threading.Lock()

    def reset(self) -> None:
        """Forget buffered ids (after ``fork()`` the child must not repeat the parent's ids)."""
        self._ids = []
        self._reserve = None
        self._refill_lock = threading.Lock()

    def next_id(self) -> str:
        try:
            return self._ids.pop()  # list.pop is atomic under the GIL: no lock on the hot path
        except IndexError:
            with self._refill_lock:
                if not self._ids:
                    reserve, self._reserve = self._reserve, None
                    self._ids = reserve or _draw_ids(_IDS_PER_DRAW)
            return self.next_id()

    def prepare(self) -> None:
        """Draw the next list of ids ahead of need, unless one is ready (uploader threads call
        this between batches, so that callers' threads rarely draw)."""
        if self._reserve is not None:
            return
        drawn = _draw_ids(_IDS_PER_DRAW)
        with self._refill_lock:
            if self._reserve is None:
                self._reserve = drawn


_source = _IdSource()

new_message_id = _source.next_id
"""Return a fresh random UUID4 string."""

prepare_message_ids = _source.prepare
"""Draw the next ids ahead of need, off the callers' threads."""

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
