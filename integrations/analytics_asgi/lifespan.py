"""The ``lifespan`` scope: deliver the analytics queue when the server shuts the app down.

uvicorn (alone, with ``--workers``, or as gunicorn's worker) handles SIGTERM gracefully and then
raises SIGTERM again with the default handler restored, so the process dies by the signal and
no ``atexit`` hook runs: analytics_core's exit hook never gets to deliver. The lifespan
shutdown is the last moment the app is told about, after every request and background task
finished, so the queue is delivered there.

The delivery happens when the app answers ``lifespan.shutdown`` (``complete`` or ``failed``),
before the answer is passed to the server: the app's own shutdown handlers have run by then, and
what they tracked goes too. An app that does not speak the lifespan protocol (it raises, or
returns, without answering the startup) has its part answered here, so that the delivery at
shutdown still happens and the server sees an app that supports lifespan.
"""

import logging
from typing import Awaitable, Callable

from .asgi_types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["run_lifespan"]

logger = logging.getLogger("segment")

Deliver = Callable[[], Awaitable[None]]

_SHUTDOWN_ANSWERS = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


class _Progress:
    """How far the app got through the protocol."""

    __slots__ = ("startup_asked", "startup_answered", "shutdown_asked", "delivered")

    def __init__(self) -> None:
        self.startup_asked = False
        self.startup_answered = False
        self.shutdown_asked = False
        self.delivered = False


async def refuse_startup(receive: Receive, send: Send, error: Exception) -> None:
    """Answer the lifespan's startup with ``lifespan.startup.failed`` and ``error``'s text, then
    raise it, as Starlette's own router does with an error of the app's startup: uvicorn and
    hypercorn log the text and stop, and Starlette's ``TestClient`` raises ``error``."""
    message = await receive()
    if message.get("type") == "lifespan.startup":
        await send({"type": "lifespan.startup.failed", "message": f"{error}"})
    raise error


async def run_lifespan(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, deliver: Deliver
) -> None:
    """Run ``app``'s lifespan, awaiting ``deliver()`` (which must not raise) at shutdown."""
    progress = _Progress()

    async def receive_tracked() -> Message:
        message = await receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            progress.startup_asked = True
        elif kind == "lifespan.shutdown":
            progress.shutdown_asked = True
        return message

    async def send_tracked(message: Message) -> None:
        kind = message.get("type", "")
        if kind in _SHUTDOWN_ANSWERS and not progress.delivered:
            progress.delivered = True
            await deliver()
        elif kind.startswith("lifespan.startup."):
            progress.startup_answered = True
        await send(message)

    try:
        await app(scope, receive_tracked, send_tracked)
    except Exception as error:
        if progress.startup_answered:
            # A real failure of the app's own lifespan: the server must hear about it. What was
            # tracked before it still goes, if shutdown had begun.
            if progress.shutdown_asked and not progress.delivered:
                await deliver()
            raise
        logger.info(
            "analytics_asgi: the app does not support the lifespan protocol (%s: %s); "
            "SegmentMiddleware answers it, to deliver events at shutdown",
            type(error).__name__,
            error,
        )
    else:
        if progress.startup_answered:
            if progress.shutdown_asked and not progress.delivered:
                await deliver()
            return
        logger.info(
            "analytics_asgi: the app returned from lifespan without answering it; "
            "SegmentMiddleware answers it, to deliver events at shutdown"
        )
    await _answer_for_the_app(receive, send, progress, deliver)


async def _answer_for_the_app(
    receive: Receive, send: Send, progress: _Progress, deliver: Deliver
) -> None:
    if not progress.startup_asked:
        await receive()  # lifespan.startup: the server sends it first
    await send({"type": "lifespan.startup.complete"})
    while (await receive()).get("type") != "lifespan.shutdown":
        pass
    await deliver()
    await send({"type": "lifespan.shutdown.complete"})
