"""Waiting for a child made with ``os.fork()`` in a test."""

import os
import time

__all__ = ["wait_child"]


def wait_child(pid: int, timeout: float) -> int:
    """The child's exit code once it ends; kill it and fail if it takes over ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child did not finish")
