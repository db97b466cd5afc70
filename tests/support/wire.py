"""A message as stored by the collector or as returned by a call, reduced to what was sent."""

from typing import Any, Dict

STORE_FIELDS = {"_id", "_received_at", "_write_key_fingerprint"}
"""What the collector adds to each stored message."""


def wire(event: Dict[str, Any]) -> Dict[str, Any]:
    """A stored message without the collector's own bookkeeping fields."""
    return {key: value for key, value in event.items() if key not in STORE_FIELDS}


def sent_part(message: Dict[str, Any]) -> Dict[str, Any]:
    """What of a returned message goes on the wire: the keys analytics-python returns as None
    (``anonymousId``, a page's ``name``...) are left out of what is sent."""
    return {key: value for key, value in message.items() if value is not None}
