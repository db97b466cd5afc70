"""``yield_gil()`` really lets another thread have the GIL (see analytics_core/gil.py)."""

import sys
import threading
import time

from analytics_core.gil import yield_gil


def wakes_while_spinning(call, seconds=0.5):
    """How often a thread that sleeps 1 ms at a time got the GIL back while this one spun for
    ``seconds`` calling ``call``, with a switch interval of 2 s: the interpreter takes the GIL
    from a spinning thread only after that, so the sleeper runs only when ``call`` lets go."""
    wakes = []
    stop = threading.Event()

    def sleeper():
        while not stop.is_set():
            time.sleep(0.001)  # lets go of the GIL, then must get it back
            wakes.append(1)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(2.0)
    thread = threading.Thread(target=sleeper)
    try:
        thread.start()
        time.sleep(0.05)  # the sleeper is running
        wakes.clear()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            call()
        return len(wakes)
    finally:
        stop.set()
        sys.setswitchinterval(previous)
        thread.join()


def test_yield_gil_lets_a_waiting_thread_run():
    assert wakes_while_spinning(yield_gil) >= 10


def test_a_call_that_keeps_the_gil_lets_it_wait():
    # The control: the same spin with a plain call in its place keeps the GIL throughout.
    assert wakes_while_spinning(lambda: None) <= 1
