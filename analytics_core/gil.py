"""Handing the GIL to another thread that wants it, as cheaply as the platform allows.

A caller in a tight loop of ``track()`` calls holds the GIL until the interpreter takes it away
(every 5 ms, ``sys.getswitchinterval()``); an uploader back from the network waits that long
for it each time. The pipeline lets go of the GIL now and then instead (see ``Pipeline.put``),
which needs a call that releases the GIL around a system call and returns at once.

``time.sleep(0)`` is the obvious one, and the dearest: on Linux the thread really sleeps (for
its 50 µs timer slack, ~110 µs of wall time here), and putting a thread to sleep and waking it
costs it about 49 µs of CPU on the development VM, whatever the wait (a ``sleep(0.01)`` costs 80,
a blocked ``Lock.acquire()`` 49). ``os.sched_yield()`` costs 0.3 µs and releases the GIL from
Python 3.10; on 3.9 it keeps the GIL, and ``select()`` on no files with a zero timeout (0.7 µs)
is used.
Windows has neither: its ``Sleep(0)`` is cheap, so ``time.sleep(0)`` is kept there.
"""

import os
import sys
import time
from typing import Callable


def _select_nothing() -> None:
    import select  # here: only the 3.9 fallback needs it

    select.select([], [], [], 0)


def _choose() -> Callable[[], None]:
    if hasattr(os, "sched_yield") and sys.version_info >= (3, 10):
        return os.sched_yield
    if os.name == "posix":
        return _select_nothing
    return lambda: time.sleep(0)


yield_gil: Callable[[], None] = _choose()
"""Release the GIL and take it back, letting a thread that waits for it run first."""
