"""A naive ``timestamp`` is read as analytics-python reads it: within a few seconds of the local
clock it is ``datetime.now()`` (local time), anything else is UTC; one warning per process.

The host's zone is set for real (``TZ`` and ``time.tzset()``), as on a server whose clock is not
on UTC: the case that sent ``datetime.now()`` eight hours early on UTC-8.
"""

import datetime as dt
import logging
import os
import time

import pytest

from analytics_core import Client, messages

UTC = dt.timezone.utc


@pytest.fixture
def host_zone():
    """Set the process's local zone (``TZ``) for one test, and put it back."""
    saved = os.environ.get("TZ")

    def set_zone(name):
        os.environ["TZ"] = name
        time.tzset()

    yield set_zone
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.fixture
def fresh_warning(monkeypatch):
    """As in a new process: the naive-timestamp warning not given yet."""
    monkeypatch.setattr(messages, "_warned_naive", False)


@pytest.fixture
def client():
    made = Client("key", send=False)
    yield made
    made.shutdown(timeout=1)


def sent_instant(message):
    return dt.datetime.fromisoformat(message["timestamp"])


@pytest.mark.parametrize(
    "zone, offset",
    [("America/Los_Angeles", "-08:00"), ("Asia/Kolkata", "+05:30"), ("UTC", "+00:00")],
)
def test_datetime_now_is_local_time(client, host_zone, fresh_warning, zone, offset):
    host_zone(zone)
    before = dt.datetime.now(UTC)
    _, message = client.track("u", "E", timestamp=dt.datetime.now())
    after = dt.datetime.now(UTC)
    # The instant sent is the real one (not shifted by the host's offset), written with the
    # host's offset as analytics-python writes it. December: no daylight saving in either zone.
    assert before - dt.timedelta(milliseconds=1) <= sent_instant(message) <= after
    assert message["timestamp"].endswith(offset)


def test_a_naive_datetime_far_from_now_is_utc(client, host_zone, fresh_warning):
    host_zone("America/Los_Angeles")
    _, message = client.track("u", "E", timestamp=dt.datetime(2020, 1, 1, 12, 0))
    assert message["timestamp"] == "2020-01-01T12:00:00+00:00"
    # An hour ago in local time is not "now": read as UTC, as analytics-python does.
    an_hour_ago = dt.datetime.now() - dt.timedelta(hours=1)
    _, message = client.track("u", "E", timestamp=an_hour_ago)
    assert sent_instant(message) == an_hour_ago.replace(tzinfo=UTC)


def test_the_window_is_a_few_seconds_either_way(client, host_zone, fresh_warning):
    host_zone("America/Los_Angeles")
    for seconds in (-3, 3):
        local = dt.datetime.now() + dt.timedelta(seconds=seconds)
        _, message = client.track("u", "E", timestamp=local)
        assert message["timestamp"].endswith("-08:00"), (seconds, message["timestamp"])
    for seconds in (-60, 60):
        local = dt.datetime.now() + dt.timedelta(seconds=seconds)
        _, message = client.track("u", "E", timestamp=local)
        assert message["timestamp"].endswith("+00:00"), (seconds, message["timestamp"])


def test_aware_datetimes_are_sent_as_given_and_warn_nothing(
    client, host_zone, fresh_warning, caplog
):
    host_zone("America/Los_Angeles")
    stamp = dt.datetime(2024, 6, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with caplog.at_level(logging.WARNING, logger="segment"):
        _, message = client.track("u", "E", timestamp=stamp)
        client.track("u", "E", timestamp=dt.datetime.now(UTC))
        client.track("u", "E")
    assert message["timestamp"] == "2024-06-01T09:30:00+02:00"
    assert not [r for r in caplog.records if "naive" in r.getMessage()]


def test_one_warning_per_process_naming_the_fix(client, host_zone, fresh_warning, caplog):
    host_zone("America/Los_Angeles")
    with caplog.at_level(logging.WARNING, logger="segment"):
        for call in ("track", "identify", "page"):
            if call == "track":
                client.track("u", "E", timestamp=dt.datetime.now())
            else:
                getattr(client, call)("u", timestamp=dt.datetime(2020, 1, 1))
    warnings = [r for r in caplog.records if "naive" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "datetime.now(timezone.utc)" in warnings[0].getMessage()


def test_dates_and_strings_without_an_offset_stay_utc(client, host_zone, fresh_warning):
    # A date names a day, and a string without an offset is how ISO-8601 feeds write UTC:
    # neither is datetime.now(), so the local-time guess is only for naive datetimes.
    host_zone("America/Los_Angeles")
    _, message = client.track("u", "E", timestamp=dt.date(2024, 3, 1))
    assert message["timestamp"] == "2024-03-01T00:00:00+00:00"
    now_text = dt.datetime.now().isoformat()
    _, message = client.track("u", "E", timestamp=now_text)
    assert message["timestamp"].endswith("+00:00")


def test_module_level_track_reads_naive_now_as_local_on_the_wire(
    host_zone, fresh_warning, analytics_events
):
    import analytics_core as analytics

    host_zone("America/Los_Angeles")
    analytics.write_key = "key"
    before = dt.datetime.now(UTC)
    analytics.track("u", "E", timestamp=dt.datetime.now())
    (sent,) = analytics_events
    assert sent["timestamp"].endswith("-08:00")
    assert abs(sent_instant(sent) - before) < dt.timedelta(seconds=2)
