"""Cleaning and encoding: both encoders turn the values Segment cleans into the same JSON."""

import dataclasses
import datetime as dt
import decimal
import enum
import json
import logging
import uuid

import pytest

from analytics_core import Client, encoding
from analytics_core.collector.access import write_key_fingerprint as fingerprint
from analytics_core.encoding import MAX_DEPTH, decode_message, encode_message, join_batch

WRITE_KEY = "test-encoding-key"


@pytest.fixture(params=["orjson", "stdlib"])
def encoder(request):
    """Run the test once with the orjson fast path and once with the stdlib fallback."""
    if request.param == "orjson":
        pytest.importorskip("orjson")
    encoding.force_stdlib(request.param == "stdlib")
    assert encoding.using_orjson() is (request.param == "orjson")
    yield request.param
    encoding.force_stdlib(False)


def roundtrip(value):
    """Encode ``{"v": value}`` and parse it back with the strict stdlib decoder."""
    data = encode_message({"v": value})
    assert isinstance(data, bytes)
    text = data.decode("utf-8")  # strict: must be valid UTF-8
    return json.loads(text, parse_constant=_reject_constant)["v"]


def _reject_constant(name):
    raise AssertionError(f"{name} is not valid JSON")


class Colour(enum.Enum):
    RED = "red"
    GREEN = 2


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int
    y: decimal.Decimal
    tags: tuple = ()


class Hostile:
    def __str__(self):
        raise RuntimeError("no str for you")

    def __repr__(self):
        raise RuntimeError("no repr either")


# -- the Segment cleaning rules ------------------------------------------------------------------


def test_force_stdlib_switches_and_restores():
    pytest.importorskip("orjson")
    encoding.force_stdlib(True)
    assert not encoding.using_orjson()
    encoding.force_stdlib(False)
    assert encoding.using_orjson()


def test_aware_datetime(encoder):
    tz = dt.timezone(dt.timedelta(hours=9))
    value = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=tz)
    assert roundtrip(value) == "2024-02-29T23:59:58.123456+09:00"


def test_a_naive_datetime_value_is_written_as_given(encoder):
    # As analytics-python writes it: no offset is made up for a value (the message's own
    # timestamp is another matter, see test_naive_timestamps.py).
    assert roundtrip(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert roundtrip(dt.datetime(2024, 1, 2, 3, 4, 5, 6)) == "2024-01-02T03:04:05.000006"


def test_date(encoder):
    assert roundtrip(dt.date(1999, 12, 31)) == "1999-12-31"


@pytest.mark.parametrize(
    "value, expected",
    [
        (decimal.Decimal("12.50"), 12.5),
        (decimal.Decimal("-3"), -3.0),
        (decimal.Decimal("0.1"), 0.1),
        (decimal.Decimal("NaN"), None),
        (decimal.Decimal("Infinity"), None),
        (decimal.Decimal("-Infinity"), None),
    ],
)
def test_decimal_to_float(encoder, value, expected):
    result = roundtrip(value)
    assert result == expected
    if expected is not None:
        assert isinstance(result, float)


def test_uuid(encoder):
    value = uuid.UUID("12345678-1234-4234-8234-123456789abc")
    assert roundtrip(value) == "12345678-1234-4234-8234-123456789abc"


def test_enum_to_value(encoder):
    assert roundtrip(Colour.RED) == "red"
    assert roundtrip(Colour.GREEN) == 2
    assert roundtrip(Level.HIGH) == 3


def test_set_and_tuple_to_list(encoder):
    assert sorted(roundtrip({3, 1, 2})) == [1, 2, 3]
    assert roundtrip(frozenset(["a"])) == ["a"]
    assert roundtrip((1, "two", (3,))) == [1, "two", [3]]


def test_bytes_to_text(encoder):
    assert roundtrip(b"hello \xc3\xa9") == "hello é"
    assert roundtrip(bytearray(b"abc")) == "abc"
    assert roundtrip(memoryview(b"xyz")) == "xyz"


def test_invalid_bytes_are_replaced(encoder):
    assert roundtrip(b"ok\xff\xfe!") == "ok\ufffd\ufffd!"


def test_dataclass_to_dict(encoder):
    value = Point(1, decimal.Decimal("2.5"), (uuid.UUID(int=0),))
    assert roundtrip(value) == {"x": 1, "y": 2.5, "tags": ["00000000-0000-0000-0000-000000000000"]}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_become_null(encoder, value):
    assert roundtrip({"x": value, "keep": 1.5}) == {"x": None, "keep": 1.5}
    assert roundtrip([value, 2]) == [None, 2]


def test_nested_mix_of_everything(encoder):
    value = {
        "when": dt.datetime(2020, 5, 5, 5, 5, 5),
        "items": [{"price": decimal.Decimal("9.99"), "id": uuid.UUID(int=5)}],
        "flags": (Colour.RED,),
        "blob": b"\x00\x01",
        "big": 2**70,
        "plain": {"a": [1, 2.5, None, True, "x"]},
    }
    assert roundtrip(value) == {
        "when": "2020-05-05T05:05:05",
        "items": [{"price": 9.99, "id": "00000000-0000-0000-0000-000000000005"}],
        "flags": ["red"],
        "blob": "\x00\x01",
        "big": 2**70,
        "plain": {"a": [1, 2.5, None, True, "x"]},
    }


# -- what cannot be represented ------------------------------------------------------------------


def test_cyclic_dict_entry_dropped_rest_kept(encoder, caplog):
    value = {"name": "loop", "n": 1}
    value["self"] = value
    with caplog.at_level(logging.WARNING, logger="segment"):
        result = roundtrip(value)
    assert result == {"name": "loop", "n": 1}
    assert any("self" in record.getMessage() for record in caplog.records)


def test_cyclic_list_entry_dropped(encoder, caplog):
    items = [1, 2]
    items.append(items)
    with caplog.at_level(logging.WARNING, logger="segment"):
        assert roundtrip({"items": items}) == {"items": [1, 2]}
    assert any("cycle" in record.getMessage() for record in caplog.records)


def test_shared_but_acyclic_values_are_kept(encoder):
    shared = {"k": 1}
    assert roundtrip({"a": shared, "b": [shared, shared]}) == {
        "a": {"k": 1},
        "b": [{"k": 1}, {"k": 1}],
    }


def test_unrepresentable_object_dropped_with_key_path(encoder, caplog):
    value = {"order": {"lines": [{"sku": "A", "bad": Hostile()}], "total": 3}}
    with caplog.at_level(logging.WARNING, logger="segment"):
        result = roundtrip(value)
    assert result == {"order": {"lines": [{"sku": "A"}], "total": 3}}
    messages = [record.getMessage() for record in caplog.records if record.name == "segment"]
    assert any("v.order.lines[0].bad" in text for text in messages), messages


def test_plain_object_dropped(encoder, caplog):
    with caplog.at_level(logging.WARNING, logger="segment"):
        assert roundtrip({"obj": object(), "fn": len, "ok": "yes"}) == {"ok": "yes"}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) >= 2


def test_object_in_list_dropped(encoder):
    assert roundtrip([1, Hostile(), 3]) == [1, 3]


@pytest.mark.parametrize(
    "key, expected",
    [
        (1, "1"),
        (-7, "-7"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_non_string_keys_become_strings(encoder, key, expected):
    assert roundtrip({key: "value"}) == {expected: "value"}


def test_key_spelling_does_not_depend_on_the_path_taken(encoder):
    # A tuple key forces the Python cleaner; the other keys must be spelled as on the fast path.
    fast = roundtrip({True: 1, None: 2, 3: 3})
    slow = roundtrip({True: 1, None: 2, 3: 3, (1, 2): 4})
    assert fast == slow == {"true": 1, "null": 2, "3": 3}


def test_tuple_key_dropped(encoder, caplog):
    with caplog.at_level(logging.WARNING, logger="segment"):
        assert roundtrip({(1, 2): "x", "kept": 1}) == {"kept": 1}
    assert any("tuple" in record.getMessage() for record in caplog.records)


def _nest(levels):
    value = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


def _depth(value):
    levels = 0
    while isinstance(value, dict):
        value = value["k"]
        levels += 1
    return levels, value


def test_shallow_nesting_kept(encoder):
    assert _depth(roundtrip(_nest(150))) == (150, "leaf")


def test_nesting_too_deep_is_cut_with_warning(encoder, caplog):
    # Deeper than both encoders accept (orjson: 254 levels; the stdlib: the recursion limit), so
    # the cleaner takes over and cuts at MAX_DEPTH.
    with caplog.at_level(logging.WARNING, logger="segment"):
        result = roundtrip(_nest(3000))
    depth, leaf = _depth(result)
    assert leaf is None
    assert depth < MAX_DEPTH
    assert any("deeper than" in record.getMessage() for record in caplog.records)


def test_nesting_past_orjsons_limit_is_cut():
    pytest.importorskip("orjson")
    assert encoding.using_orjson()
    depth, leaf = _depth(roundtrip(_nest(300)))
    assert leaf is None
    assert depth < MAX_DEPTH


def test_deep_lists_cut(encoder):
    value = "leaf"
    for _ in range(3000):
        value = [value]
    result = roundtrip(value)
    levels = 0
    while isinstance(result, list):
        result = result[0]
        levels += 1
    assert result is None
    assert levels < MAX_DEPTH


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "ok\ud83d"])
def test_lone_surrogates_replaced(encoder, text):
    data = encode_message({"v": text, text: "as key", "fine": "\U0001f600"})
    decoded = json.loads(data.decode("utf-8"))  # strict UTF-8: must not raise
    assert decoded["fine"] == "\U0001f600"
    assert "\ud800" not in decoded["v"] and "\udfff" not in decoded["v"]
    assert decoded["v"].replace("?", "") == "".join(
        c for c in text if not 0xD800 <= ord(c) < 0xE000
    )
    assert "as key" in decoded.values()


def test_paired_surrogate_text_unchanged(encoder):
    assert roundtrip("emoji \U0001f680 and CJK 漢字") == "emoji \U0001f680 and CJK 漢字"


def test_ten_thousand_keys(encoder):
    value = {f"key-{index}": index for index in range(10_000)}
    assert roundtrip(value) == value


def test_big_ints_kept_exactly(encoder):
    assert roundtrip([2**64, -(2**80), 2**63 - 1]) == [2**64, -(2**80), 2**63 - 1]


def test_encoding_does_not_modify_the_input(encoder):
    value = {"d": decimal.Decimal("1.5"), "s": {1}, "bad": Hostile(), 1: "int key"}
    before = dict(value)
    encode_message(value)
    assert value == before


def test_output_is_compact(encoder):
    assert encode_message({"a": [1, 2], "b": {"c": None}}) == b'{"a":[1,2],"b":{"c":null}}'


def test_non_ascii_stays_utf8(encoder):
    assert encode_message({"v": "é"}) == '{"v":"é"}'.encode()


# -- batches and decoding ------------------------------------------------------------------------


def test_join_batch(encoder):
    messages = [
        {"type": "track", "event": "A", "userId": "1", "properties": {"n": 1}},
        {"type": "identify", "userId": "2", "traits": {"name": 'Zoë "quoted"'}},
        {"type": "track", "event": "B", "anonymousId": "x", "properties": {}},
    ]
    body = join_batch(
        [encode_message(m) for m in messages], "2024-01-01T00:00:00.000+00:00", 'k"ey'
    )
    parsed = json.loads(body.decode("utf-8"))
    assert parsed == {
        "batch": messages,
        "sentAt": "2024-01-01T00:00:00.000+00:00",
        "writeKey": 'k"ey',
    }


def test_join_batch_empty():
    assert json.loads(join_batch([], "t", "")) == {"batch": [], "sentAt": "t", "writeKey": ""}


def test_decode_message_roundtrips(encoder):
    message = {
        "type": "track",
        "event": "Ünïcode",
        "properties": {"list": [1, 2.5, None, True], "nested": {"k": "v"}, "big": 2**65},
        "messageId": "m",
    }
    assert decode_message(encode_message(message)) == message


def test_decode_message_of_cleaned_values(encoder):
    data = encode_message({"v": b"\xff", "d": decimal.Decimal("NaN"), "t": (1,)})
    assert decode_message(data) == {"v": "\ufffd", "d": None, "t": [1]}


# -- through the client --------------------------------------------------------------------------


def test_client_without_sending_accepts_hostile_properties(encoder):
    client = Client(send=False)
    properties = {"bad": Hostile(), "cycle": {}, "when": dt.date(2020, 1, 1)}
    properties["cycle"]["again"] = properties
    ok, message = client.track("u", "E", properties)
    assert ok is True
    assert message["event"] == "E"


def test_cleaned_message_arrives_at_the_collector(encoder, collector, caplog):
    client = Client(WRITE_KEY, host=collector.url, upload_interval=0.05, max_retries=0)
    properties = {
        "price": decimal.Decimal("19.99"),
        "bought": dt.datetime(2024, 6, 1, 12, 0, 0),
        "order_id": uuid.UUID(int=42),
        "colour": Colour.RED,
        "sizes": ("S", "M"),
        "raw": b"caf\xc3\xa9\xff",
        "ratio": float("nan"),
        "point": Point(1, decimal.Decimal("0.5")),
        "bad": Hostile(),
        7: "int key",
        "text": "x\ud800y",
    }
    properties["me"] = properties
    try:
        with caplog.at_level(logging.WARNING, logger="segment"):
            ok, _ = client.track("user-enc", "Order Completed", properties)
            assert ok
            # Later changes by the caller must not leak into what is sent.
            properties["price"] = "changed"
            assert client.flush(timeout=10)
        (event,) = collector.wait_for(1, user_id="user-enc")
    finally:
        client.shutdown(timeout=5)
    assert event["event"] == "Order Completed"
    assert event["_write_key_fingerprint"] == fingerprint(WRITE_KEY)
    sent = event["properties"]
    assert sent == {
        "price": 19.99,
        "bought": "2024-06-01T12:00:00",
        "order_id": "00000000-0000-0000-0000-00000000002a",
        "colour": "red",
        "sizes": ["S", "M"],
        "raw": "café\ufffd",
        "ratio": None,
        "point": {"x": 1, "y": 0.5, "tags": []},
        "7": "int key",
        "text": "x?y",
    }
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "properties.bad" in warnings
    assert "properties.me" in warnings


def test_a_nan_or_infinite_key_is_spelled_alike_by_both_encoders():
    # Found by Hypothesis in CI: orjson writes such a key as "null", the stdlib path wrote "inf".
    properties = {"nested": {float("inf"): 1, float("-inf"): 2, float("nan"): 3}}
    spellings = []
    try:
        for stdlib in (False, True):
            encoding.force_stdlib(stdlib)
            spellings.append(json.loads(encoding.encode_message({"p": properties})))
    finally:
        encoding.force_stdlib(False)
    assert spellings[0] == spellings[1]
    assert list(spellings[1]["p"]["nested"]) == ["null"]
