"""A local Segment-compatible collector: the HTTP Tracking API, stored in SQLite.

In-process use (tests, demos)::

    from analytics_core.collector import Collector
    with Collector() as collector:
        client = analytics_core.Client("KEY", host=collector.url)
        ...
        collector.events(type="track")

From a shell: ``python -m analytics_core.collector --port 8086 --db events.db``.
"""

from .cli import main
from .faults import Fault, FaultPlan
from .protocol import MAX_BODY_BYTES, MAX_MESSAGE_BYTES, RequestError
from .server import Collector
from .store import EventStore

__all__ = [
    "Collector",
    "EventStore",
    "Fault",
    "FaultPlan",
    "RequestError",
    "MAX_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "main",
]
