"""What code written for analytics-python touches besides the six calls (issue 14, part 2):
``client.queue``, the module-level ``flush()``/``join()``/``shutdown()`` building
``default_client``, the exception types it catches, and the keys of the returned message."""

import logging
from unittest import mock

import pytest
import requests

import analytics_core as analytics
from analytics_core import APIError, Client, UnknownArgumentError, ValidationError
from tests.support.keys import rsa_key_pair
from tests.support.wire import sent_part


@pytest.fixture
def quiet_client(collector):
    """A sending client whose uploader waits (a long interval, a large batch size)."""
    made = Client("queue-key", host=collector.url, upload_interval=30, max_queue_size=4)
    yield made
    made.shutdown(timeout=2)


def test_queue_qsize_as_in_segments_guide(quiet_client, collector):
    queue = quiet_client.queue
    assert (queue.qsize(), queue.empty(), queue.full(), queue.maxsize) == (0, True, False, 4)
    for index in range(3):
        quiet_client.track("u", "Queued", {"i": index})
    assert (queue.qsize(), queue.empty(), queue.full()) == (3, False, False)
    quiet_client.track("u", "Queued", {"i": 3})
    assert queue.full()
    assert quiet_client.flush(timeout=10)
    assert (queue.qsize(), queue.empty(), queue.full()) == (0, True, False)
    assert len(collector.events(limit=0)) == 4


def test_module_level_default_client_queue(collector):
    analytics.write_key = "module-queue-key"
    analytics.host = collector.url
    analytics.upload_interval = 30
    analytics.track("u", "Queued")
    assert analytics.default_client.queue.qsize() == 1
    analytics.flush()
    assert analytics.default_client.queue.qsize() == 0


@pytest.mark.parametrize("call", ["flush", "join", "shutdown"])
def test_module_functions_build_the_default_client_from_the_settings(collector, call):
    analytics.write_key = "built-by-" + call
    analytics.host = collector.url
    assert getattr(analytics, call)() is True
    client = analytics.default_client
    assert isinstance(client, Client) and client.write_key == "built-by-" + call
    assert client.transport.url == collector.url + "/v1/batch"


@pytest.mark.parametrize("call", ["flush", "join", "shutdown"])
def test_with_nothing_configured_they_do_nothing(call):
    # analytics-python would raise building a client without a write key; there is nothing
    # to deliver, so returning True is what a program calling flush() at exit wants.
    assert getattr(analytics, call)() is True
    assert analytics.default_client is None


def test_a_missing_field_is_an_assertion_error_as_in_analytics_python():
    client = Client("k", send=False)
    with pytest.raises(AssertionError, match="event is required"):
        client.track("u")
    with pytest.raises(AssertionError, match="user_id or anonymous_id"):
        client.identify(traits={"a": 1})
    with pytest.raises(ValueError, match="group_id"):  # and still a ValueError, as before
        client.group("u")
    assert issubclass(ValidationError, (AssertionError, ValueError))


def test_an_unknown_keyword_is_a_type_error_naming_it():
    client = Client("k", send=False)
    with pytest.raises(TypeError, match="propertes") as caught:
        client.track("u", "E", propertes={"typo": True})
    assert isinstance(caught.value, (UnknownArgumentError, ValidationError))
    with pytest.raises(TypeError, match="unknown argument"):
        analytics.Client("k", send=False).page("u", "Docs", titel="x")


# The keys analytics-python 2.4's returned message has, for each call.
ANALYTICS_PYTHON_KEYS = {
    "identify": {"userId", "anonymousId", "traits"},
    "track": {"userId", "anonymousId", "event", "properties"},
    "page": {"userId", "anonymousId", "name", "category", "properties"},
    "screen": {"userId", "anonymousId", "name", "category", "properties"},
    "group": {"userId", "anonymousId", "groupId", "traits"},
    "alias": {"userId", "anonymousId", "previousId"},
}
COMMON_KEYS = {"type", "messageId", "timestamp", "context", "integrations"}

CALLS = {
    "identify": lambda c: c.identify("u"),
    "track": lambda c: c.track(anonymous_id="a", event="E"),
    "page": lambda c: c.page("u"),
    "screen": lambda c: c.screen(anonymous_id="a"),
    "group": lambda c: c.group("u", "g"),
    "alias": lambda c: c.alias("old", "new"),
}


@pytest.mark.parametrize("kind", sorted(CALLS))
def test_the_returned_message_has_analytics_pythons_keys(kind, analytics_events):
    ok, message = CALLS[kind](Client("k", send=False))
    assert ok
    assert set(message) == ANALYTICS_PYTHON_KEYS[kind] | COMMON_KEYS
    (sent,) = analytics_events  # the wire leaves the Nones out
    assert sent == sent_part(message)


# -- found by running analytics-python 2.4's own test suite against this project ---------------


def test_the_client_has_analytics_pythons_log_attribute(caplog):
    client = Client("k", send=False)
    assert client.log is Client.log
    assert client.log.name == "segment"
    with caplog.at_level(logging.INFO, logger="segment"):
        client.log.info("from user code")
    assert [r.getMessage() for r in caplog.records] == ["from user code"]


def test_api_error_takes_and_keeps_a_response_as_in_analytics_python():
    error = APIError(429, "rate_limit", "Too Many Requests", None)
    assert (error.status, error.code, error.message, error.response) == (
        429,
        "rate_limit",
        "Too Many Requests",
        None,
    )
    assert APIError(500, "c", "m").response is None
    marker = object()
    assert APIError(400, "c", "m", marker).response is marker
    assert APIError(400, "c", "m", response=marker).response is marker


@pytest.mark.parametrize("name", ["max_total_backoff_duration", "max_rate_limit_duration"])
def test_analytics_pythons_retry_bounds_are_options(name):
    client = Client("k", send=False, **{name: 60})
    assert getattr(client, name) == 60
    for bad in (None, -1, float("nan")):
        with pytest.raises(ValueError, match=name):
            Client("k", send=False, **{name: bad})
    # Positionally too, where analytics-python's signature has them (after oauth_scope).
    positional = Client("k", None, False, 10000, False, None, False, 10, False, 15, None, 1, 100,
                        0.5, None, None, None, None, "https://oauth2.segment.io",
                        "tracking_api:write", 11, 22)  # fmt: skip
    assert (positional.max_total_backoff_duration, positional.max_rate_limit_duration) == (11, 22)
    assert positional.transport.retry.max_total_backoff == 11
    assert positional.transport.retry.max_rate_limit == 22


def test_oauth_through_a_test_that_replaced_session_post(rsa_private_pem, collector):
    # Segment's OAuth integration tests answer with a plain object of their own, not a Response.
    class Answer:
        status_code = 200
        headers = {}

        def json(self):
            return {"access_token": "t0k3n", "expires_in": 3600}

    reports = []
    with mock.patch.object(requests.Session, "post", return_value=Answer()) as post:
        client = Client(
            "oauth-key",
            host=collector.url,
            oauth_client_id="id",
            oauth_client_key=rsa_private_pem,
            oauth_key_id="kid",
            on_error=lambda error, items: reports.append(error),
        )
        client.track("u", "With OAuth")
        assert client.flush(timeout=10)
        client.shutdown(timeout=2)
    assert reports == []
    urls = [call.args[0] for call in post.call_args_list]
    assert urls[0].endswith("/token") and urls[-1].endswith("/v1/batch")
    assert post.call_args_list[-1].kwargs["headers"]["Authorization"] == "Bearer t0k3n"
    assert collector.events(limit=0) == []


@pytest.fixture(scope="module")
def rsa_private_pem():
    return rsa_key_pair()[0]
