"""The SIGTERM watch's ownership of the wakeup descriptor, run by tests/test_signals.py.

``python watched.py CASE``; the collector from ``SIGNAL_TEST_HOST``. Prints what the test
checks:

- ``fork``: the parent has a client (so our handler and its watch); a forked child takes a
  SIGTERM on a thread of its own while its main thread waits on a lock. The child must be
  woken and die by the signal; the parent, whose watcher must not have heard the child's
  signal, says ``parent alive`` a second later.
- ``asyncio``: the first client takes the wakeup descriptor; an event loop that adds a signal
  handler later takes it over, as it would without us.
- ``taken``: the program set a wakeup descriptor of its own before the first client: it is left
  to the program.
"""

import asyncio
import os
import signal
import sys
import threading
import time

import analytics_core


def client() -> analytics_core.Client:
    host = os.environ["SIGNAL_TEST_HOST"]
    return analytics_core.Client("wk-watch", host=host, upload_interval=60)


def wait_forever_while_another_thread_takes_sigterm() -> None:
    def take() -> None:
        time.sleep(0.2)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        time.sleep(30)

    threading.Thread(target=take, daemon=True).start()
    never = threading.Lock()
    never.acquire()
    never.acquire()


def wakeup_fd() -> int:
    current = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(current)
    return current


def main(case: str) -> None:
    if case == "fork":
        parent = client()
        parent.track("u", "Parent")
        pid = os.fork()
        if pid == 0:
            child = client()
            child.track("u", "Child")
            wait_forever_while_another_thread_takes_sigterm()
            os._exit(0)  # not reached: the signal ends the child
        _, status = os.waitpid(pid, 0)
        print("child", -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        time.sleep(1.0)
        print("parent alive", flush=True)
    elif case == "asyncio":
        client().track("u", "Before")
        ours = wakeup_fd()
        print("ours set", ours != -1)

        async def add_and_remove() -> int:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
            taken = wakeup_fd()
            loop.remove_signal_handler(signal.SIGUSR1)
            return taken

        taken = asyncio.run(add_and_remove())
        print("loop took it", taken not in (-1, ours))
    elif case == "taken":
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end)
        client().track("u", "Taken")
        print("still the program's", wakeup_fd() == write_end)
    else:
        raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main(sys.argv[1])
