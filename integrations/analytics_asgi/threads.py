"""Running a blocking call (a flush) from async code without stalling the event loop."""

import asyncio
from typing import Callable, TypeVar

__all__ = ["run_blocking"]

T = TypeVar("T")


async def run_blocking(function: Callable[[], T]) -> T:
    """Call ``function`` in a worker thread and wait for its result.

    asyncio (uvicorn, hypercorn's default) uses the loop's default executor. Under another event
    loop (trio) anyio, if installed, finds the thread; without it the call runs inline, which
    only blocks a loop that is shutting down anyway.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        try:
            import anyio.to_thread
        except ImportError:
            return function()
        return await anyio.to_thread.run_sync(function)
    return await loop.run_in_executor(None, function)
