"""Cleaning values and encoding each message to JSON bytes exactly once.

The fast path hands the whole message to orjson (or the stdlib ``json`` when orjson is missing) with
a ``default`` hook for the few non-JSON types the Segment spec cleans (Decimal, set, bytes, ...).
Only when that fails (a cycle, NaN under the stdlib, an object we cannot represent, an int beyond
64 bits under orjson, a lone surrogate) do we fall back to a recursive pure-Python cleaner, which
drops what cannot be represented and says so on the ``segment`` logger.
"""

import datetime as _dt
import enum
import itertools
import json
import logging
import math
import re
import sys
from typing import Any, Callable, Dict, List

# orjson encodes a typical message several times faster than the stdlib. It is imported by the
# first encode, not by ``import analytics_core``: its import (and the modules it imports:
# dataclasses, uuid, inspect...) is most of what would be left of the import time.
_orjson: Any = None
_orjson_looked_up = False

logger = logging.getLogger("segment")

MAX_MESSAGE_BYTES = 32 * 1024
"""Segment refuses a single message of 32 KB or more."""

MAX_BATCH_BYTES = 500 * 1024
"""Segment refuses a batch request body of 500 KB or more."""

MAX_DEPTH = 200
"""Deeper nesting is replaced by ``None``: orjson refuses beyond 254 levels and nobody means it."""

_STACK_RESERVE = 60
"""Frames the cleaner leaves free below the recursion limit (for logging its warnings)."""

_UTC = _dt.timezone.utc


def _loaded(module: str, name: str) -> Any:
    """``module.name`` if the program has imported ``module``, else None.

    A Decimal, a UUID, a dataclass instance or a ZoneInfo can only exist once its module was
    imported, so these checks need not import it: ``import analytics_core`` stays light.
    """
    loaded = sys.modules.get(module)
    return None if loaded is None else getattr(loaded, name, None)


class _Unencodable(TypeError):
    """Raised by the default hook for values the cleaner must drop."""


def _default(value: Any) -> Any:
    """Turn the non-JSON types the Segment spec allows into JSON types (fast-path hook)."""
    decimal_type = _loaded("decimal", "Decimal")
    if decimal_type is not None and isinstance(value, decimal_type):
        return _decimal_to_float(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        # A naive datetime is written as given, without an offset, as analytics-python writes
        # it: which zone it meant is the caller's to say (DESIGN.md's local-or-UTC guess is
        # for the message's own timestamp only).
        return value.isoformat()
    uuid_type = _loaded("uuid", "UUID")
    if uuid_type is not None and isinstance(value, uuid_type):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    dataclasses = sys.modules.get("dataclasses")
    if dataclasses is not None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise _Unencodable(type(value).__name__)


def _decimal_to_float(value: Any) -> Any:
    if not value.is_finite():  # NaN, sNaN (which float() refuses) and the infinities
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def iso_datetime(value: _dt.datetime) -> str:
    """ISO-8601 with an offset, for a message's ``timestamp``; naive is taken to be UTC here
    (the caller has already read a naive ``datetime.now()`` as local time)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.isoformat()


# Datetime values come to _orjson_default instead of orjson's own code: orjson crashes the
# process (a segfault, orjson 3.13) on a datetime whose tzinfo.utcoffset() raises, and writes
# "+00:00" for an offset it cannot use. It still writes those whose tzinfo cannot misbehave.
_ORJSON_OPTIONS = 0  # set by _load_orjson()
_PLAIN_TZINFO = (type(None), _dt.timezone)


def _orjson_default_for(orjson: Any) -> Callable[[Any], Any]:
    """The ``default`` hook for ``orjson``, its names bound once (it runs for every datetime)."""
    dumps = orjson.dumps
    fragment = orjson.Fragment
    datetime_type = _dt.datetime
    plain_tzinfo = _PLAIN_TZINFO

    def default(value: Any) -> Any:
        if type(value) is datetime_type:
            tzinfo_type = type(value.tzinfo)
            if tzinfo_type in plain_tzinfo or tzinfo_type is _loaded("zoneinfo", "ZoneInfo"):
                # A fraction of isoformat()'s cost; any other tzinfo runs its code in Python,
                # where an exception can be handled.
                return fragment(dumps(value))
        return _default(value)

    return default


_orjson_default: Callable[[Any], Any] = _default  # set by _load_orjson()


def _encode_orjson(message: Dict[str, Any]) -> bytes:
    # A non-string key raises TypeError, and the message goes to the cleaner, which spells keys
    # as the standard library does: orjson's own spelling of a float key changed between its
    # releases ("1e16", now "1e+16"), and both encoders must write the same bytes.
    data = _orjson.dumps(message, default=_orjson_default, option=_ORJSON_OPTIONS)
    # orjson hands back a bytes object that keeps its ~4 KB working buffer allocated; a queued
    # message lives for a while, so copy it down to its real size (160 B instead of 4 KB each).
    return bytes(memoryview(data))


_stdlib_encoder = json.JSONEncoder(
    default=_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


_FAST_PATH_MAX_DEPTH = 255
"""The deepest nesting the fast path writes, the message object included: orjson's 254 levels
below it. Deeper goes to the cleaner, which cuts at ``MAX_DEPTH``."""

_BRACKETS = re.compile(r"[\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether the arrays and objects of the JSON ``text`` nest deeper than ``limit`` levels."""
    if text.count("[") + text.count("{") <= limit:
        return False  # too few brackets to be that deep: most messages cost two counts
    # Without escaped backslashes and quotes, every quote left opens or closes a string: the
    # even pieces between quotes are outside strings, and hold all the structure.
    plain = text.replace("\\\\", "").replace('\\"', "")
    steps = map(_DEPTH_STEP.__getitem__, _BRACKETS.findall("".join(plain.split('"')[::2])))
    return max(itertools.accumulate(steps), default=0) > limit


def _encode_stdlib(message: Dict[str, Any]) -> bytes:
    text = _stdlib_encoder.encode(message)
    # The C encoder refuses nesting only at the C recursion limit: the Python one before 3.12,
    # about 1500 levels on 3.12 and 10000 on 3.13, deeper than Segment or the collector (256
    # levels) accept. Refused here, as orjson refuses it, the message goes to the cleaner.
    if nests_deeper_than(text, _FAST_PATH_MAX_DEPTH):
        raise ValueError(f"nests deeper than {_FAST_PATH_MAX_DEPTH} levels")
    return text.encode("utf-8")


def _load_orjson() -> bool:
    """Import orjson the first time it is wanted; whether it is installed."""
    global _orjson, _orjson_looked_up, _ORJSON_OPTIONS, _orjson_default
    if not _orjson_looked_up:
        try:
            import orjson
        except ImportError:  # pragma: no cover - the stdlib-fallback tests use force_stdlib()
            orjson = None
        if orjson is not None:
            _ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME
            _orjson_default = _orjson_default_for(orjson)
        _orjson = orjson
        _orjson_looked_up = True
    return _orjson is not None


def _encode_first(message: Dict[str, Any]) -> bytes:
    """The first encode of the process: choose the fast path (importing orjson), then use it.
    Two threads arriving at once both choose the same."""
    global _fast_encode
    _fast_encode = _encode_orjson if _load_orjson() else _encode_stdlib
    return _fast_encode(message)


_fast_encode: Callable[[Dict[str, Any]], bytes] = _encode_first


def using_orjson() -> bool:
    """Whether the fast path uses orjson."""
    if _fast_encode is _encode_first:
        return _load_orjson()
    return _fast_encode is _encode_orjson


def force_stdlib(enabled: bool = True) -> None:
    """Use the stdlib encoder even when orjson is installed (for tests and comparisons)."""
    global _fast_encode
    _fast_encode = _encode_stdlib if enabled or not _load_orjson() else _encode_orjson


def encode_message(message: Dict[str, Any]) -> bytes:
    """Encode one message to compact UTF-8 JSON, cleaning it first only if it needs it.

    Never raises for bad values: whatever cannot be represented is dropped (with a warning) or
    replaced by ``None`` (non-finite floats, nesting beyond ``MAX_DEPTH``).
    """
    try:
        return _fast_encode(message)
    except Exception:
        # Rare: the message holds something the fast encoder refused, or whose conversion raised
        # (user code: a tzinfo, a dataclass field's deepcopy). Clean it in Python, where each
        # problem can be handled (and reported) on its own, then encode the plain result.
        cleaned = clean(message)
        return _encode_stdlib_plain(cleaned)


def _encode_stdlib_plain(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8", "surrogatepass"
    )


def decode_message(data: bytes) -> Dict[str, Any]:
    """Decode bytes produced by :func:`encode_message` (used on the rare error paths)."""
    if _load_orjson():
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # lone surrogates: the stdlib decoder accepts them
    return json.loads(data.decode("utf-8", "surrogatepass"))


def clean(value: Any) -> Any:
    """Return a copy of ``value`` made only of JSON types, as the Segment spec cleans them.

    datetime/date -> ISO-8601, Decimal -> float, UUID -> str, Enum -> value, set/tuple -> list,
    bytes -> UTF-8 text, NaN/Infinity -> None, non-string keys -> str. Objects that cannot be
    represented (integers too long to write included), cycles and nesting beyond ``MAX_DEPTH``
    (or beyond what the caller's stack leaves room for) are dropped with a warning.
    """
    return _clean(value, "", 0, set(), _depth_limit())


def _depth_limit() -> int:
    """``MAX_DEPTH``, or less when the caller is already deep in its stack.

    Each level costs the cleaner two frames and the stdlib encoder one more, so a caller a few
    hundred frames deep would otherwise get a ``RecursionError`` out of ``track()``.
    """
    frame: Any = sys._getframe()
    used = 0
    while frame is not None:
        used += 1
        frame = frame.f_back
    room = (sys.getrecursionlimit() - used - _STACK_RESERVE) // 2
    return max(8, min(MAX_DEPTH, room))


_PLAIN_SCALARS = (bool, int, type(None))


def _clean(value: Any, path: str, depth: int, active: set, limit: int) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, _PLAIN_SCALARS):
        if isinstance(value, int) and value.bit_length() > 64:
            _check_int_writable(value)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= limit:
        logger.warning("analytics: value at %s nested deeper than %d levels; dropped", path, depth)
        return None
    if isinstance(value, dict):
        return _clean_dict(value, path, depth, active, limit)
    if isinstance(value, (list, tuple, set, frozenset)):
        return _clean_list(value, path, depth, active, limit)
    try:
        converted = _default(value)
    except Exception:
        raise _Drop(type(value).__name__) from None
    return _clean(converted, path, depth + 1, active, limit)


def _check_int_writable(value: int) -> None:
    # Python refuses to write an int of more than sys.get_int_max_str_digits() digits (4300 by
    # default), so the encoder would raise ValueError on it.
    try:
        int.__repr__(value)
    except ValueError:
        raise _Drop("huge int") from None


class _Drop(Exception):
    """The value at hand cannot be represented and must be left out of its container."""


def _clean_dict(value: dict, path: str, depth: int, active: set, limit: int) -> Dict[str, Any]:
    marker = id(value)
    if marker in active:
        raise _Drop("cycle")
    active.add(marker)
    try:
        result: Dict[str, Any] = {}
        for key, item in list(value.items()):
            try:
                name = _clean_key(key)
            except Exception:  # its conversion raised: an int too long, a tzinfo, a subclass
                name = None
            if name is None:
                logger.warning(
                    "analytics: key of type %s under %s dropped", type(key).__name__, path
                )
                continue
            child_path = f"{path}.{name}" if path else name
            try:
                result[name] = _clean(item, child_path, depth + 1, active, limit)
            except _Drop as reason:
                logger.warning("analytics: dropped %s (%s cannot be sent)", child_path, reason)
        return result
    finally:
        active.discard(marker)


def _clean_list(value: Any, path: str, depth: int, active: set, limit: int) -> list:
    marker = id(value)
    if marker in active:
        raise _Drop("cycle")
    active.add(marker)
    try:
        result = []
        for index, item in enumerate(list(value)):
            child_path = f"{path}[{index}]"
            try:
                result.append(_clean(item, child_path, depth + 1, active, limit))
            except _Drop as reason:
                logger.warning("analytics: dropped %s (%s cannot be sent)", child_path, reason)
        return result
    finally:
        active.discard(marker)


def _clean_key(key: Any) -> Any:
    if isinstance(key, str):
        return _clean_text(key)
    if isinstance(key, bool) or key is None:  # spelled as the fast encoders spell them
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, float) and not math.isfinite(key):
        return "null"  # as orjson spells a NaN or infinite key: both encoders must agree
    if isinstance(key, (int, float)):
        return str(key)
    loaded = (_loaded("uuid", "UUID"), _loaded("decimal", "Decimal"))
    if isinstance(key, (enum.Enum, _dt.date, _dt.time, *(kind for kind in loaded if kind))):
        return _clean_key(_default(key))
    return None


def _clean_text(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # lone surrogates cannot travel as UTF-8
        return text.encode("utf-8", "replace").decode("utf-8")


def join_batch(encoded: List[bytes], sent_at: str, write_key: str) -> bytes:
    """Build the ``/v1/batch`` body from already-encoded messages without re-encoding them."""
    tail = b'],"sentAt":' + json.dumps(sent_at).encode() + b',"writeKey":'
    return b'{"batch":[' + b",".join(encoded) + tail + json.dumps(write_key).encode() + b"}"


def batch_overhead(write_key: str) -> int:
    """Bytes a batch body adds around its messages (an upper bound, for the size limit)."""
    return len(join_batch([], "0000-00-00T00:00:00.000000+00:00", write_key or "")) + 16
