"""The Segment HTTP Tracking API's rules: auth, body decoding, limits and message validation.

Everything here works on bytes and dicts only, so the HTTP handler stays a thin shell and
every rule can be checked without a socket.
"""

import base64
import binascii
import itertools
import json
import re
import zlib
from typing import Any, Dict, List, Optional, Tuple

from .store import StoredRow

try:  # a C decoder for the common case; the collector also runs on the stdlib alone
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is installed wherever analytics_core is
    _orjson = None

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "RequestError",
    "write_key_from_authorization",
    "decode_body",
    "parse_tracking_body",
    "validate_messages",
]

# Segment's documented limits: 500 KB per batch request, 32 KB per message.
MAX_BODY_BYTES = 500 * 1024
MAX_MESSAGE_BYTES = 32 * 1024

MAX_JSON_DEPTH = 256
"""Most levels of arrays and objects in a tracking body (``{"batch": [...]}`` is two of them).

analytics_core's own encoder keeps values 200 levels deep, so this must stay above 202; it
keeps what is stored far below Python's recursion limit, so reading it back never fails."""

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")


class RequestError(Exception):
    """A request the collector refuses; becomes ``{"code": ..., "message": ...}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_json(self) -> Dict[str, str]:
        """The response body for this error."""
        return {"code": self.code, "message": self.message}


def bad_request(code: str, message: str) -> RequestError:
    """Shorthand for a 400 error."""
    return RequestError(400, code, message)


def write_key_from_authorization(header: Optional[str]) -> Optional[str]:
    """Return the write key in a ``Basic base64(key:)`` header, or None if there is none.

    Other schemes (``Bearer`` for OAuth) carry no write key, so they yield None and the
    body's ``writeKey`` is used instead.
    """
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise bad_request("invalid-authorization", "Authorization is not valid Basic auth") from exc
    key = decoded.partition(":")[0]
    return key or None


def decode_body(raw: bytes, content_encoding: Optional[str], limit: int = MAX_BODY_BYTES) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip), never producing more than ``limit`` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise bad_request("unsupported-encoding", f"Content-Encoding {encoding!r} is not supported")
    # max_length caps the output, so a small "zip bomb" cannot expand into memory.
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise bad_request("invalid-gzip", "the body is not valid gzip") from exc
    if len(body) > limit:
        raise body_too_large(limit)
    if not inflater.eof:
        raise bad_request("invalid-gzip", "the gzip stream is truncated")
    return body


def body_too_large(limit: int = MAX_BODY_BYTES) -> RequestError:
    """The 400 for a body over ``limit`` bytes, compressed or not."""
    return bad_request("body-too-large", f"the request body is over {limit // 1024} KB")


# (message, its JSON text as sent, or None when it must be encoded again)
Parsed = Tuple[Any, Optional[str]]


class _Refused(ValueError):
    """JSON that parses in Python but is not JSON by RFC 8259, or is nested too deeply."""


def _refuse_constant(name: str) -> None:
    # Called by the decoder for NaN, Infinity and -Infinity, which json.dumps writes for
    # float("nan") but RFC 8259 does not have; stored, they would make GET /v1/events invalid.
    raise _Refused(f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    # 1e400 parses to inf, which would be written back as Infinity.
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan; any finite value gives 0.0
        raise _Refused(f"the number {text[:32]} does not fit a 64-bit float")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_BATCH_KEY = b'"batch":['

_SPACE = re.compile(r"[ \t\n\r]*")

# The depth scan keeps only brackets, then adds +1 for each opening and -1 for each closing one.
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("[")] = _DEPTH_STEP[ord("{")] = 1
_DEPTH_STEP[ord("]")] = _DEPTH_STEP[ord("}")] = -1


def parse_json(body: bytes) -> Any:
    """``body`` as RFC 8259 JSON within the nesting bound, or a 400 ``invalid-json`` (for the
    collector's own APIs, such as the fault plan)."""
    try:
        _check_depth(body)
        return _DECODER.decode(body.decode("utf-8"))
    except (_Refused, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise bad_request("invalid-json", f"the body is not valid JSON: {exc}") from None


def parse_tracking_body(body: bytes, kind: str) -> Tuple[Optional[str], List[Parsed]]:
    """Parse a tracking request body; return ``(writeKey from the body, messages)``.

    ``kind`` is ``"batch"`` for ``/v1/batch``, else the message type of a single-call
    endpoint. The messages are not validated yet, so auth can be checked first. Anything that
    is not JSON by RFC 8259 (NaN, Infinity, numbers beyond a 64-bit float) or nests deeper than
    :data:`MAX_JSON_DEPTH` is refused with ``invalid-json``.
    """
    payload, raw_batch = _parse_json(body, kind)
    if not isinstance(payload, dict):
        raise bad_request("invalid-json", "the body must be a JSON object")
    body_key = payload.get("writeKey")
    if body_key is not None and not isinstance(body_key, str):
        raise bad_request("invalid-write-key", "writeKey must be a string")

    if kind == "batch":
        if raw_batch is None:
            raise bad_request("invalid-batch", "the body needs a 'batch' list")
        return body_key or None, raw_batch
    # A single call's body is the message itself; its writeKey is auth, not data.
    message = {k: v for k, v in payload.items() if k != "writeKey"}
    message.setdefault("type", kind)
    if message["type"] != kind:
        raise bad_request("invalid-type", f"a {message['type']!r} message cannot go to /v1/{kind}")
    return body_key or None, [(message, None)]


def _parse_json(body: bytes, kind: str) -> Tuple[Any, Optional[List[Parsed]]]:
    """The body's JSON as :func:`_scan_payload` gives it, or a 400 ``invalid-json``.

    The messages never name Python: a client sees what is wrong with its JSON, not how the
    collector found out.
    """
    fast, depth_checked = _scan_compact_batch(body) if kind == "batch" else (None, False)
    if fast is not None:
        return fast
    try:
        if not depth_checked:
            _check_depth(body)
        return _scan_payload(body.decode("utf-8"))
    except _Refused as exc:
        raise bad_request("invalid-json", f"the body is not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise bad_request("invalid-json", f"the body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise bad_request("invalid-json", "the body is not valid UTF-8") from None
    except IndexError:  # the scanner ran off the end of the text
        raise bad_request("invalid-json", "the body is not valid JSON: it ends too soon") from None
    except RecursionError:  # not expected after _check_depth; never a 500 all the same
        raise bad_request("invalid-json", _too_deep()) from None
    except ValueError:  # e.g. an integer of more digits than Python converts
        raise bad_request("invalid-json", "the body is not valid JSON") from None


def _too_deep() -> str:
    return f"the body is not valid JSON: it nests deeper than {MAX_JSON_DEPTH} levels"


def _check_depth(body: bytes) -> None:
    """Refuse a body whose arrays and objects nest deeper than :data:`MAX_JSON_DEPTH`.

    Python's decoder would recurse once per level (a RecursionError near 1000), and what it
    stored could not be encoded back. A body with fewer brackets than the limit cannot be too
    deep, so most single messages only cost two counts.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    # Drop escaped backslashes and quotes: every quote left opens or closes a string, so
    # every other piece between quotes is outside strings, and holds all the structure.
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(plain.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    depth = max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)
    if depth > MAX_JSON_DEPTH:
        raise _Refused(f"it nests deeper than {MAX_JSON_DEPTH} levels")


def _scan_compact_batch(body: bytes) -> Tuple[Optional[Tuple[Dict[str, Any], List[Parsed]]], bool]:
    """The usual batch body (compact JSON, as clients send it) in a few C calls, or None.

    orjson decodes the whole body at once and re-encodes each message compactly. Those texts
    are kept only if they appear in the body verbatim, comma-joined inside brackets: then they
    are the texts as sent, and the result equals what :func:`_scan_payload` returns, about
    twice as fast. Anything else (pretty-printed or ``\\u``-escaped JSON, NaN, integers beyond
    64 bits, lone surrogates, invalid JSON) returns None and takes the exact scanner, which
    also produces the error messages.

    The second value says whether the body's depth is known to be within
    :data:`MAX_JSON_DEPTH`: orjson encodes at most 254 levels, so a message it re-encoded,
    two levels down in the body, is within 256. The exact scanner then need not check again.
    """
    if _orjson is None:
        return None, False
    try:
        payload = _orjson.loads(body)
    except _orjson.JSONDecodeError:
        return None, False
    if type(payload) is not dict:
        return None, False
    batch = payload.get("batch")
    # Only objects: a scalar's compact text could also be found somewhere else in the body.
    if type(batch) is not list or any(type(message) is not dict for message in batch):
        return None, False
    try:
        encoded = [_orjson.dumps(message) for message in batch]
    except _orjson.JSONEncodeError:  # over 254 levels: the exact path measures and refuses
        return None, False
    # Other top-level values are not re-encoded: a container among them leaves the check to
    # the exact path (clients send strings there).
    depth_checked = not any(
        type(value) in (dict, list) for value in payload.values() if value is not batch
    )
    # A quote inside a JSON string is escaped, so the key can only be found as the real key
    # (or, pathologically, as a nested key): the texts must follow one of its occurrences.
    # Comparing at each occurrence is a memcmp; searching the body for the whole joined
    # array (``in``) cost about 100 µs per 50 KB batch, a tenth of the request.
    joined = b",".join(encoded)
    after = len(_BATCH_KEY) + len(joined)
    start = body.find(_BATCH_KEY)
    while start != -1:
        if body.startswith(joined, start + len(_BATCH_KEY)) and body[start + after] == 0x5D:
            break  # 0x5D is "]": the array ends right after the last message
        start = body.find(_BATCH_KEY, start + 1)
    else:
        return None, depth_checked
    if not depth_checked:
        return None, False
    return (payload, [(message, text.decode()) for message, text in zip(batch, encoded)]), True


def _scan_payload(text: str) -> Tuple[Any, Optional[List[Parsed]]]:
    """Parse a JSON object, keeping each element of its ``batch`` array's text as sent.

    Each value is decoded once by the C scanner and its source slice kept, so a batch is
    never re-encoded just to be measured and stored: that re-encode was most of the cost
    of a request. Anything that is not an object goes through ``json.loads`` for its error.
    """
    pos = _SPACE.match(text, 0).end()
    if text[pos : pos + 1] != "{":
        return _DECODER.decode(text), None
    payload: Dict[str, Any] = {}
    raw_batch: Optional[List[Parsed]] = None
    pos = _SPACE.match(text, pos + 1).end()
    if text[pos] == "}":
        pos += 1
    else:
        while True:
            if text[pos] != '"':
                raise ValueError(f"expected a key at char {pos}")
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _SPACE.match(text, pos).end()
            if text[pos] != ":":
                raise ValueError(f"expected ':' at char {pos}")
            pos = _SPACE.match(text, pos + 1).end()
            if key == "batch" and text[pos] == "[":
                raw_batch, pos = _scan_array(text, pos)
                payload[key] = [message for message, _ in raw_batch]
            else:
                payload[key], pos = _DECODER.raw_decode(text, pos)
                if key == "batch":  # a later duplicate key wins, as in json.loads
                    raw_batch = None
            pos = _SPACE.match(text, pos).end()
            if text[pos] == ",":
                pos = _SPACE.match(text, pos + 1).end()
            elif text[pos] == "}":
                pos += 1
                break
            else:
                raise ValueError(f"expected ',' or '}}' at char {pos}")
    if _SPACE.match(text, pos).end() != len(text):
        raise ValueError(f"extra data at char {pos}")
    return payload, raw_batch


def _scan_array(text: str, pos: int) -> Tuple[List[Parsed], int]:
    items: List[Parsed] = []
    pos = _SPACE.match(text, pos + 1).end()
    if text[pos] == "]":
        return items, pos + 1
    while True:
        value, end = _DECODER.raw_decode(text, pos)
        items.append((value, text[pos:end]))
        pos = _SPACE.match(text, end).end()
        if text[pos] == ",":
            pos = _SPACE.match(text, pos + 1).end()
        elif text[pos] == "]":
            return items, pos + 1
        else:
            raise ValueError(f"expected ',' or ']' at char {pos}")


def validate_messages(messages: List[Parsed]) -> List[StoredRow]:
    """Check every message against the spec and the size limit; return the rows to store.

    One bad message rejects the whole request, so nothing is ever half stored.
    """
    return [_validate(message, raw, index) for index, (message, raw) in enumerate(messages)]


def _validate(message: Any, raw: Optional[str], index: int) -> StoredRow:
    # Runs once per stored message, so the common case is kept to a few dict lookups and
    # exact-type tests; error texts are only formatted when a message is refused.
    if not isinstance(message, dict):
        raise bad_request("invalid-message", f"message {index} is not a JSON object")
    message, raw = _cleaned(message, raw)
    get = message.get
    kind = get("type")
    if kind not in MESSAGE_TYPES:
        raise bad_request("invalid-type", f"message {index} has type {kind!r}")

    user_id = get("userId")
    if type(user_id) is not str or not user_id:
        user_id = _id_value(user_id)
    anonymous_id = get("anonymousId")
    if type(anonymous_id) is not str or not anonymous_id:
        anonymous_id = _id_value(anonymous_id)
    event = get("event")
    if kind == "track":
        if user_id is None and anonymous_id is None:
            raise bad_request("missing-user-id", f"message {index}: needs userId or anonymousId")
        if not isinstance(event, str) or not event:
            raise bad_request(
                "missing-event", f"message {index}: track needs a non-empty string 'event'"
            )
    elif kind == "alias":
        if user_id is None:
            raise bad_request("missing-user-id", f"message {index}: alias needs userId")
        if _id_value(get("previousId")) is None:
            raise bad_request("missing-previous-id", f"message {index}: alias needs previousId")
    elif user_id is None and anonymous_id is None:
        raise bad_request("missing-user-id", f"message {index}: needs userId or anonymousId")
    elif kind == "group" and _id_value(get("groupId")) is None:
        raise bad_request("missing-group-id", f"message {index}: group needs groupId")

    # Measured as sent (or, for a rebuilt single call, as compact UTF-8 JSON). A character is
    # at most 4 UTF-8 bytes, so most messages skip the encode entirely.
    text = (
        raw if raw is not None else json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    )
    if len(text) * 4 > MAX_MESSAGE_BYTES and len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise bad_request(
            "message-too-large",
            f"message {index} is over {MAX_MESSAGE_BYTES // 1024} KB encoded",
        )
    message_id = get("messageId")
    if message_id is not None and type(message_id) is not str:
        message_id = str(message_id)
    return (
        kind,
        event if isinstance(event, str) else None,
        user_id,
        anonymous_id,
        message_id,
        text,
    )


# A UTF-16 surrogate left alone in a decoded string: JSON can escape one ("\\udc00"), but no
# UTF-8 text (the database, a browser) can hold it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _cleaned(message: Dict[str, Any], raw: Optional[str]) -> Tuple[Dict[str, Any], Optional[str]]:
    """``message`` as it is stored, and its raw text if that is still what is stored.

    - A lone surrogate becomes U+FFFD, as Segment's API decodes it (analytics-python sends
      them for file names decoded with ``surrogateescape``); it used to fail the insert.
    - A ``writeKey`` inside a message (or its context) is removed: it is a credential, and the
      collector never keeps or shows one.
    """
    if raw is None or "\\ud" in raw or "\\uD" in raw:  # only an escape can make one
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        if _LONE_SURROGATE.search(text):
            message, raw = json.loads(_LONE_SURROGATE.sub("\ufffd", text)), None
    context = message.get("context")
    if "writeKey" in message or (type(context) is dict and "writeKey" in context):
        message = {name: value for name, value in message.items() if name != "writeKey"}
        if type(context) is dict:
            message["context"] = {k: v for k, v in context.items() if k != "writeKey"}
        raw = None
    return message, raw


def _id_value(value: Any) -> Optional[str]:
    """Segment accepts string or number ids; empty strings and other types count as absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None
