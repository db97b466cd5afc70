"""The one payload both libraries send, so neither side gets an easier message.

A track call with ten mixed properties (str, int, float, bool, None, a nested dict, a list and a
timezone-aware datetime) and user ids drawn from a fixed pool of 1,000.
"""

import base64
import datetime as _dt
import json
import uuid
from typing import Any, Dict, List

EVENT = "Order Completed"
WRITE_KEY = "bench-write-key"
USER_COUNT = 1000

# Aware on purpose: the two libraries treat naive datetimes differently (UTC versus a local-time
# guess), and the benchmark should not measure that difference.
_ORDERED_AT = _dt.datetime(2024, 5, 17, 12, 30, 45, 123000, tzinfo=_dt.timezone.utc)


def user_ids(count: int = USER_COUNT) -> List[str]:
    """The pool of user ids, built once so formatting them is never inside a timed loop."""
    return [f"user-{index:05d}" for index in range(count)]


def properties(index: int = 0) -> Dict[str, Any]:
    """Ten properties of mixed types; ``index`` varies one of them between calls."""
    return {
        "order_id": f"order-{index}",
        "revenue": 129.99,
        "quantity": 3,
        "coupon_applied": True,
        "discount": None,
        "currency": "EUR",
        "shipping": {"method": "express", "cost": 4.5, "country": "DE"},
        "skus": ["sku-1", "sku-22", "sku-333"],
        # A new datetime per call, as an application would have: a shared one would let a library
        # that keeps references (rather than encoded bytes) look smaller in the memory row.
        "ordered_at": _ORDERED_AT + _dt.timedelta(milliseconds=index),
        "position": index,
    }


def basic_auth(write_key: str = WRITE_KEY) -> str:
    """The ``Authorization`` header value both libraries send for a write key."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def batch_body(size: int) -> bytes:
    """A ``/v1/batch`` body of ``size`` track messages shaped like what a client sends.

    Used to measure the collector on its own, so its JSON is built once, up front.
    """
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
    ids = user_ids()
    messages = [
        {
            "type": "track",
            "event": EVENT,
            "userId": ids[index % len(ids)],
            "anonymousId": None,
            "properties": properties(index),
            "context": {"library": {"name": "bench", "version": "0"}},
            "integrations": {},
            "timestamp": now,
            "messageId": str(uuid.uuid4()),
        }
        for index in range(size)
    ]
    body = {"batch": messages, "sentAt": now, "writeKey": WRITE_KEY}
    return json.dumps(body, default=_iso, separators=(",", ":")).encode()


def _iso(value: Any) -> str:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)
