"""Segment's documented snippets, run with analytics-python and with analytics_core against the
same real collector: what arrives is the same (issue 14's "same stored result").

Each snippet is the code of Segment's "Analytics for Python" page, its quickstart and README,
written as a function of the module it uses, so one text runs with ``segment.analytics`` (2.4.0)
and with ``analytics_core``. The stored messages are compared whole, after setting aside what
differs by nature: messageId, sentAt, the collector's own fields, context.library, the keys
analytics-python sends as null (left out here, which Segment reads the same), and the text of a
timestamp (compared as an instant to the millisecond, the precision analytics-python writes).
Where this project deliberately sends something else, a test below says what and why.
"""

import datetime as dt
import decimal
import enum
import os
import time
import uuid

import pytest
import segment.analytics as segment  # segment-analytics-python 2.4.0, in the dev extra
from dateutil.parser import isoparse
from dateutil.tz import tzutc

import analytics_core

STORE_FIELDS = {"_id", "_received_at", "_write_key_fingerprint", "_batch_id", "_sent_at"}


@pytest.fixture
def both(collector):
    """Run a snippet with each library against the collector; return what each stored."""
    keys = iter(range(1_000_000))

    def run(snippet):
        stored = {}
        for name, module in (("analytics-python", segment), ("analytics_core", analytics_core)):
            key = f"{name}-{next(keys)}"
            module.write_key = key
            module.host = collector.url
            module.on_error = None
            module.default_client = None
            try:
                snippet(module)
                module.flush()
            finally:
                if module.default_client is not None:
                    module.default_client.join()  # both libraries' way to stop the uploader
                module.default_client = None
            stored[name] = sorted(
                collector.events(write_key=key, limit=0), key=lambda event: event["_id"]
            )
        return stored["analytics-python"], stored["analytics_core"]

    yield run
    segment.write_key = None
    segment.host = None


def normalized(event):
    message = {key: value for key, value in event.items() if key not in STORE_FIELDS}
    message.pop("messageId", None)
    message.pop("sentAt", None)
    context = dict(message.get("context") or {})
    context.pop("library", None)
    message["context"] = context
    stamp = isoparse(message.pop("timestamp"))
    # A timestamp the call did not give is the time of the run, which differs between the two.
    recent = abs(stamp - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=1)
    message["instant_ms"] = "the time of the call" if recent else round(stamp.timestamp() * 1000)
    message["offset"] = stamp.utcoffset()
    return {key: value for key, value in message.items() if value is not None}


def assert_same_stored(both, snippet):
    theirs, ours = both(snippet)
    assert theirs, "analytics-python stored nothing: the snippet did not run"
    assert [normalized(event) for event in ours] == [normalized(event) for event in theirs]
    return theirs, ours


# -- Segment's "Analytics for Python" page: each call's example ---------------------------------


def identify(analytics):
    analytics.identify(
        "019mr8mf4r", {"email": "john@example.com", "name": "John Smith", "friends": 30}
    )


def track_signed_up(analytics):
    analytics.track("f4ca124298", "Signed Up", {"plan": "Enterprise"})


def track_article(analytics):
    analytics.track(
        "f4ca124298",
        "Article Bookmarked",
        {"title": "Snow Fall", "subtitle": "The Avalance at Tunnel Creek", "author": "John Branch"},
    )


def page(analytics):
    analytics.page("user_id", "Docs", "Python", {"url": "http://segment.com"})


def screen(analytics):
    analytics.screen("user_id", "Settings", "Brightness", {"from": "Home Screen"})


def group(analytics):
    analytics.group("user_id", "group_id", {"name": "Initech", "domain": "Accounting Software"})


def alias(analytics):
    analytics.alias("previous_id", "user_id")


def historical_import(analytics):
    timestamp = dt.datetime(2538, 10, 17, 0, 0, 0, 0, tzinfo=tzutc())
    analytics.track(
        "019mr8mf4r", "Bought a game", {"game": "Duke Nukem forever"}, timestamp=timestamp
    )


def server_logs(analytics):
    import dateutil.parser

    for entry in ["2012-10-17T18:58:57.911Z 019mr8mf4r /purchased/tshirt"]:
        timestamp_str, user_id, url = entry.split(" ")
        timestamp = dateutil.parser.parse(timestamp_str)
        analytics.track(
            user_id, "Shirt Bought", {"color": "Blue", "revenue": 17.90}, timestamp=timestamp
        )


def selecting_integrations(analytics):
    analytics.track(
        "9742",
        "Song Played",
        integrations={"all": False, "Kissmetrics": True, "Google Analytics": False},
    )


def context_override(analytics):
    analytics.track(
        "9742",
        "Song Played",
        context={
            "ip": 1234,
            "userAgent": "Mozilla/5.0 (Linux; U; Android 4.1.1; en-gb; Build/KLP) "
            "AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Safari/534.30",
        },
    )


def every_field(analytics):
    stamp = dt.datetime(2016, 6, 6, 1, 46, 33, 939388, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    common = dict(
        context={"ip": "1.2.3.4", "app": {"name": "x"}},
        timestamp=stamp,
        integrations={"All": False, "Mixpanel": True},
    )
    analytics.identify(user_id="u", traits={"t": 1}, anonymous_id="a", message_id="m-i", **common)
    analytics.track(
        user_id="u", event="Ev", properties={"p": 1}, anonymous_id="a", message_id="m-t", **common
    )
    for kind in ("page", "screen"):
        getattr(analytics, kind)(
            user_id="u",
            category="Cat",
            name="Nm",
            properties={"p": 2},
            anonymous_id="a",
            message_id="m-" + kind,
            **common,
        )
    analytics.group(user_id="u", group_id="g", traits={"t": 2}, anonymous_id="a", **common)
    analytics.alias(previous_id="p", user_id="u", message_id="m-a", **common)


def anonymous_calls(analytics):
    analytics.track(anonymous_id="anon-1", event="Viewed")
    analytics.page(anonymous_id="anon-1")
    analytics.identify(anonymous_id="anon-1", traits={"plan": "free"})


class Colour(enum.Enum):
    RED = "red"


def value_types(analytics):
    analytics.track(
        "u",
        "Types",
        {
            "aware": dt.datetime(2020, 5, 17, 8, 30, 0, 123456, tzinfo=dt.timezone.utc),
            "naive": dt.datetime(2020, 5, 17, 8, 30),
            "day": dt.date(2020, 5, 17),
            "price": decimal.Decimal("9.99"),
            "pair": (1, 2),
            "tags": {"only"},
            "colour": Colour.RED,
            "none": None,
            "nested": {"x": None, "y": [None, 1.5]},
            "big": 2**70,
        },
    )


SNIPPETS = [
    identify,
    track_signed_up,
    track_article,
    page,
    screen,
    group,
    alias,
    historical_import,
    server_logs,
    selecting_integrations,
    context_override,
    every_field,
    anonymous_calls,
    value_types,
]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.__name__ for s in SNIPPETS])
def test_the_same_messages_arrive(both, snippet):
    assert_same_stored(both, snippet)


# -- naive datetimes, on a host whose clock is not on UTC ---------------------------------------


@pytest.fixture
def los_angeles():
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def quickstart_identify(analytics):
    # The quickstart's identify: created_at is the local clock, inside the traits.
    analytics.identify(
        "f4ca124298",
        {"name": "Michael Bolton", "email": "mbolton@initech.com", "created_at": dt.datetime.now()},
    )


def naive_timestamps(analytics):
    analytics.track("u", "Now", timestamp=dt.datetime.now())
    analytics.track("u", "Long Ago", timestamp=dt.datetime(2020, 1, 1, 12, 0))


def test_the_quickstarts_local_created_at_arrives_as_given(both, los_angeles):
    theirs, ours = both(quickstart_identify)
    # Both send the local wall time without an offset; the seconds differ as the runs do.
    assert len(ours[0]["traits"]["created_at"]) == len(theirs[0]["traits"]["created_at"])
    for event in (theirs[0], ours[0]):
        created = dt.datetime.fromisoformat(event["traits"]["created_at"])
        assert created.tzinfo is None
        assert abs(created - dt.datetime.now()) < dt.timedelta(seconds=30)


def test_naive_timestamps_arrive_as_the_same_instants(both, los_angeles):
    theirs, ours = both(naive_timestamps)
    for mine, segments in zip(ours, theirs):
        assert (
            isoparse(mine["timestamp"]).utcoffset() == isoparse(segments["timestamp"]).utcoffset()
        )
    assert ours[0]["timestamp"].endswith("-08:00")
    assert abs(isoparse(ours[0]["timestamp"]) - isoparse(theirs[0]["timestamp"])) < dt.timedelta(
        seconds=30
    )
    assert isoparse(ours[1]["timestamp"]) == isoparse(theirs[1]["timestamp"])


# -- where this project deliberately sends something else (README: "Differences") ---------------


def numeric_ids(analytics):
    analytics.identify(42, {"a": 1})
    analytics.group(42, 7)
    analytics.alias(41, 42)


def test_numeric_group_and_previous_ids_are_sent_as_text(both):
    theirs, ours = both(numeric_ids)
    # analytics-python turns userId into text but sends groupId and previousId as numbers;
    # the spec types every id as a string, and here every id is sent as one.
    assert [e.get("groupId") for e in theirs if e["type"] == "group"] == [7]
    assert [e.get("groupId") for e in ours if e["type"] == "group"] == ["7"]
    assert [e.get("previousId") for e in theirs if e["type"] == "alias"] == [41]
    assert [e.get("previousId") for e in ours if e["type"] == "alias"] == ["41"]
    assert [e["userId"] for e in ours] == [e["userId"] for e in theirs] == ["42"] * 3


def a_uuid_property(analytics):
    analytics.track("u", "With UUID", {"id": uuid.UUID(int=5), "kept": 1})


def test_a_uuid_property_is_sent_as_text_not_dropped(both):
    theirs, ours = both(a_uuid_property)
    assert theirs[0]["properties"] == {"kept": 1}  # analytics-python drops the whole key
    assert ours[0]["properties"] == {"id": str(uuid.UUID(int=5)), "kept": 1}


def test_library_name_is_this_project(both):
    theirs, ours = both(track_signed_up)
    assert theirs[0]["context"]["library"]["name"] == "analytics-python"
    assert ours[0]["context"]["library"] == {
        "name": "analytics-core",
        "version": analytics_core.VERSION,
    }
