"""Hypothesis fuzzing of the six public calls with arbitrary arguments.

Each example picks a call, gives each of its fields either a plausible value or an arbitrary
(often hostile, often wrongly typed) Python value, passes a prefix of them positionally and the
rest by keyword, and sometimes adds an unknown keyword. Whatever it gets, a call either returns
``(True or False, message dict)`` or raises ``ValidationError``: never any other exception. A
``False`` is only ever a message of 32 KB or more, reported to ``on_error``. Against a real
sending client, the collector then holds exactly what the client accepted, and the uploader is
alive and delivers a normal event.

Not generated: more positional arguments than a call has, or a field given both positionally and
by keyword. Python itself raises ``TypeError`` for those before any of our code runs.
"""

import collections
import datetime as dt
import decimal
import enum
import fractions
import itertools
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analytics_core
from analytics_core import Client, MessageTooLargeError, ValidationError, encoding
from analytics_core.encoding import MAX_MESSAGE_BYTES, encode_message
from tests.support.wire import sent_part, wire

from .support.hostile_values import BrokenZone, NumberRaises, Raises, TextRaises

WRITE_KEY = "wk-fuzz"

# Each call's parameters in Segment's order (the README's table).
CALLS = {
    "identify": [
        "user_id",
        "traits",
        "context",
        "timestamp",
        "anonymous_id",
        "integrations",
        "message_id",
    ],
    "track": [
        "user_id",
        "event",
        "properties",
        "context",
        "timestamp",
        "anonymous_id",
        "integrations",
        "message_id",
    ],
    "page": [
        "user_id",
        "category",
        "name",
        "properties",
        "context",
        "timestamp",
        "anonymous_id",
        "integrations",
        "message_id",
    ],
    "group": [
        "user_id",
        "group_id",
        "traits",
        "context",
        "timestamp",
        "anonymous_id",
        "integrations",
        "message_id",
    ],
    "alias": ["previous_id", "user_id", "context", "timestamp", "integrations", "message_id"],
}
CALLS["screen"] = CALLS["page"]


# -- hostile values --------------------------------------------------------------------------------


class Mood(enum.Enum):
    HAPPY = "happy"
    ODD = object()


def _hostile_objects():
    # Built fresh for every example: iterators are consumed, and nothing leaks between examples.
    # Hypothesis never reprs them while it builds the strategy (some reprs raise on purpose).
    return [
        Raises(),
        TextRaises("text"),
        NumberRaises(5),
        object(),
        len,
        iter([1, 2]),
        (n for n in range(2)),
        itertools.count(),
        threading.Lock(),
        Mood.HAPPY,
        Mood.ODD,
        decimal.Decimal("sNaN"),
        decimal.Decimal("-Infinity"),
        complex(1, 2),
        fractions.Fraction(1, 3),
        10**5000,  # more digits than Python writes by default
        2**64,
        Ellipsis,
        type,
        range(3),
        collections.OrderedDict(a=1),
        collections.defaultdict(list, b=[1]),
        memoryview(b"\xffok"),
        bytearray(b"\x80"),
        "\ud800",
        MEGABYTE,
    ]


MEGABYTE = "m" * (1024 * 1024)
HOSTILE_COUNT = len(_hostile_objects())


def hostile_object(index):
    return _hostile_objects()[index]


def _cyclic(base):
    base = dict(base)
    base["self"] = base
    base["list"] = [base]
    return base


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included
    | st.text()
    | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
    | st.binary(max_size=12)
    | st.decimals()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.uuids()
    | st.integers(min_value=0, max_value=HOSTILE_COUNT - 1).map(hostile_object)
)
keys = (
    st.text(max_size=6)
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.none()
    | st.tuples(st.integers(), st.text(max_size=2))
    | st.uuids()
    | st.dates()
    | st.builds(Raises)
    | st.builds(object)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.sets(st.integers() | st.text(max_size=3), max_size=3)
        | st.dictionaries(keys, children, max_size=4)
        | st.dictionaries(st.text(max_size=3), children, max_size=3).map(_cyclic)
    ),
    max_leaves=15,
)

# -- plausible values, field by field --------------------------------------------------------------

ids = st.text(min_size=1, max_size=20) | st.integers() | st.floats() | st.uuids().map(str)
names = st.text(min_size=1, max_size=30)
dicts = (
    st.dictionaries(st.text(max_size=8), values, max_size=5)
    # Around the 32 KB limit: some fit, some are refused.
    | st.integers(min_value=30_000, max_value=35_000).map(lambda size: {"blob": "b" * size})
)
timestamps = (
    st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.datetimes(timezones=st.none() | st.timezones()).map(lambda when: when.isoformat())
)
odd_timestamps = (
    st.from_regex(
        r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:?\d\d|Z)?)?", fullmatch=True
    )
    | st.text(max_size=30)
    | st.builds(dt.datetime, st.just(2024), st.just(1), st.just(2), tzinfo=st.builds(BrokenZone))
    | values
)
PLAUSIBLE = {
    "user_id": ids,
    "anonymous_id": ids,
    "group_id": ids,
    "previous_id": ids,
    "event": names,
    "name": names,
    "category": names,
    "traits": dicts,
    "properties": dicts,
    "context": dicts,
    "integrations": st.dictionaries(st.text(max_size=8), st.booleans() | values, max_size=3),
    "timestamp": timestamps,
    "message_id": st.text(max_size=40) | st.integers(),
}
ANYTHING = {parameter: values for parameter in PLAUSIBLE}
ANYTHING["timestamp"] = odd_timestamps
UNKNOWN_KEYWORDS = ["bogus", "userId", "props", "write_key", "send_at"]
CALL_NAMES = sorted(CALLS)


@st.composite
def calls(draw):
    """(call name, positional arguments, keyword arguments).

    Each field is left out (3 in 10), plausible (6 in 10) or anything at all (1 in 10), so that
    every outcome is common: accepted, refused for its size, and ValidationError.
    """
    name = draw(st.sampled_from(CALL_NAMES))
    parameters = CALLS[name]
    given_fields = {}
    for parameter in parameters:
        choice = draw(st.integers(min_value=0, max_value=9))
        if choice <= 2:
            continue
        pool = PLAUSIBLE if choice <= 8 else ANYTHING
        given_fields[parameter] = draw(pool[parameter])
    positional = draw(st.integers(min_value=0, max_value=len(parameters)))
    args = [given_fields.pop(parameter, None) for parameter in parameters[:positional]]
    if draw(st.integers(min_value=0, max_value=19)) == 0:
        given_fields[draw(st.sampled_from(UNKNOWN_KEYWORDS))] = draw(values)
    return name, args, given_fields


# -- the claim, checked on every call --------------------------------------------------------------


def _strict_loads(data):
    def reject(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(data.decode("utf-8"), parse_constant=reject)


def make_call(target, reports, name, args, kwargs):
    """Call; return (ok, message) or None for a ValidationError. Any other exception fails."""
    before = len(reports)
    try:
        result = getattr(target, name)(*args, **kwargs)
    except ValidationError:
        assert len(reports) == before  # a programmer error is raised, not reported
        return None
    assert type(result) is tuple and len(result) == 2
    ok, message = result
    assert ok is True or ok is False
    assert type(message) is dict and message["type"] == name
    # What was sent: the message without the keys returned as None for analytics-python's sake.
    data = encode_message(sent_part(message))
    decoded = _strict_loads(data)  # valid UTF-8 JSON, no NaN
    assert isinstance(decoded["messageId"], str) and decoded["messageId"]
    assert decoded["context"]["library"]["name"] == "analytics-core"
    if ok:
        assert len(data) < MAX_MESSAGE_BYTES
        assert len(reports) == before
    else:  # the one data-dependent refusal a client with room in its queue makes
        assert len(data) >= MAX_MESSAGE_BYTES
        assert len(reports) == before + 1
        error, items = reports[-1]
        assert isinstance(error, MessageTooLargeError) and items == [message]
    return ok, message


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("stdlib", [False, True], ids=["orjson", "stdlib"])
def test_fuzzed_calls_without_sending(stdlib):
    encoding.force_stdlib(stdlib)  # conftest's autouse fixture switches it back
    reports = []
    client = Client(send=False, on_error=lambda error, items: reports.append((error, items)))
    outcomes = collections.Counter()

    @FUZZ
    @given(call=calls())
    def fuzz(call):
        result = make_call(client, reports, *call)
        outcomes["raised" if result is None else result[0]] += 1

    fuzz()
    # The generator reaches all three outcomes (a check on the test, not on the client).
    assert outcomes[True] and outcomes["raised"], outcomes
    assert client.pipeline._threads == []  # send=False: no thread, nothing sent


def test_fuzzed_module_level_calls_without_sending():
    analytics_core.send = False  # conftest's autouse fixture restores the module settings
    reports = []
    analytics_core.on_error = lambda error, items: reports.append((error, items))

    @settings(FUZZ, max_examples=80)
    @given(call=calls())
    def fuzz(call):
        make_call(analytics_core, reports, *call)

    fuzz()
    assert analytics_core.default_client is not None
    assert analytics_core.default_client.send is False


def canonical(value):
    return json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("stdlib", [False, True], ids=["orjson", "stdlib"])
def test_fuzzed_calls_against_a_sending_client_then_it_still_delivers(collector, stdlib):
    encoding.force_stdlib(stdlib)
    reports = []
    client = Client(
        WRITE_KEY,
        host=collector.url,
        upload_size=40,
        upload_interval=0.05,
        on_error=lambda error, items: reports.append((error, items)),
    )
    client.transport.retry.base = 0.01
    accepted = []

    @FUZZ
    @given(call=calls())
    def fuzz(call):
        result = make_call(client, reports, *call)
        if result is not None and result[0]:
            # What the collector must hold: the message as the client encoded it (without the
            # keys returned as None for analytics-python's sake, which are not sent).
            accepted.append(canonical(_strict_loads(encode_message(sent_part(result[1])))))

    try:
        fuzz()
        assert client.flush(timeout=30)
        # Only oversize messages were reported: the collector refused no batch of the rest.
        assert all(isinstance(error, MessageTooLargeError) for error, _ in reports)
        assert accepted
        stored = collector.events(limit=0)
        assert sorted(canonical(wire(event)) for event in stored) == sorted(accepted)

        ok, final = client.track("fuzz-survivor", "After Fuzzing", {"plain": True})
        assert ok is True
        assert client.flush(timeout=10)
        (arrived,) = collector.events(limit=0, event="After Fuzzing")
        assert arrived["messageId"] == final["messageId"]
        threads = client.pipeline._threads
        assert threads and all(thread.is_alive() for thread in threads)
        stats = client.stats()
        assert (stats["delivered"], stats["failed"]) == (len(accepted) + 1, 0)
    finally:
        client.shutdown(timeout=5)
