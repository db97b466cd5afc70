"""Building and validating messages: programmer errors raise; valid calls give the wire form."""

import datetime as dt
import threading
import uuid
from unittest import mock

import pytest
from dateutil.parser import isoparse
from hypothesis import given
from hypothesis import strategies as st

import analytics_core
from analytics_core import Client, ValidationError, ids
from analytics_core.context import RequestContext, reset_request_context, set_request_context
from analytics_core.version import VERSION
from tests.support.wire import sent_part

LIBRARY = {"name": "analytics-core", "version": VERSION}


@pytest.fixture
def client():
    return Client(send=False)


@pytest.fixture
def request_context():
    """Set a request context for the test; always reset afterwards."""
    tokens = []

    def install(**kwargs):
        tokens.append(set_request_context(RequestContext(**kwargs)))

    yield install
    for token in reversed(tokens):
        reset_request_context(token)


def _raises(field, call, *args, **kwargs):
    with pytest.raises(ValidationError) as info:
        call(*args, **kwargs)
    assert field in str(info.value), f"{field!r} not named in {str(info.value)!r}"
    return info.value


# -- programmer errors --------------------------------------------------------------------------


def test_validation_error_is_a_value_error():
    assert issubclass(ValidationError, ValueError)
    assert analytics_core.ValidationError is ValidationError


@pytest.mark.parametrize("call", ["identify", "track", "page", "screen", "group"])
def test_no_user_id_and_no_anonymous_id(client, call):
    kwargs = {"event": "E"} if call == "track" else {}
    if call == "group":
        kwargs["group_id"] = "g"
    error = _raises("user_id", getattr(client, call), **kwargs)
    assert "anonymous_id" in str(error)


def test_empty_ids_count_as_missing(client):
    _raises("user_id", client.track, "", "E", anonymous_id="")


@pytest.mark.parametrize("event", [None, ""])
def test_track_event_missing(client, event):
    _raises("event", client.track, "u", event)


@pytest.mark.parametrize("event", [5, b"Signed Up", ["E"], {"e": 1}])
def test_track_event_not_a_string(client, event):
    _raises("event", client.track, "u", event)


@pytest.mark.parametrize("value", [[("a", 1)], "plan=pro", 3, ("a",)])
@pytest.mark.parametrize(
    "call, field",
    [
        ("identify", "traits"),
        ("track", "properties"),
        ("page", "properties"),
        ("screen", "properties"),
        ("group", "traits"),
    ],
)
def test_payload_dicts_must_be_dicts(client, call, field, value):
    kwargs = {"user_id": "u", field: value}
    if call == "track":
        kwargs["event"] = "E"
    if call == "group":
        kwargs["group_id"] = "g"
    _raises(field, getattr(client, call), **kwargs)


@pytest.mark.parametrize("field", ["context", "integrations"])
@pytest.mark.parametrize("value", [["x"], "all", 1])
def test_context_and_integrations_must_be_dicts(client, field, value):
    _raises(field, client.track, "u", "E", **{field: value})
    _raises(field, client.alias, "old", "new", **{field: value})


def test_bad_context_is_a_validation_error_inside_a_request(client, request_context):
    request_context(context={"ip": "10.0.0.1"}, user_id="from-request")
    _raises("context", client.track, "u", "E", context=["not", "a", "dict"])
    _raises("context", client.track, event="E", context="ip=1")


@pytest.mark.parametrize("timestamp", [1700000000, 1700000000.5, b"2024-01-01", ["2024"], True])
def test_timestamp_of_a_wrong_type(client, timestamp):
    _raises("timestamp", client.track, "u", "E", timestamp=timestamp)


@pytest.mark.parametrize("timestamp", ["yesterday", "2024-13-45", "", "2024-01-01T25:00:00"])
def test_timestamp_unparseable_string(client, timestamp):
    _raises("timestamp", client.identify, "u", timestamp=timestamp)


@pytest.mark.parametrize("group_id", [None, ""])
def test_group_needs_group_id(client, group_id):
    _raises("group_id", client.group, "u", group_id)


def test_alias_needs_previous_id_and_user_id(client):
    _raises("previous_id", client.alias, None, "new")
    _raises("previous_id", client.alias, "", "new")
    _raises("user_id", client.alias, "old", None)
    _raises("user_id", client.alias, "old")


@pytest.mark.parametrize(
    "call, args",
    [
        ("identify", ("u",)),
        ("track", ("u", "E")),
        ("page", ("u",)),
        ("screen", ("u",)),
        ("group", ("u", "g")),
        ("alias", ("old", "new")),
    ],
)
def test_unknown_keyword_is_named(client, call, args):
    error = _raises("userid", getattr(client, call), *args, userid="typo")
    assert call in str(error)


def test_several_unknown_keywords_are_all_named(client):
    error = _raises("colour", client.track, "u", "E", colour=1, shape=2)
    assert "shape" in str(error)


@pytest.mark.parametrize("user_id", [["u"], {"id": 1}, True, object()])
def test_ids_of_a_wrong_type(client, user_id):
    _raises("user_id", client.track, user_id, "E")
    _raises("anonymous_id", client.track, event="E", anonymous_id=user_id)


@pytest.mark.parametrize("message_id", ["", True, ["x"]])
def test_bad_message_id(client, message_id):
    _raises("message_id", client.track, "u", "E", message_id=message_id)


@pytest.mark.parametrize("call", ["page", "screen"])
def test_page_name_and_category_must_be_text(client, call):
    _raises("name", getattr(client, call), "u", name=5)
    _raises("category", getattr(client, call), "u", category=["Docs"])


def test_write_key_required_when_sending():
    _raises("write_key", Client, None)
    _raises("write_key", Client, "")
    _raises("write_key", Client, write_key=None, send=True)


def test_write_key_must_be_text():
    _raises("write_key", Client, 1234, send=False)


def test_no_write_key_is_fine_without_sending():
    ok, message = Client(send=False).track("u", "E")
    assert ok is True
    assert message["event"] == "E"


@pytest.mark.parametrize(
    "option, value",
    [
        ("upload_size", 0),
        ("upload_size", 1.5),
        ("max_queue_size", -1),
        ("max_queue_size", 0),
        ("thread", 0),
        ("thread", "2"),
        ("timeout", "x"),
        ("timeout", -1),
        ("max_retries", -1),
        ("upload_interval", -0.1),
        ("upload_interval", None),
        ("shutdown_timeout", "soon"),
        ("upload_size", True),
        ("on_error", "not callable"),
    ],
)
def test_bad_option_values(option, value):
    _raises(option, Client, "KEY", send=False, **{option: value})


def test_module_level_call_validates_too():
    analytics_core.send = False
    _raises("event", analytics_core.track, "u", 42)


# -- valid messages -----------------------------------------------------------------------------


def _check_common(message, kind):
    assert message["type"] == kind
    assert uuid.UUID(message["messageId"]).version == 4
    stamp = isoparse(message["timestamp"])
    assert stamp.tzinfo is not None
    assert message["context"]["library"] == LIBRARY
    assert message["integrations"] == {}


@pytest.mark.parametrize("user_id, expected", [(42, "42"), (10**20, str(10**20)), (1.5, "1.5")])
def test_numeric_ids_become_strings(client, user_id, expected):
    ok, message = client.track(user_id, "E", anonymous_id=7)
    assert ok
    assert message["userId"] == expected
    assert message["anonymousId"] == "7"
    _, group = client.group(user_id, 99)
    assert group["groupId"] == "99"
    _, alias = client.alias(1, user_id)
    assert (alias["previousId"], alias["userId"]) == ("1", expected)


def test_anonymous_id_alone_is_enough(client):
    ok, message = client.track(event="E", anonymous_id="anon-1")
    assert ok
    assert message["anonymousId"] == "anon-1"
    assert message["userId"] is None  # present, as in analytics-python's returned message


def test_zero_user_id_is_an_id(client):
    _, message = client.identify(0)
    assert message["userId"] == "0"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-03-01T12:30:45Z", dt.datetime(2024, 3, 1, 12, 30, 45, tzinfo=dt.timezone.utc)),
        (
            "2024-03-01T12:30:45.123+02:00",
            dt.datetime(2024, 3, 1, 12, 30, 45, 123000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        ),
        ("2024-03-01", dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)),
        ("2024-03-01T12:30:45", dt.datetime(2024, 3, 1, 12, 30, 45, tzinfo=dt.timezone.utc)),
    ],
)
def test_iso_string_timestamps(client, text, expected):
    _, message = client.track("u", "E", timestamp=text)
    parsed = isoparse(message["timestamp"])
    assert parsed.tzinfo is not None
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


def test_naive_datetime_is_utc(client):
    _, message = client.identify("u", timestamp=dt.datetime(2023, 5, 6, 7, 8, 9, 10))
    assert message["timestamp"] == "2023-05-06T07:08:09.000010+00:00"


def test_aware_datetime_keeps_its_offset(client):
    tz = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    _, message = client.identify("u", timestamp=dt.datetime(2023, 5, 6, 7, 8, 9, tzinfo=tz))
    assert message["timestamp"] == "2023-05-06T07:08:09-05:30"


def test_date_timestamp_is_midnight_utc(client):
    _, message = client.identify("u", timestamp=dt.date(2022, 2, 3))
    assert isoparse(message["timestamp"]) == dt.datetime(2022, 2, 3, tzinfo=dt.timezone.utc)


def test_default_timestamp_is_now(client):
    before = dt.datetime.now(dt.timezone.utc)
    _, message = client.track("u", "E")
    after = dt.datetime.now(dt.timezone.utc)
    stamp = isoparse(message["timestamp"])
    # now_iso keeps milliseconds only, so allow for the truncation.
    assert before - dt.timedelta(milliseconds=1) <= stamp <= after


def test_message_id_given_is_kept(client):
    _, message = client.track("u", "E", message_id="my-own-id")
    assert message["messageId"] == "my-own-id"


def test_message_id_otherwise_a_fresh_uuid4(client):
    seen = {client.track("u", "E")[1]["messageId"] for _ in range(500)}
    assert len(seen) == 500
    for value in seen:
        parsed = uuid.UUID(value)
        assert parsed.version == 4
        assert str(parsed) == value


def test_identify_fields(client):
    ok, message = client.identify("u1", {"email": "a@example.com"})
    assert ok
    _check_common(message, "identify")
    assert message["userId"] == "u1"
    assert message["traits"] == {"email": "a@example.com"}


def test_track_fields(client):
    _, message = client.track("u1", "Signed Up", {"plan": "Enterprise"})
    _check_common(message, "track")
    assert message["event"] == "Signed Up"
    assert message["properties"] == {"plan": "Enterprise"}


def test_track_properties_default_to_empty(client):
    _, message = client.track("u1", "Signed Up")
    assert message["properties"] == {}


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_fields(client, kind):
    _, message = getattr(client, kind)("u1", "Docs", "Install", {"path": "/docs"})
    _check_common(message, kind)
    assert message["category"] == "Docs"
    assert message["name"] == "Install"
    assert message["properties"] == {"path": "/docs"}


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_without_name_or_category(client, kind, analytics_events):
    _, message = getattr(client, kind)("u1")
    # Returned with the keys as None, as analytics-python returns them; sent without them.
    assert message["name"] is None and message["category"] is None
    assert message["anonymousId"] is None
    assert message["properties"] == {}
    (sent,) = analytics_events
    assert not {"name", "category", "anonymousId"} & set(sent)
    assert sent_part(message) == sent


def test_group_fields(client):
    _, message = client.group("u1", "acme", {"employees": 10})
    _check_common(message, "group")
    assert message["groupId"] == "acme"
    assert message["traits"] == {"employees": 10}


def test_alias_fields(client):
    _, message = client.alias("anon-9", "u1")
    _check_common(message, "alias")
    assert message["previousId"] == "anon-9"
    assert message["userId"] == "u1"
    assert message["anonymousId"] is None  # as analytics-python returns an alias


TS = dt.datetime(2021, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
CTX = {"ip": "1.2.3.4"}
INTEGRATIONS = {"All": False, "Mixpanel": True}


def _check_positional_tail(message, anonymous=True):
    assert message["context"]["ip"] == "1.2.3.4"
    assert isoparse(message["timestamp"]) == TS
    if anonymous:
        assert message["anonymousId"] == "anon"
    assert message["integrations"] == INTEGRATIONS
    assert message["messageId"] == "mid"


def test_identify_positional_order(client):
    _, m = client.identify("u", {"t": 1}, CTX, TS, "anon", INTEGRATIONS, "mid")
    assert (m["userId"], m["traits"]) == ("u", {"t": 1})
    _check_positional_tail(m)


def test_track_positional_order(client):
    _, m = client.track("u", "E", {"p": 1}, CTX, TS, "anon", INTEGRATIONS, "mid")
    assert (m["userId"], m["event"], m["properties"]) == ("u", "E", {"p": 1})
    _check_positional_tail(m)


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_screen_positional_order(client, kind):
    call = getattr(client, kind)
    _, m = call("u", "Cat", "Name", {"p": 1}, CTX, TS, "anon", INTEGRATIONS, "mid")
    assert (m["userId"], m["category"], m["name"], m["properties"]) == (
        "u",
        "Cat",
        "Name",
        {"p": 1},
    )
    _check_positional_tail(m)


def test_group_positional_order(client):
    _, m = client.group("u", "g", {"t": 1}, CTX, TS, "anon", INTEGRATIONS, "mid")
    assert (m["userId"], m["groupId"], m["traits"]) == ("u", "g", {"t": 1})
    _check_positional_tail(m)


def test_alias_positional_order(client):
    _, m = client.alias("prev", "u", CTX, TS, INTEGRATIONS, "mid")
    assert (m["previousId"], m["userId"]) == ("prev", "u")
    _check_positional_tail(m, anonymous=False)


def test_too_many_positional_arguments_fail(client):
    with pytest.raises(TypeError):
        client.alias("prev", "u", CTX, TS, INTEGRATIONS, "mid", "extra")


def test_user_context_kept_alongside_library(client):
    context = {"ip": "8.8.8.8", "locale": "nl-NL", "page": {"path": "/x"}}
    _, message = client.track("u", "E", context=context)
    assert message["context"] == {**context, "library": LIBRARY}
    assert "library" not in context, "the caller's dict must not be modified"


def test_library_cannot_be_overridden(client):
    _, message = client.track("u", "E", context={"library": {"name": "other"}})
    assert message["context"]["library"] == LIBRARY


# -- per-request context ------------------------------------------------------------------------


def test_request_context_fills_context_and_ids(client, request_context):
    request_context(context={"ip": "10.1.1.1", "userAgent": "UA"}, user_id="ru", anonymous_id="ra")
    _, message = client.track(event="Order Completed")
    assert message["userId"] == "ru"
    assert message["anonymousId"] == "ra"
    assert message["context"] == {"ip": "10.1.1.1", "userAgent": "UA", "library": LIBRARY}


def test_request_context_alone_satisfies_identity(client, request_context):
    request_context(anonymous_id="cookie-anon")
    ok, message = client.page(name="Home")
    assert ok
    assert message["anonymousId"] == "cookie-anon"
    assert message["userId"] is None


def test_explicit_context_wins_key_by_key(client, request_context):
    request_context(
        context={
            "ip": "10.1.1.1",
            "locale": "en-US",
            "page": {"url": "https://a.example/x?q=1", "path": "/x", "referrer": "r"},
        },
        user_id="ru",
    )
    _, message = client.track(
        "u", "E", context={"ip": "2.2.2.2", "page": {"path": "/override"}, "extra": 1}
    )
    context = message["context"]
    assert context["ip"] == "2.2.2.2"
    assert context["locale"] == "en-US"
    assert context["extra"] == 1
    assert context["page"] == {
        "url": "https://a.example/x?q=1",
        "path": "/override",
        "referrer": "r",
    }
    assert context["library"] == LIBRARY


def test_request_context_not_modified_by_merge(client, request_context):
    page = {"path": "/x"}
    shared = {"page": page}
    request_context(context=shared, user_id="ru")
    client.track("u", "E", context={"page": {"path": "/y"}, "ip": "1.1.1.1"})
    assert shared == {"page": {"path": "/x"}}
    assert page == {"path": "/x"}


def test_explicit_user_id_keeps_the_request_anonymous_id(client, request_context):
    request_context(user_id="ru", anonymous_id="ra")
    _, message = client.track("explicit", "E")
    assert message["userId"] == "explicit"
    assert message["anonymousId"] == "ra"


def test_explicit_anonymous_id_keeps_the_request_user_id(client, request_context):
    request_context(user_id="ru", anonymous_id="ra")
    _, message = client.track(event="E", anonymous_id="mine")
    assert message["anonymousId"] == "mine"
    assert message["userId"] == "ru"


def test_alias_ignores_request_ids_but_takes_context(client, request_context):
    request_context(context={"ip": "10.0.0.9"}, user_id="ru", anonymous_id="ra")
    _, message = client.alias("old", "new")
    assert message["userId"] == "new"
    assert message["anonymousId"] is None  # as analytics-python returns an alias
    assert message["context"]["ip"] == "10.0.0.9"


def test_reset_request_context_restores_previous(client):
    outer = set_request_context(RequestContext(context={"ip": "1.1.1.1"}, user_id="outer"))
    try:
        inner = set_request_context(RequestContext(user_id="inner"))
        assert client.track(event="E")[1]["userId"] == "inner"
        reset_request_context(inner)
        _, message = client.track(event="E")
        assert message["userId"] == "outer"
        assert message["context"]["ip"] == "1.1.1.1"
    finally:
        reset_request_context(outer)
    _raises("user_id", client.track, event="E")
    _, message = client.track("u", "E")
    assert message["context"] == {"library": LIBRARY}


def test_request_context_is_per_thread(client, request_context):

    request_context(user_id="main-thread")
    results = {}

    def worker():
        try:
            client.track(event="E")
        except ValidationError as error:
            results["error"] = error

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert "user_id" in str(results["error"])
    assert client.track(event="E")[1]["userId"] == "main-thread"


# -- ids ----------------------------------------------------------------------------------------


def test_new_message_id_valid_uuid4_and_unique():
    drawn = [ids.new_message_id() for _ in range(100_000)]
    assert len(set(drawn)) == len(drawn)
    for value in drawn[:2000] + drawn[-2000:]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == value
    # Every id, not just a sample, has the version and variant digits in place.
    assert all(v[14] == "4" and v[19] in "89ab" and len(v) == 36 for v in drawn)


def test_new_message_id_variant_digit_is_spread():
    digits = {ids.new_message_id()[19] for _ in range(2000)}
    assert digits == set("89ab")


def test_reset_after_fork_forgets_the_buffer():
    ids.new_message_id()
    ids.reset_after_fork()
    values = {ids.new_message_id() for _ in range(600)}
    assert len(values) == 600


def test_ids_drawn_ahead_by_another_thread_are_never_given_out_twice():
    # The uploader draws the next ids (prepare_message_ids) while callers' threads pop them.
    ids.reset_after_fork()
    drawn: list = []
    stop = threading.Event()

    def preparer():
        while not stop.is_set():
            ids.prepare_message_ids()

    def caller():
        drawn.extend(ids.new_message_id() for _ in range(20_000))

    helper = threading.Thread(target=preparer)
    helper.start()
    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    stop.set()
    helper.join()
    assert len(drawn) == 80_000
    assert len(set(drawn)) == len(drawn)
    assert all(v[14] == "4" and v[19] in "89ab" and len(v) == 36 for v in drawn)


def test_reset_after_fork_forgets_ids_drawn_ahead_too():
    ids.reset_after_fork()
    ids.prepare_message_ids()
    ahead = set(ids._source._reserve)
    ids.reset_after_fork()  # as in a forked child: the parent may give these out
    child = {ids.new_message_id() for _ in range(2000)}
    assert not child & ahead


def test_now_iso_is_aware_and_close_to_now():
    before = dt.datetime.now(dt.timezone.utc)
    text = ids.now_iso()
    after = dt.datetime.now(dt.timezone.utc)
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(milliseconds=1) <= parsed <= after


# Up to 2100; the clock a quarter to three quarters into the millisecond, clear of the float
# rounding a time.time() that far out carries (about 0.06 ms).
@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.floats(0.25, 0.75))
def test_now_iso_writes_the_clocks_millisecond_as_datetime_would(millis, within):
    # The date and time of day are formatted once a second and the milliseconds added: every
    # stamp must read as datetime's own ISO text of that millisecond, at any time of any day.
    expected = dt.datetime.fromtimestamp(millis // 1000, dt.timezone.utc).replace(
        microsecond=millis % 1000 * 1000
    )
    with mock.patch.object(ids.time, "time", lambda: (millis + within) / 1000):
        ids._last_stamp = (-1, "")
        text = ids.now_iso()
    assert text == expected.isoformat(timespec="milliseconds")
