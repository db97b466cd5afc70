"""Building and validating each message type of the Segment spec.

Each builder checks what the caller controls (programmer errors raise :class:`ValidationError`
naming the field) and returns a plain dict in wire form; encoding happens afterwards, once.
"""

import datetime as _dt
import logging
import numbers
from collections.abc import Mapping
from typing import Any, Dict, Optional

from .encoding import iso_datetime
from .errors import UnknownArgumentError, ValidationError
from .ids import new_message_id, now_iso

Message = Dict[str, Any]

logger = logging.getLogger("segment")

LOCAL_NOW_WINDOW = 5.0
"""A naive ``timestamp`` this close to the local clock (seconds) is taken as local time."""

_warned_naive = False


def _require_dict(field: str, value: Any) -> Optional[Dict[str, Any]]:
    if value is None or type(value) is dict:
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise ValidationError(f"{field} must be a dict, got {type(value).__name__}")


def _id_text(field: str, value: Any) -> Optional[str]:
    """User, anonymous, group and previous ids travel as strings; numbers are converted."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, str) or (
        isinstance(value, numbers.Number) and not isinstance(value, bool)
    ):
        return _as_text(field, value)
    raise ValidationError(f"{field} must be a string or a number, got {type(value).__name__}")


def _as_text(field: str, value: Any) -> str:
    # str() runs the value's own code (a subclass's __str__), and refuses an int of more than
    # sys.get_int_max_str_digits() digits: either way the caller gets a ValidationError.
    try:
        return str(value)
    except Exception as exc:
        raise ValidationError(
            f"{field}: this {type(value).__name__} cannot be written as text "
            f"(str() raised {type(exc).__name__})"
        ) from None


def _timestamp_text(value: Any) -> str:
    if value is None:
        return now_iso()
    if isinstance(value, _dt.datetime):
        try:
            if value.tzinfo is None:
                value = _guess_zone(value)
            return iso_datetime(value)
        except Exception as exc:  # its tzinfo raised, or gave an offset beyond 24 hours
            raise ValidationError(
                f"timestamp has an unusable tzinfo ({type(exc).__name__})"
            ) from None
    if isinstance(value, _dt.date):
        return iso_datetime(_dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        return _parse_timestamp(value)
    raise ValidationError(f"timestamp must be a datetime, got {type(value).__name__}")


def _guess_zone(value: _dt.datetime) -> _dt.datetime:
    """A naive datetime made aware as analytics-python guesses: within a few seconds of the
    local clock it is ``datetime.now()`` (local time), anything else is taken as UTC.

    ``datetime.now()`` is the commonest naive timestamp; sent as UTC it would be off by the
    host's offset (8 hours early on UTC-8). One warning per process points at the fix.
    """
    global _warned_naive
    if not _warned_naive:
        _warned_naive = True
        logger.warning(
            "analytics: a timestamp is a naive datetime (no tzinfo); it is taken as local time "
            "when within %g s of datetime.now(), else as UTC. Pass an aware datetime, such as "
            "datetime.now(timezone.utc), to say which.",
            LOCAL_NOW_WINDOW,
        )
    if abs((_dt.datetime.now() - value).total_seconds()) < LOCAL_NOW_WINDOW:
        return value.astimezone()  # the host's zone, with its offset at that moment
    return value.replace(tzinfo=_dt.timezone.utc)


def _parse_timestamp(text: str) -> str:
    from dateutil.parser import isoparse  # only strings need it, so the hot path never imports it

    try:
        return iso_datetime(isoparse(text))
    except (ValueError, OverflowError):
        raise ValidationError(
            f"timestamp {str.__repr__(text)} is not an ISO-8601 date-time"
        ) from None


def _message_id_text(value: Any) -> str:
    if value is None:
        return new_message_id()
    if isinstance(value, str) and value:
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return _as_text("message_id", value)
    raise ValidationError(f"message_id must be a non-empty string, got {type(value).__name__}")


def _reject_unknown(call: str, unexpected: Mapping[str, Any]) -> None:
    if unexpected:
        names = ", ".join(sorted(unexpected))
        raise UnknownArgumentError(f"{call}() got unknown argument(s): {names}")


def base_message(
    kind: str,
    user_id: Any,
    anonymous_id: Any,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
    library: Mapping[str, str],
    require_identity: bool = True,
) -> Message:
    """The fields every message carries, validated; ``library`` is the context.library value.

    Written for the common case (string ids, nothing else given): each check there is one
    exact-type test, and the general validators run only for other values.
    """
    if user_id is not None and type(user_id) is not str:
        user_id = _id_text("user_id", user_id)
    if anonymous_id is not None and type(anonymous_id) is not str:
        anonymous_id = _id_text("anonymous_id", anonymous_id)
    if require_identity and not user_id and not anonymous_id:
        raise ValidationError(f"{kind}: either user_id or anonymous_id is required")
    if context is None:
        context = {"library": library}
    else:
        context = dict(_require_dict("context", context))
        context["library"] = library
    message: Message = {
        "type": kind,
        "messageId": new_message_id() if message_id is None else _message_id_text(message_id),
        "timestamp": now_iso() if timestamp is None else _timestamp_text(timestamp),
        "context": context,
        "integrations": {} if integrations is None else _require_dict("integrations", integrations),
    }
    if user_id:
        message["userId"] = user_id
    if anonymous_id:
        message["anonymousId"] = anonymous_id
    return message


def require_event(event: Any) -> str:
    """A track call's event name: a non-empty string."""
    if isinstance(event, str) and event:
        return event
    if event is None or event == "":
        raise ValidationError("track: event is required")
    raise ValidationError(f"event must be a string, got {type(event).__name__}")


def optional_text(field: str, value: Any) -> Optional[str]:
    """Page and screen name and category: a string or nothing."""
    if value is None or isinstance(value, str):
        return value
    raise ValidationError(f"{field} must be a string, got {type(value).__name__}")


def required_id(call: str, field: str, value: Any) -> str:
    """An id a call cannot go without (group's group_id, alias's previous_id and user_id)."""
    text = _id_text(field, value)
    if not text:
        raise ValidationError(f"{call}: {field} is required")
    return text


def dict_field(field: str, value: Any) -> Dict[str, Any]:
    """traits / properties: a dict, or an empty one for None (the message is encoded right
    away, so the caller's later changes cannot leak into what is sent)."""
    if type(value) is dict:
        return value
    checked = _require_dict(field, value)
    return {} if checked is None else dict(checked)


reject_unknown = _reject_unknown

# The keys analytics-python's messages always have, None when not given. The wire leaves them
# out (Segment reads a missing key as null); the message a call returns and the items
# ``on_error`` gets have them, so code written for analytics-python that reads
# ``track(...)[1]["anonymousId"]`` or ``item["userId"]`` keeps working.
_KEYS_AS_NONE = {
    "identify": ("userId", "anonymousId"),
    "track": ("userId", "anonymousId"),
    "page": ("userId", "anonymousId", "name", "category"),
    "screen": ("userId", "anonymousId", "name", "category"),
    "group": ("userId", "anonymousId"),
    "alias": ("anonymousId",),
}


def add_absent_keys(message: Message) -> Message:
    """``message`` with analytics-python's always-present keys set to None where absent."""
    for key in _KEYS_AS_NONE.get(message.get("type"), ()):  # type: ignore[arg-type]
        if key not in message:
            message[key] = None
    return message
