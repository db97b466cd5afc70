"""Property-based tests: encoding round-trips plain JSON, survives hostile values, never kills
the uploader."""

import dataclasses
import datetime as dt
import decimal
import enum
import json
import threading

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analytics_core import Client, encoding
from analytics_core.encoding import MAX_MESSAGE_BYTES, encode_message

from .support.hostile_values import Raises

WRITE_KEY = "test-properties-key"


@pytest.fixture(params=["orjson", "stdlib"])
def encoder(request):
    if request.param == "orjson":
        pytest.importorskip("orjson")
    encoding.force_stdlib(request.param == "stdlib")
    yield request.param
    encoding.force_stdlib(False)


def _strict_loads(data: bytes):
    """Parse as strict JSON: valid UTF-8, no NaN / Infinity constants."""

    def reject(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(data.decode("utf-8"), parse_constant=reject)


# -- plain JSON values ---------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)
json_properties = st.dictionaries(st.text(max_size=12), json_values, max_size=8)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(properties=json_properties)
def test_json_properties_roundtrip_exactly(encoder, properties):
    message = {"type": "track", "event": "E", "userId": "u", "properties": properties}
    assert _strict_loads(encode_message(message)) == message


@settings(max_examples=40, deadline=None)
@given(properties=json_properties)
def test_both_encoders_give_the_same_bytes_for_plain_json(properties):
    pytest.importorskip("orjson")
    try:
        encoding.force_stdlib(False)
        fast = encode_message(properties)
        encoding.force_stdlib(True)
        slow = encode_message(properties)
    finally:
        encoding.force_stdlib(False)
    assert _strict_loads(fast) == _strict_loads(slow) == properties


# -- hostile values ------------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


class Mood(enum.Enum):
    ODD = object()


@dataclasses.dataclass
class Item:
    name: str
    price: object


def _cyclic(base):
    base = dict(base)
    base["self"] = base
    base["list"] = [base, 1]
    return base


# Whole-minute offsets: for zones whose historical offset has seconds (LMT) orjson writes
# "-00:16" where datetime.isoformat() writes "-00:16:08".
fixed_offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
lone_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)

hostile_scalars = (
    json_scalars
    | st.floats()  # NaN and the infinities included
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.sampled_from([decimal.Decimal("sNaN"), decimal.Decimal("-NaN"), decimal.Decimal("1e999")])
    | st.binary(max_size=16)
    | st.binary(max_size=8).map(bytearray)
    | st.datetimes()
    | st.datetimes(timezones=fixed_offsets)
    | st.dates()
    | st.uuids()
    | st.sampled_from([Colour.RED, Colour.BLUE, Mood.ODD])
    | st.builds(Raises)
    | st.builds(object)
    | st.just(len)
    | st.just(iter([1, 2]))
    | st.just(threading.Lock())
    | (st.text() | lone_surrogates).map(lambda text: "x" + text)
)
hashable_keys = (
    st.text(max_size=6)
    | lone_surrogates
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.none()
    | st.uuids()
    | st.tuples(st.integers(), st.text(max_size=3))
    | st.sampled_from([Colour.RED, dt.date(2020, 1, 1), decimal.Decimal("1.5")])
    | st.builds(Raises)
)
hashable_values = st.integers() | st.text(max_size=5) | st.floats() | st.uuids()
hostile_values = st.recursive(
    hostile_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=4).map(tuple)
        | st.sets(hashable_values, max_size=4)
        | st.frozensets(hashable_values, max_size=4)
        | st.dictionaries(hashable_keys, children, max_size=5)
        | st.dictionaries(st.text(max_size=4), children, max_size=3).map(_cyclic)
        | st.builds(Item, st.text(max_size=5), children)
    ),
    max_leaves=30,
)
hostile_properties = st.dictionaries(hashable_keys, hostile_values, max_size=6)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(properties=hostile_properties)
def test_hostile_values_never_raise_and_give_valid_json(encoder, properties):
    message = {"type": "track", "event": "E", "userId": "u", "properties": properties}
    data = encode_message(message)
    decoded = _strict_loads(data)
    assert decoded["event"] == "E"
    assert isinstance(decoded["properties"], dict)
    assert all(isinstance(key, str) for key in decoded["properties"])


# Float keys included: at any depth, orjson 3.9 wrote 1e16 as "1e16" where the standard library
# writes "1e+16"; a message with a non-string key goes to the cleaner on both paths.
agreeing_properties = st.dictionaries(hashable_keys, hostile_values, max_size=6)


@settings(max_examples=50, deadline=None)
@given(properties=agreeing_properties)
@example(properties={"": {1e16: None}, 1e-7: [1.5]})  # what hypothesis found on orjson 3.9
def test_both_encoders_agree_on_hostile_values(properties):
    pytest.importorskip("orjson")
    try:
        encoding.force_stdlib(False)
        fast = _strict_loads(encode_message({"p": properties}))
        encoding.force_stdlib(True)
        slow = _strict_loads(encode_message({"p": properties}))
    finally:
        encoding.force_stdlib(False)
    assert _normalise(fast) == _normalise(slow)


def _normalise(value):
    """Sets travel as lists in their iteration order; compare those lists as multisets."""
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_normalise(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return value


@settings(max_examples=40, deadline=None)
@given(properties=hostile_properties)
def test_client_without_sending_never_raises_on_hostile_properties(properties):
    client = Client(send=False)
    ok, message = client.track("u", "E", properties)
    # Only the size limit can refuse a message; then it is reported, not raised.
    assert ok or len(encode_message(message)) >= MAX_MESSAGE_BYTES


# -- the uploader survives any input ---------------------------------------------------------------


def _uploaders():
    return [t for t in threading.enumerate() if t.name.startswith("analytics-uploader-")]


@pytest.mark.slow
def test_no_input_kills_the_uploader(collector):
    errors = []
    client = Client(
        WRITE_KEY,
        host=collector.url,
        upload_size=7,
        upload_interval=0.01,
        max_retries=0,
        thread=2,
        on_error=lambda error, items: errors.append((error, items)),
    )
    accepted = []

    @settings(max_examples=60, deadline=None)
    @given(properties=hostile_properties | json_properties)
    def feed(properties):
        ok, message = client.track("fuzz-user", "Fuzzed", properties)
        if ok:
            accepted.append(message["messageId"])

    try:
        feed()
        assert client.flush(timeout=30)
        threads = client.pipeline._threads
        assert len(threads) == 2
        assert all(thread.is_alive() for thread in threads)
        assert errors == []

        ok, final = client.track("fuzz-user", "Final", {"plain": True})
        assert ok
        assert client.flush(timeout=10)
        (arrived,) = collector.wait_for(1, event="Final")
        assert arrived["messageId"] == final["messageId"]
        assert arrived["properties"] == {"plain": True}

        fuzzed = collector.wait_for(len(accepted), event="Fuzzed")
        assert sorted(event["messageId"] for event in fuzzed) == sorted(accepted)
        assert all(thread.is_alive() for thread in client.pipeline._threads)
    finally:
        client.shutdown(timeout=5)
