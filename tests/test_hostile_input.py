"""Hostile input against a real sending client: every value has a clear, documented outcome.

The rules (DESIGN.md, "Rules of behaviour"; README, "Behaviour you can rely on"):

- values are cleaned, not rejected: bytes -> UTF-8 text (invalid bytes replaced), lone
  surrogates -> "?", NaN/Infinity -> null, Decimal -> float, datetime/date/time -> ISO-8601,
  set/tuple -> list, Enum -> its value, UUID -> str, non-string keys -> str; objects that cannot
  be represented, cycles and absurd nesting are dropped with a warning naming the key;
- a message of 32 KB or more is refused: ``(False, message)`` and ``on_error``;
- a programmer error (a field of the wrong type, an id that cannot be written as text) raises
  ``ValidationError`` naming the field.

Whatever the input, the call returns quickly, and afterwards the uploader is alive and a normal
event still reaches the collector. Every test runs with both encoders (orjson and the stdlib).
"""

import datetime as dt
import decimal
import enum
import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zoneinfo
from pathlib import Path

import pytest

from analytics_core import Client, MessageTooLargeError, ValidationError, encoding

from .support.hostile_values import BrokenZone, NumberRaises, Raises, TextRaises

WRITE_KEY = "wk-hostile"
ROOT = Path(__file__).resolve().parents[1]
# Not a benchmark: a generous bound that a hang, a quadratic blow-up or a network wait would break.
CALL_BOUND = 2.0
MEGABYTE = "x" * (1024 * 1024)


class FarZone(dt.tzinfo):
    """An offset of 30 hours: datetime itself refuses it (the limit is 24)."""

    def utcoffset(self, when):
        return dt.timedelta(hours=30)

    def dst(self, when):
        return None


class Colour(enum.Enum):
    BLUE = "blue"
    ODD = object()


DROPPED = object()  # the expected outcome "left out, with a warning naming the key"


@pytest.fixture(params=["orjson", "stdlib"])
def encoder(request):
    if request.param == "orjson":
        pytest.importorskip("orjson")
    encoding.force_stdlib(request.param == "stdlib")
    yield request.param
    encoding.force_stdlib(False)


class Harness:
    """A sending client aimed at the collector, with what it reported to on_error."""

    def __init__(self, collector):
        self.collector = collector
        self.reports = []
        self.client = Client(
            WRITE_KEY,
            host=collector.url,
            upload_interval=30,
            on_error=lambda error, items: self.reports.append((error, items)),
        )
        self.client.transport.retry.base = 0.01

    def call(self, method, *args, **kwargs):
        """Make the call; whatever it returns or raises, it must not have taken long."""
        started = time.monotonic()
        try:
            return getattr(self.client, method)(*args, **kwargs)
        finally:
            elapsed = time.monotonic() - started
            assert elapsed < CALL_BOUND, f"{method}() took {elapsed:.2f} s"

    def stored(self, message):
        """Flush, then the one copy of ``message`` the collector stored."""
        assert self.client.flush(timeout=10)
        (event,) = self.collector.events(limit=0, message_id=message["messageId"])
        return event

    def assert_not_stored(self, message):
        assert self.client.flush(timeout=10)
        assert self.collector.events(limit=0, message_id=message["messageId"]) == []

    def assert_uploader_survives(self):
        """A normal event after the hostile one is still delivered, by a live uploader."""
        ok, message = self.client.track("survivor", "After Hostile", {"plain": True})
        assert ok is True
        assert self.stored(message)["properties"] == {"plain": True}
        threads = self.client.pipeline._threads
        assert threads and all(thread.is_alive() for thread in threads)
        assert all(isinstance(error, MessageTooLargeError) for error, _ in self.reports)


@pytest.fixture
def harness(collector, encoder):
    harness = Harness(collector)
    yield harness
    harness.client.shutdown(timeout=2)


def warnings_about(caplog, text):
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "segment" and record.levelno == logging.WARNING
        if text in record.getMessage()
    ]


# -- nesting ---------------------------------------------------------------------------------------


def nested(container, levels):
    value = "leaf"
    for _ in range(levels):
        value = {"k": value} if container == "dict" else [value]
    return value


def depth_of(value):
    levels = 0
    while isinstance(value, (dict, list)):
        value = value["k"] if isinstance(value, dict) else value[0]
        levels += 1
    return levels, value


@pytest.mark.parametrize("container", ["dict", "list"])
@pytest.mark.parametrize(
    ("method", "field"),
    [("track", "properties"), ("identify", "traits"), ("track", "context")],
)
def test_ten_thousand_levels_of_nesting_are_cut_with_a_warning(
    harness, caplog, container, method, field
):
    deep = nested(container, 10_000)
    arguments = {"user_id": "u", field: {"deep": deep}}
    if method == "track":
        arguments["event"] = "Deep"
    with caplog.at_level(logging.WARNING, logger="segment"):
        ok, message = harness.call(method, **arguments)
    assert ok is True
    levels, leaf = depth_of(harness.stored(message)[field]["deep"])
    assert leaf is None  # the cut: what lies below is replaced by null
    assert 100 < levels < 254, levels  # kept down to the cleaner's depth, below orjson's limit
    cut = warnings_about(caplog, "nested deeper than")
    assert cut and cut[0].startswith(f"analytics: value at {field}.deep")
    harness.assert_uploader_survives()


def test_deep_nesting_tracked_from_deep_in_the_call_stack(harness, caplog):
    """A caller already hundreds of frames deep must not get a RecursionError out of track()."""
    target = sys.getrecursionlimit() - 150
    outcome = {}

    def descend():
        frame, used = sys._getframe(), 0
        while frame is not None:
            used += 1
            frame = frame.f_back
        if used < target:
            descend()
            return
        outcome["result"] = harness.call("track", "u", "Deep Stack", {"deep": nested("dict", 3000)})

    with caplog.at_level(logging.WARNING, logger="segment"):
        descend()
    ok, message = outcome["result"]
    assert ok is True
    levels, leaf = depth_of(harness.stored(message)["properties"]["deep"])
    assert leaf is None and 0 < levels < 100
    assert warnings_about(caplog, "nested deeper than")
    harness.assert_uploader_survives()


# -- size ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "arguments"),
    [
        pytest.param("track", {"properties": {"blob": MEGABYTE}}, id="property-value"),
        pytest.param("track", {"properties": {MEGABYTE: 1}}, id="property-key"),
        pytest.param("track", {"properties": {"list": [MEGABYTE]}}, id="nested"),
        pytest.param("track", {"event": MEGABYTE}, id="event-name"),
        pytest.param("track", {"user_id": MEGABYTE}, id="user-id"),
        pytest.param("track", {"context": {"page": {"url": MEGABYTE}}}, id="context"),
        pytest.param("identify", {"traits": {"bio": MEGABYTE}}, id="traits"),
        pytest.param("page", {"name": MEGABYTE}, id="page-name"),
        pytest.param(
            "track", {"properties": {f"key-{n}": n for n in range(10_000)}}, id="10000-keys"
        ),
    ],
)
def test_a_message_over_32_kb_is_refused_and_reported(harness, method, arguments):
    arguments = {"user_id": "u", **arguments}
    if method == "track":
        arguments.setdefault("event", "Huge")
    dropped_before = harness.client.stats()["dropped"]
    ok, message = harness.call(method, **arguments)
    assert ok is False
    assert isinstance(message, dict) and message["type"] == method
    ((error, items),) = harness.reports
    assert isinstance(error, MessageTooLargeError)
    assert items == [message]
    assert harness.client.stats()["dropped"] == dropped_before + 1
    harness.assert_not_stored(message)
    harness.assert_uploader_survives()


def test_two_thousand_keys_fit_and_arrive_intact(harness):
    properties = {f"k{n}": n for n in range(2000)}
    ok, message = harness.call("track", "u", "Wide", properties)
    assert ok is True
    assert harness.stored(message)["properties"] == properties
    harness.assert_uploader_survives()


# -- values that are cleaned, or dropped with a warning --------------------------------------------


def _cyclic_dict():
    value = {"name": "x"}
    value["self"] = value
    return value


def _cyclic_list():
    value = [1, "two"]
    value.append(value)
    return value


def _mutual_cycle():
    inner = {"k": 1}
    inner["back"] = [inner]
    return inner


CLEANED = [
    pytest.param(b"\xff\xfeok", "\ufffd\ufffdok", id="bytes-not-utf8"),
    pytest.param(bytearray(b"\x80x"), "\ufffdx", id="bytearray-not-utf8"),
    pytest.param(memoryview(b"ok\xc3"), "ok\ufffd", id="memoryview-truncated-utf8"),
    pytest.param("a\ud800b", "a?b", id="lone-surrogate"),
    pytest.param(["\udfff", "ok"], ["?", "ok"], id="lone-surrogate-in-list"),
    pytest.param(float("nan"), None, id="nan"),
    pytest.param(
        [1.5, float("inf"), [float("-inf"), float("nan")]], [1.5, None, [None, None]], id="inf"
    ),
    pytest.param(decimal.Decimal("12.50"), 12.5, id="decimal"),
    pytest.param(
        [decimal.Decimal(text) for text in ("NaN", "sNaN", "-Infinity", "1e999")],
        [None, None, None, None],
        id="decimal-not-finite",
    ),
    pytest.param(dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05", id="naive"),
    pytest.param(
        dt.datetime(2024, 7, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        "2024-07-01T12:00:00+02:00",
        id="zoneinfo",
    ),
    pytest.param(dt.date(2024, 1, 2), "2024-01-02", id="date"),
    pytest.param(dt.time(1, 2, 3), "01:02:03", id="time"),
    pytest.param({7}, [7], id="set"),
    pytest.param(frozenset({"a"}), ["a"], id="frozenset"),
    pytest.param((1, "two", (3,)), [1, "two", [3]], id="tuple"),
    pytest.param(Colour.BLUE, "blue", id="enum"),
    pytest.param(uuid.UUID(int=7), str(uuid.UUID(int=7)), id="uuid"),
    pytest.param(2**64, 2**64, id="int-beyond-64-bits"),
    pytest.param(_cyclic_dict(), {"name": "x"}, id="cyclic-dict"),
    pytest.param(_cyclic_list(), [1, "two"], id="cyclic-list"),
    pytest.param(_mutual_cycle(), {"k": 1, "back": []}, id="dict-list-cycle"),
    pytest.param([1, Raises(), 2], [1, 2], id="raising-object-in-list"),
    pytest.param(Raises(), DROPPED, id="raising-object"),
    pytest.param(object(), DROPPED, id="object"),
    pytest.param((n for n in range(3)), DROPPED, id="generator"),
    pytest.param(itertools.count(), DROPPED, id="infinite-iterator"),
    pytest.param(Colour.ODD, DROPPED, id="enum-with-object-value"),
    pytest.param(10**5000, DROPPED, id="int-too-long-to-write"),
    pytest.param(dt.datetime(2024, 1, 2, tzinfo=FarZone()), DROPPED, id="offset-of-30-hours"),
]


@pytest.mark.parametrize(("value", "expected"), CLEANED)
def test_values_are_cleaned_or_dropped_with_a_warning(harness, caplog, value, expected):
    with caplog.at_level(logging.WARNING, logger="segment"):
        ok, message = harness.call("track", "u", "Cleaned", {"v": value, "fine": 1})
    assert ok is True
    stored = harness.stored(message)["properties"]
    if expected is DROPPED:
        assert stored == {"fine": 1}
        assert warnings_about(caplog, "dropped properties.v ")
    else:
        assert stored == {"v": expected, "fine": 1}
    harness.assert_uploader_survives()


def test_names_and_ids_with_lone_surrogates_are_cleaned(harness):
    ok, message = harness.call("track", "user-\ud800", "Event \udfff", {"key-\ud83d": 1})
    assert ok is True
    stored = harness.stored(message)
    assert (stored["userId"], stored["event"]) == ("user-?", "Event ?")
    assert stored["properties"] == {"key-?": 1}
    harness.assert_uploader_survives()


def test_keys_that_are_not_strings(harness, caplog):
    properties = {
        7: "int",
        1.5: "float",
        True: "bool",
        None: "none",
        Colour.BLUE: "enum",
        uuid.UUID(int=9): "uuid",
        dt.date(2024, 1, 2): "date",
        (1, 2): "tuple",
        object(): "object",
        Raises(): "raises",
        10**5000: "int too long to write",
        "text": "text",
    }
    with caplog.at_level(logging.WARNING, logger="segment"):
        ok, message = harness.call("track", "u", "Keys", properties)
    assert ok is True
    assert harness.stored(message)["properties"] == {
        "7": "int",
        "1.5": "float",
        "true": "bool",
        "null": "none",
        "blue": "enum",
        str(uuid.UUID(int=9)): "uuid",
        "2024-01-02": "date",
        "text": "text",
    }
    dropped = warnings_about(caplog, "under properties dropped")
    assert sorted(text.split()[4] for text in dropped) == ["Raises", "int", "object", "tuple"]
    harness.assert_uploader_survives()


# -- programmer errors: ValidationError naming the field -------------------------------------------


@pytest.mark.parametrize(
    ("method", "arguments", "field"),
    [
        pytest.param("track", {"user_id": 10**5000}, "user_id", id="user-id-too-long"),
        pytest.param("track", {"user_id": TextRaises("u")}, "user_id", id="user-id-str-raises"),
        pytest.param(
            "track", {"anonymous_id": NumberRaises(5)}, "anonymous_id", id="anonymous-id-raises"
        ),
        pytest.param("track", {"user_id": Raises()}, "user_id", id="user-id-object"),
        pytest.param("group", {"group_id": 10**5000}, "group_id", id="group-id-too-long"),
        pytest.param("alias", {"previous_id": Raises()}, "previous_id", id="previous-id"),
        pytest.param("track", {"message_id": Raises()}, "message_id", id="message-id-object"),
        pytest.param("track", {"message_id": 10**5000}, "message_id", id="message-id-too-long"),
        pytest.param(
            "track",
            {"timestamp": dt.datetime(2024, 1, 2, tzinfo=BrokenZone())},
            "timestamp",
            id="timestamp-tzinfo-raises",
        ),
        pytest.param(
            "track",
            {"timestamp": dt.datetime(2024, 1, 2, tzinfo=FarZone())},
            "timestamp",
            id="timestamp-offset-of-30-hours",
        ),
        pytest.param("track", {"timestamp": "soon\ud800"}, "timestamp", id="timestamp-text"),
        pytest.param("track", {"timestamp": float("nan")}, "timestamp", id="timestamp-nan"),
        pytest.param("track", {"event": Raises()}, "event", id="event-object"),
        pytest.param("track", {"event": b"bytes"}, "event", id="event-bytes"),
        pytest.param("track", {"properties": Raises()}, "properties", id="properties-object"),
        pytest.param("track", {"properties": [("a", 1)]}, "properties", id="properties-list"),
        pytest.param("track", {"context": "ctx"}, "context", id="context-text"),
        pytest.param("track", {"integrations": [1]}, "integrations", id="integrations-list"),
        pytest.param("identify", {"traits": (n for n in "ab")}, "traits", id="traits-gen"),
        pytest.param("page", {"name": Raises()}, "name", id="page-name-object"),
        pytest.param("screen", {"category": 5}, "category", id="screen-category-int"),
        pytest.param("track", {"bogus": Raises()}, "bogus", id="unknown-keyword"),
    ],
)
def test_programmer_errors_raise_validation_error_naming_the_field(
    harness, method, arguments, field
):
    complete = {
        "track": {"user_id": "u", "event": "E"},
        "identify": {"user_id": "u"},
        "page": {"user_id": "u"},
        "screen": {"user_id": "u"},
        "group": {"user_id": "u", "group_id": "g"},
        "alias": {"previous_id": "p", "user_id": "u"},
    }[method]
    with pytest.raises(ValidationError, match=field):
        harness.call(method, **{**complete, **arguments})
    assert harness.client.stats()["dropped"] == 0
    assert harness.reports == []
    harness.assert_uploader_survives()


# -- a tzinfo that raises, inside a value: once a crash of the whole process -----------------------


def test_a_datetime_whose_tzinfo_raises_is_dropped_not_a_crash():
    """orjson 3.13 segfaults on such a datetime, so the encoder must never hand it one; run in a
    child process, so that a regression fails this test instead of killing the test run."""
    script = textwrap.dedent(
        """
        import datetime as dt, json, logging
        from analytics_core import Client, encoding

        logging.getLogger("segment").setLevel(logging.ERROR)

        class BrokenZone(dt.tzinfo):
            def utcoffset(self, when):
                raise RuntimeError("utcoffset refused")

            def dst(self, when):
                raise RuntimeError("dst refused")

        broken = dt.datetime(2024, 1, 2, tzinfo=BrokenZone())
        for stdlib in (False, True):
            encoding.force_stdlib(stdlib)
            client = Client(send=False)
            ok, message = client.track(
                "u", "E", {"when": broken, "fine": 1, "in_list": [broken, 2]}
            )
            assert ok
            print(json.dumps(json.loads(encoding.encode_message(message))["properties"]))
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(ROOT),
    )
    assert result.returncode == 0, (result.returncode, result.stderr)
    lines = result.stdout.splitlines()
    assert len(lines) == 2  # orjson, then the stdlib encoder
    for line in lines:
        assert json.loads(line) == {"fine": 1, "in_list": [2]}


def test_hostile_calls_from_many_threads_leave_the_uploader_working(harness):
    """The cleaner's cycle and depth bookkeeping is per call: threads do not disturb each other."""
    values = [_cyclic_dict(), nested("list", 2000), b"\xff", Raises(), float("nan"), "a\ud800"]
    errors = []

    def hammer(offset):
        try:
            for index in range(60):
                value = values[(index + offset) % len(values)]
                ok, _ = harness.client.track("u", "Threaded", {"v": value, "i": index})
                assert ok
        except BaseException as error:  # noqa: BLE001 - reported to the test thread below
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert harness.client.flush(timeout=30)
    assert len(harness.collector.events(limit=0, event="Threaded")) == 240
    harness.assert_uploader_survives()
