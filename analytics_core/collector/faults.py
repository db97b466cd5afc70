"""Planned faults: the next tracking requests get the responses a test asked for.

Only a collector started with ``faults=True`` exposes this, so a production-like collector
can never be told to drop data.
"""

import threading
from typing import Any, Dict, List, Optional

from .protocol import bad_request

__all__ = ["Fault", "FaultPlan"]

# A delay longer than this is almost certainly a typo that would hang a test run.
MAX_DELAY_SECONDS = 60.0


class Fault:
    """One planned response: ``status``, optional ``retry_after`` header, ``delay``, ``times``."""

    __slots__ = ("status", "retry_after", "delay", "times")

    def __init__(
        self,
        status: int = 500,
        retry_after: Optional[str] = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.delay = delay
        self.times = times

    @property
    def stores(self) -> bool:
        """Whether a request answered by this fault is still stored (only 2xx are)."""
        return 200 <= self.status < 300

    @classmethod
    def from_json(cls, item: Any) -> "Fault":
        """Build a fault from its JSON form, raising a 400 ``invalid-fault`` if it is wrong."""
        if not isinstance(item, dict):
            raise bad_request("invalid-fault", "each fault must be a JSON object")
        unknown = set(item) - {"status", "retry_after", "delay", "times"}
        if unknown:
            raise bad_request("invalid-fault", f"unknown fault field(s): {sorted(unknown)}")
        status = item.get("status", 500)
        delay = item.get("delay", 0.0)
        times = item.get("times", 1)
        retry_after = item.get("retry_after")
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise bad_request("invalid-fault", "status must be an integer from 200 to 599")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise bad_request("invalid-fault", "delay must be a number of seconds")
        if not 0 <= delay <= MAX_DELAY_SECONDS:
            raise bad_request("invalid-fault", f"delay must be 0 to {MAX_DELAY_SECONDS:g} s")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise bad_request("invalid-fault", "times must be a positive integer")
        if retry_after is not None:
            if isinstance(retry_after, bool) or not isinstance(retry_after, (str, int, float)):
                raise bad_request("invalid-fault", "retry_after must be a string or a number")
            retry_after = str(retry_after)
            if "\r" in retry_after or "\n" in retry_after:
                raise bad_request("invalid-fault", "retry_after must be one header line")
        return cls(status, retry_after, float(delay), times)

    def to_json(self) -> Dict[str, Any]:
        """The JSON form, as ``GET /_faults`` shows it."""
        return {
            "status": self.status,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "times": self.times,
        }


class FaultPlan:
    """A thread-safe queue of faults, consumed in order, one ``times`` unit per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: List[Fault] = []

    def replace(self, items: Any) -> List[Dict[str, Any]]:
        """Replace the plan with a JSON list of faults (one object is taken as a list of one)."""
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise bad_request("invalid-fault", "the body must be a list of faults")
        faults = [Fault.from_json(item) for item in items]
        with self._lock:
            self._faults = faults
        return self.remaining()

    def clear(self) -> None:
        """Drop every planned fault."""
        with self._lock:
            self._faults = []

    def take(self) -> Optional[Fault]:
        """Return the fault for the next request (and use up one of its ``times``), if any."""
        with self._lock:
            if not self._faults:
                return None
            head = self._faults[0]
            head.times -= 1
            if head.times <= 0:
                self._faults.pop(0)
            return Fault(head.status, head.retry_after, head.delay, 1)

    def remaining(self) -> List[Dict[str, Any]]:
        """The faults still planned, in order."""
        with self._lock:
            return [fault.to_json() for fault in self._faults]
