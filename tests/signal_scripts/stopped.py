"""A program that uses analytics_core and is stopped with SIGTERM by tests/test_signals.py.

``python stopped.py SCENARIO``; configured from the environment: ``SIGNAL_TEST_HOST`` (the
collector, or ``blackhole`` for a server that accepts and never answers, so delivery hangs),
``SIGNAL_TEST_USER`` (the user id of every event), ``SIGNAL_TEST_EVENTS`` (how many to queue
before the signal), ``SIGNAL_TEST_SHUTDOWN_TIMEOUT``.

Each scenario prints ``ready`` once the events are queued and the program is doing what it
does when the signal comes; every other line it prints is something the test checks. The
scenarios are the shapes of program whose reaction to SIGTERM must stay its own:

- ``sleep``, ``socket``, ``busy``: the default disposition, the main thread in a long C call,
  a blocking socket read or pure Python;
- ``except``: the same inside ``except BaseException``, which must not see our handling;
- ``thread``: a non-daemon thread that never ends, the main thread already finished;
- ``idiom``: the app's handler cleans up, restores the default and raises SIGTERM again;
- ``idiom_kill``: the same, sending it with ``os.kill(os.getpid(), ...)``;
- ``idiom_after``: the same handler installed after the client, restoring what it replaced;
- ``flag``: a server-like handler: the first SIGTERM sets a flag and puts the default back (a
  second one forces the exit); the program then tracks one more event, checks the mask, starts
  a subprocess and terminates it, and exits normally;
- ``tight``: the main thread calls ``track()`` in a tight loop;
- ``locked``: the signal comes while the main thread is inside ``track()`` holding the queue's
  lock (a slow ``append`` of the queue, ``SIGNAL_TEST_SLOW`` seconds);
- ``in_flush``: the signal comes while the main thread waits in ``flush()``;
- ``ends``: the program ends by itself; the signal comes during the delivery at exit;
- ``ignored``: SIGTERM ignored before the client exists;
- ``elsewhere``: the main thread waits on a lock forever; another thread of the program takes
  the SIGTERM (sent to it by itself, as the kernel may hand a process's signal to any thread):
  the main thread must still be woken to run the handler;
- ``held``: the main thread blocks SIGTERM for a second (a critical section), says ``held``,
  then unblocks it: the signal must wait for it, not be taken by analytics_core's threads.
"""

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional

import analytics_core

WRITE_KEY = "wk-signal-test"


def blackhole() -> str:
    """A URL whose server accepts connections and never answers (the listening socket is kept
    open by the module-level reference, the kernel completes the handshakes)."""
    global _listener
    _listener = socket.socket()
    _listener.bind(("127.0.0.1", 0))
    _listener.listen(64)
    return f"http://127.0.0.1:{_listener.getsockname()[1]}"


_listener = None


def make_client() -> analytics_core.Client:
    host = os.environ["SIGNAL_TEST_HOST"]
    return analytics_core.Client(
        WRITE_KEY,
        host=blackhole() if host == "blackhole" else host,
        upload_interval=60,  # nothing leaves before the signal: the stop delivers it all
        upload_size=1000,
        max_queue_size=100_000,
        shutdown_timeout=float(os.environ.get("SIGNAL_TEST_SHUTDOWN_TIMEOUT", "5")),
    )


def queue_events(client: analytics_core.Client) -> None:
    user = os.environ["SIGNAL_TEST_USER"]
    for index in range(int(os.environ.get("SIGNAL_TEST_EVENTS", "5"))):
        client.track(user, "Queued", {"index": index})


def say(*words: object) -> None:
    print(*words, flush=True)


def blocked_in_main_thread() -> list:
    """The signals the calling thread blocks (an empty set on a clean process)."""
    return sorted(int(signum) for signum in signal.pthread_sigmask(signal.SIG_BLOCK, []))


def terminate_a_child() -> None:
    """Start a subprocess and terminate it, saying the mask and how the child ended: cleanup
    code in a SIGTERM handler starts helpers like this."""
    say("blocked", blocked_in_main_thread())
    started = time.monotonic()
    child = subprocess.Popen(["sleep", "30"])
    child.terminate()
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    say("child", child.returncode, f"{time.monotonic() - started:.3f}")


def app_idiom_handler(restore: object, by_pid: bool = False, subprocess_first: bool = False):
    """The common "clean up, restore, die by the signal" handler (``by_pid``: the variant that
    sends the signal to the process rather than raising it in the main thread;
    ``subprocess_first``: its cleanup starts and terminates a subprocess)."""

    def handler(signum: int, frame: object) -> None:
        say("app handler ran")
        if subprocess_first:
            terminate_a_child()
        signal.signal(signal.SIGTERM, restore)
        if by_pid:
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            signal.raise_signal(signal.SIGTERM)
        say("still alive after the app's re-raise")

    return handler


client: Optional[analytics_core.Client] = None


def main(scenario: str) -> None:
    global client  # a module-level client, as programs have: it outlives main()
    if scenario == "ignored":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if scenario in ("idiom", "idiom_kill", "idiom_subprocess"):
        handler = app_idiom_handler(
            signal.SIG_DFL,
            by_pid=scenario == "idiom_kill",
            subprocess_first=scenario == "idiom_subprocess",
        )
        signal.signal(signal.SIGTERM, handler)
    stopped = threading.Event()
    if scenario == "flag":

        def stop_gracefully(signum: int, frame: object) -> None:
            stopped.set()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        signal.signal(signal.SIGTERM, stop_gracefully)
    client = make_client()
    if scenario == "locked":  # before anything is queued: the uploader takes this deque too
        client.pipeline._queue = SlowDeque()
    queue_events(client)
    if scenario == "idiom_after":
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, app_idiom_handler(previous))

    if scenario in ("sleep", "idiom", "idiom_kill", "idiom_subprocess", "idiom_after", "ignored"):
        say("ready")
        time.sleep(30)
        say("slept to the end")
    elif scenario == "socket":
        left, right = socket.socketpair()
        say("ready")
        left.recv(1)
        say("read returned")
    elif scenario == "busy":
        say("ready")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pass
        say("busy loop ended")
    elif scenario == "except":
        try:
            say("ready")
            time.sleep(30)
        except BaseException as error:  # what an app's catch-all looks like
            say("caught", type(error).__name__)
            time.sleep(30)
    elif scenario == "thread":
        threading.Thread(target=lambda: time.sleep(3600), daemon=False).start()
        say("ready")  # the main thread ends here; the interpreter waits for the thread
    elif scenario == "flag":
        say("ready")
        stopped.wait(30)
        client.track(os.environ["SIGNAL_TEST_USER"], "After Stop")
        terminate_a_child()
    elif scenario == "tight":
        user = os.environ["SIGNAL_TEST_USER"]
        index = 0
        while True:
            client.track(user, "Tight", {"index": index})
            index += 1
            if index == 2000:
                say("ready")
    elif scenario == "locked":
        SlowDeque.slow = True
        client.track(os.environ["SIGNAL_TEST_USER"], "Locked")
        say("returned from track")
        time.sleep(30)
    elif scenario == "in_flush":
        say("ready")
        client.flush()
    elif scenario == "ends":
        say("ready")
    elif scenario == "elsewhere":

        def take_the_signal() -> None:
            time.sleep(0.3)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            time.sleep(30)

        threading.Thread(target=take_the_signal, daemon=True).start()
        say("ready")
        never = threading.Lock()
        never.acquire()
        never.acquire()  # C code that waits until interrupted; nothing releases it
        say("lock acquired")
    elif scenario == "held":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        say("ready")
        time.sleep(1.0)
        say("held")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        time.sleep(30)
        say("slept to the end")
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


class SlowDeque(collections.deque):
    """The queue's deque, whose next append (once ``slow`` is set) says ``ready`` and takes
    ``SIGNAL_TEST_SLOW`` seconds: it runs under the pipeline's lock, inside ``track()``."""

    slow = False

    def append(self, item: object) -> None:
        if SlowDeque.slow:
            SlowDeque.slow = False
            say("ready")
            time.sleep(float(os.environ.get("SIGNAL_TEST_SLOW", "0.4")))
        super().append(item)


if __name__ == "__main__":
    main(sys.argv[1])
