"""``client.queue``: the queue's size as analytics-python's ``queue.Queue`` shows it.

Segment's guide monitors the backlog with ``analytics.default_client.queue.qsize()``. The
queue here is the pipeline's own (encoded messages, counted under its lock); this view answers
the read-only questions code written for analytics-python asks. Messages go in through the six
calls, never through the view.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import Pipeline


class QueueView:
    """Read-only ``qsize()``, ``empty()``, ``full()`` and ``maxsize`` of a client's queue."""

    __slots__ = ("_pipeline",)

    def __init__(self, pipeline: "Pipeline") -> None:
        self._pipeline = pipeline

    @property
    def maxsize(self) -> int:
        """``max_queue_size``: how many messages may wait or be in flight at once."""
        return self._pipeline.max_queue_size

    def qsize(self) -> int:
        """Messages accepted and waiting for an uploader (not those in flight)."""
        return self._pipeline.counts()["waiting"]

    def empty(self) -> bool:
        """Whether no message waits for an uploader."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether a call now would find no room: waiting and in flight fill the queue (with
        ``persist=``, what does not fit waits in the spool, so the queue is never full)."""
        if self._pipeline.spool is not None:
            return False
        counts = self._pipeline.counts()
        return counts["waiting"] + counts["in_flight"] >= self.maxsize

    def __repr__(self) -> str:
        return f"<analytics_core queue qsize={self.qsize()} maxsize={self.maxsize}>"
