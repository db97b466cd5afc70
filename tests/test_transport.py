"""Unit tests of the HTTP layer (analytics_core.transport), with ``responses`` standing in for
the tracking API. End-to-end delivery against a real collector lives in test_delivery.py.

While ``responses`` is active it has patched requests, so the transport posts through requests
and these tests cover that path; the keep-alive path is tested against real local servers in
test_transport_keepalive.py."""

import base64
import datetime as dt
import email.utils
import gzip
import json
import threading
import time

import pytest
import requests
import responses

import analytics_core
from analytics_core import APIError
from analytics_core.encoding import join_batch
from analytics_core.ids import now_iso
from analytics_core.keepalive import KeepAliveSession
from analytics_core.transport import (
    DEFAULT_HOST,
    RETRY_AFTER_CAP,
    RetryPolicy,
    Transport,
    batch_url,
    parse_retry_after,
)
from analytics_core.version import VERSION

# These tests are about delivery: their messages really go out (the pytest plugin
# captures every other test's).
pytestmark = pytest.mark.analytics_send

HOST = "https://api.example.test"
URL = HOST + "/v1/batch"
KEY = "wk_secret_123"


def fast_retry(max_retries=3):
    return RetryPolicy(max_retries=max_retries, base=0.01, cap=0.05)


def make_transport(max_retries=3, **kwargs):
    return Transport(KEY, HOST, retry=fast_retry(max_retries), **kwargs)


def body_of(*messages):
    """A real batch body, built the way the pipeline builds it."""
    encoded = [json.dumps(message).encode() for message in messages]
    return join_batch(encoded, now_iso(), KEY)


class RecordingEvent(threading.Event):
    """A stop event that records how long each retry wait would have been, and never sleeps."""

    def __init__(self):
        super().__init__()
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


# -- URL building -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "https://api.segment.io/v1/batch"),
        ("", "https://api.segment.io/v1/batch"),
        ("https://api.segment.io", "https://api.segment.io/v1/batch"),
        ("https://api.segment.io/", "https://api.segment.io/v1/batch"),
        ("https://events.eu1.segmentapis.com", "https://events.eu1.segmentapis.com/v1/batch"),
        ("https://events.eu1.segmentapis.com/", "https://events.eu1.segmentapis.com/v1/batch"),
        ("http://x/prefix/", "http://x/prefix/v1/batch"),
        ("http://x/prefix", "http://x/prefix/v1/batch"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/batch"),
        ("collector.internal", "https://collector.internal/v1/batch"),
    ],
)
def test_batch_url(host, expected):
    assert batch_url(host) == expected


def test_default_host_is_segment():
    assert DEFAULT_HOST == "https://api.segment.io"
    assert Transport(KEY).url == "https://api.segment.io/v1/batch"


@responses.activate
def test_post_goes_to_the_prefixed_url():
    responses.add(responses.POST, "http://x/prefix/v1/batch", json={})
    Transport(KEY, "http://x/prefix/", retry=fast_retry()).send(body_of({"type": "track"}))
    assert len(responses.calls) == 1
    assert responses.calls[0].request.url == "http://x/prefix/v1/batch"


# -- headers and body ---------------------------------------------------------------------------


@responses.activate
def test_headers_auth_content_type_and_user_agent():
    responses.add(responses.POST, URL, json={})
    make_transport().send(body_of({"type": "track", "event": "x"}))
    headers = responses.calls[0].request.headers
    expected_auth = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert headers["Authorization"] == expected_auth
    assert base64.b64decode(headers["Authorization"][len("Basic ") :]) == f"{KEY}:".encode()
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"analytics-core/{VERSION}"
    assert "Content-Encoding" not in headers


@responses.activate
def test_body_is_sent_unchanged_without_gzip():
    responses.add(responses.POST, URL, json={})
    body = body_of({"type": "track", "event": "plain"})
    make_transport().send(body)
    assert responses.calls[0].request.body == body


@responses.activate
def test_client_body_has_batch_sent_at_and_write_key():
    responses.add(responses.POST, URL, json={})
    client = analytics_core.Client(KEY, host=HOST, sync_mode=True)
    client.transport.retry = fast_retry()
    ok, message = client.track("user-1", "Signed Up", {"plan": "Enterprise"})
    assert ok is True
    payload = json.loads(responses.calls[0].request.body)
    assert set(payload) == {"batch", "sentAt", "writeKey"}
    assert payload["writeKey"] == KEY
    sent_at = dt.datetime.fromisoformat(payload["sentAt"])
    assert sent_at.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - sent_at).total_seconds()) < 60
    assert len(payload["batch"]) == 1
    sent = payload["batch"][0]
    assert sent["messageId"] == message["messageId"]
    assert sent["event"] == "Signed Up"
    assert sent["properties"] == {"plan": "Enterprise"}


@responses.activate
def test_gzip_sets_content_encoding_and_body_gunzips_to_the_same_json():
    responses.add(responses.POST, URL, json={})
    body = body_of({"type": "track", "event": "zipped", "properties": {"ü": "ß" * 200}})
    make_transport(gzip=True).send(body)
    request = responses.calls[0].request
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body != body
    assert gzip.decompress(request.body) == body
    assert json.loads(gzip.decompress(request.body)) == json.loads(body)


@responses.activate
def test_bearer_token_replaces_basic_auth_and_401_fetches_a_new_token():
    class Tokens:
        def __init__(self):
            self.issued = 0
            self.invalidated = 0

        def get_token(self):
            self.issued += 1
            return f"token-{self.issued}"

        def invalidate(self):
            self.invalidated += 1

    tokens = Tokens()
    responses.add(responses.POST, URL, status=401, json={"code": "unauthorized", "message": "x"})
    responses.add(responses.POST, URL, json={})
    transport = make_transport(token_provider=tokens)
    transport.stop_event = RecordingEvent()
    transport.send(body_of({"type": "track"}))
    assert [call.request.headers["Authorization"] for call in responses.calls] == [
        "Bearer token-1",
        "Bearer token-2",
    ]
    assert tokens.invalidated == 1
    assert transport.stop_event.waits == [0.0]


# -- retries ------------------------------------------------------------------------------------


@responses.activate
def test_500_then_200_is_delivered_on_the_second_try():
    responses.add(responses.POST, URL, status=500, json={"code": "server", "message": "oops"})
    responses.add(responses.POST, URL, json={})
    retries = []
    make_transport().send(body_of({"type": "track"}), on_retry=lambda n, e: retries.append((n, e)))
    assert len(responses.calls) == 2
    assert responses.calls[0].request.body == responses.calls[1].request.body
    assert len(retries) == 1
    assert retries[0][0] == 1
    assert isinstance(retries[0][1], APIError)
    assert retries[0][1].status == 500


@responses.activate
def test_max_total_backoff_bounds_the_retries_of_a_batch():
    for _ in range(5):
        responses.add(responses.POST, URL, status=500)
    transport = Transport(KEY, HOST, retry=RetryPolicy(max_retries=10, max_total_backoff=0))
    with pytest.raises(APIError):
        transport.send(body_of({"type": "track"}))
    assert len(responses.calls) == 1  # no retry fits in a budget of 0 seconds


@responses.activate
def test_max_rate_limit_gives_up_on_a_429_wait_beyond_it():
    responses.add(responses.POST, URL, status=429, headers={"Retry-After": "120"})
    transport = Transport(KEY, HOST, retry=RetryPolicy(max_retries=10, max_rate_limit=60))
    transport.stop_event = RecordingEvent()
    with pytest.raises(APIError) as caught:
        transport.send(body_of({"type": "track"}))
    assert caught.value.status == 429
    assert len(responses.calls) == 1 and transport.stop_event.waits == []
    # Within the budget, the same answer is waited out and the batch delivered.
    responses.add(responses.POST, URL, status=429, headers={"Retry-After": "30"})
    responses.add(responses.POST, URL, json={})
    transport.send(body_of({"type": "track"}))
    assert transport.stop_event.waits == [30.0]


@responses.activate
def test_each_retry_says_which_try_it_is_as_analytics_python_does():
    for status in (500, 503):
        responses.add(responses.POST, URL, status=status)
    responses.add(responses.POST, URL, json={})
    transport = make_transport()
    transport.send(body_of({"type": "track"}))
    sent = [call.request.headers.get("X-Retry-Count") for call in responses.calls]
    assert sent == [None, "1", "2"]
    # The next batch starts again from its first try.
    responses.add(responses.POST, URL, json={})
    transport.send(body_of({"type": "track"}))
    assert "X-Retry-Count" not in responses.calls[3].request.headers


@responses.activate
@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retryable_statuses(status):
    responses.add(responses.POST, URL, status=status, body="busy")
    responses.add(responses.POST, URL, json={})
    make_transport().send(body_of({"type": "track"}))
    assert len(responses.calls) == 2


@responses.activate
def test_429_with_retry_after_zero_is_retried_at_once():
    responses.add(responses.POST, URL, status=429, headers={"Retry-After": "0"})
    responses.add(responses.POST, URL, json={})
    transport = make_transport()
    transport.stop_event = RecordingEvent()
    transport.send(body_of({"type": "track"}))
    assert len(responses.calls) == 2
    assert transport.stop_event.waits == [0.0]


@responses.activate
def test_retry_after_is_honoured_instead_of_backoff():
    responses.add(responses.POST, URL, status=503, headers={"Retry-After": "7"})
    responses.add(responses.POST, URL, status=429, headers={"Retry-After": "2.5"})
    responses.add(responses.POST, URL, json={})
    transport = make_transport()
    transport.stop_event = RecordingEvent()
    transport.send(body_of({"type": "track"}))
    assert transport.stop_event.waits == [7.0, 2.5]
    assert len(responses.calls) == 3


@responses.activate
def test_backoff_without_retry_after_follows_the_policy():
    for _ in range(4):
        responses.add(responses.POST, URL, status=500)
    responses.add(responses.POST, URL, json={})
    transport = Transport(KEY, HOST, retry=RetryPolicy(max_retries=5, base=0.01, cap=0.03))
    transport.stop_event = RecordingEvent()
    transport.send(body_of({"type": "track"}))
    waits = transport.stop_event.waits
    assert len(waits) == 4
    ceilings = [0.01, 0.02, 0.03, 0.03]  # doubling, then capped
    for wait, ceiling in zip(waits, ceilings):
        assert ceiling / 2 <= wait <= ceiling


def test_retry_policy_delay_bounds():
    policy = RetryPolicy(max_retries=10, base=0.5, cap=4.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (30, 4.0)]:
        for _ in range(20):
            assert ceiling / 2 <= policy.delay(attempt) <= ceiling


def test_parse_retry_after_seconds():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 12 ") == 12.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0


def test_parse_retry_after_http_date():
    now = 1_700_000_000.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(future, now=now) == pytest.approx(30.0)
    assert parse_retry_after(past, now=now) == 0.0


def test_parse_retry_after_http_date_against_the_clock():
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120)
    seconds = parse_retry_after(email.utils.format_datetime(when, usegmt=True))
    assert 100 <= seconds <= 121


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "Mon, 99 Foo", "nan", "12 seconds"])
def test_parse_retry_after_garbage_is_none(value):
    assert parse_retry_after(value) is None


def test_parse_retry_after_is_capped():
    assert parse_retry_after("86400") == RETRY_AFTER_CAP
    assert parse_retry_after("inf") == RETRY_AFTER_CAP
    now = 1_700_000_000.0
    far = email.utils.formatdate(now + 7 * 86400, usegmt=True)
    assert parse_retry_after(far, now=now) == RETRY_AFTER_CAP


@responses.activate
def test_garbage_retry_after_falls_back_to_backoff():
    responses.add(responses.POST, URL, status=503, headers={"Retry-After": "whenever"})
    responses.add(responses.POST, URL, json={})
    transport = make_transport()
    transport.stop_event = RecordingEvent()
    transport.send(body_of({"type": "track"}))
    assert len(transport.stop_event.waits) == 1
    assert 0.005 <= transport.stop_event.waits[0] <= 0.01


@responses.activate
def test_400_is_not_retried_and_raises_api_error_from_the_json_body():
    responses.add(
        responses.POST,
        URL,
        status=400,
        json={"code": "invalid_request", "message": "userId or anonymousId is required"},
    )
    with pytest.raises(APIError) as caught:
        make_transport().send(body_of({"type": "track"}))
    assert len(responses.calls) == 1
    error = caught.value
    assert error.status == 400
    assert error.code == "invalid_request"
    assert error.message == "userId or anonymousId is required"
    assert "invalid_request" in str(error) and "400" in str(error)


@responses.activate
@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_other_4xx_are_not_retried(status):
    responses.add(responses.POST, URL, status=status, body="no")
    responses.add(responses.POST, URL, json={})
    with pytest.raises(APIError) as caught:
        make_transport().send(body_of({"type": "track"}))
    assert caught.value.status == status
    assert len(responses.calls) == 1


@responses.activate
def test_api_error_from_a_non_json_body():
    responses.add(responses.POST, URL, status=413, body="Request Entity Too Large")
    with pytest.raises(APIError) as caught:
        make_transport().send(body_of({"type": "track"}))
    assert caught.value.status == 413
    assert caught.value.code == "request-failed"
    assert caught.value.message == "Request Entity Too Large"


@responses.activate
def test_network_error_is_retried_then_raised():
    for _ in range(3):
        responses.add(responses.POST, URL, body=requests.ConnectionError("connection refused"))
    retries = []
    with pytest.raises(requests.ConnectionError, match="connection refused"):
        make_transport(max_retries=2).send(
            body_of({"type": "track"}), on_retry=lambda n, e: retries.append(n)
        )
    assert len(responses.calls) == 3
    assert retries == [1, 2]


@responses.activate
def test_network_error_then_success():
    responses.add(responses.POST, URL, body=requests.ConnectionError("reset"))
    responses.add(responses.POST, URL, body=requests.Timeout("slow"))
    responses.add(responses.POST, URL, json={})
    make_transport().send(body_of({"type": "track"}))
    assert len(responses.calls) == 3


@responses.activate
@pytest.mark.parametrize("max_retries", [0, 1, 4])
def test_max_retries_caps_attempts(max_retries):
    responses.add(responses.POST, URL, status=500, json={"code": "down", "message": "down"})
    with pytest.raises(APIError) as caught:
        make_transport(max_retries=max_retries).send(body_of({"type": "track"}))
    assert caught.value.status == 500
    assert len(responses.calls) == max_retries + 1


@responses.activate
def test_deadline_stops_retrying():
    responses.add(responses.POST, URL, status=503, headers={"Retry-After": "60"})
    transport = make_transport(max_retries=10)
    transport.stop_event = RecordingEvent()
    with pytest.raises(APIError) as caught:
        transport.send(body_of({"type": "track"}), deadline=time.monotonic() + 5)
    assert caught.value.status == 503
    assert len(responses.calls) == 1
    assert transport.stop_event.waits == []  # gave up instead of waiting past the deadline


@responses.activate
def test_deadline_in_the_past_allows_only_one_try():
    responses.add(responses.POST, URL, status=500)
    with pytest.raises(APIError):
        make_transport(max_retries=10).send(body_of({}), deadline=time.monotonic() - 1)
    assert len(responses.calls) == 1


@responses.activate
def test_stop_event_already_set_stops_waiting():
    responses.add(responses.POST, URL, status=503, headers={"Retry-After": "60"})
    transport = make_transport(max_retries=10)
    transport.stop_event.set()
    with pytest.raises(APIError):
        transport.send(body_of({"type": "track"}))
    assert len(responses.calls) == 1


@responses.activate
def test_stop_event_set_from_another_thread_cuts_a_long_wait():
    responses.add(responses.POST, URL, status=503, headers={"Retry-After": "120"})
    transport = make_transport(max_retries=10)
    outcome = {}
    waiting = threading.Event()

    def on_retry(attempt, error):
        waiting.set()

    def run():
        try:
            transport.send(body_of({"type": "track"}), on_retry=on_retry)
        except BaseException as error:  # noqa: BLE001 - recorded for the assertion below
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert waiting.wait(5)
    transport.stop_event.set()
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), APIError)
    assert len(responses.calls) == 1


@responses.activate
def test_reset_forgets_the_stop_flag_and_sessions():
    responses.add(responses.POST, URL, json={})
    transport = make_transport()
    session = transport._session()
    transport.stop_event.set()
    transport.reset()
    assert not transport.stop_event.is_set()
    assert transport._session() is not session
    transport.send(body_of({"type": "track"}))
    assert len(responses.calls) == 1


# -- sessions and proxies -----------------------------------------------------------------------


def test_environment_proxies_resolved_once_per_session(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy.example.test:8080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    transport = Transport(KEY, "https://api.segment.io")
    session = transport._session()
    assert session.trust_env is False
    assert session.proxies.get("https") == "http://proxy.example.test:3128"
    # Later changes to the environment do not reach an existing session.
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example.test:1")
    assert transport._session() is session
    assert session.proxies.get("https") == "http://proxy.example.test:3128"


def test_explicit_proxies_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy.example.test:3128")
    transport = Transport(KEY, proxies={"https": "http://mine.example.test:9"})
    session = transport._session()
    assert session.proxies["https"] == "http://mine.example.test:9"
    assert session.trust_env is False


def test_no_proxy_in_the_environment_is_respected(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # No proxy applies to the URL, so the thread posts over its own keep-alive connection.
    session = Transport(KEY, "http://127.0.0.1:9999")._session()
    assert isinstance(session, KeepAliveSession)
    assert session.origin == ("http", "127.0.0.1", 9999)


def test_a_proxy_from_the_environment_keeps_requests(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.test:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = Transport(KEY, "http://127.0.0.1:9999")._session()
    assert isinstance(session, requests.Session)
    assert session.proxies["http"] == "http://proxy.example.test:3128"
    assert session.trust_env is False


def test_ca_bundle_from_the_environment_is_kept(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not really a certificate")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = Transport(KEY)._session()
    assert session.verify == str(bundle)


@responses.activate
def test_requests_does_not_consult_the_environment_per_post(monkeypatch):
    responses.add(responses.POST, URL, json={})
    transport = make_transport()
    transport._session()  # the one lookup happens here
    lookups = []

    def counting(*args, **kwargs):
        lookups.append(args)
        return {}

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    monkeypatch.setattr(requests.utils, "get_environ_proxies", counting)
    for _ in range(3):
        transport.send(body_of({"type": "track"}))
    assert len(responses.calls) == 3
    assert lookups == []


def test_each_thread_gets_its_own_session():
    transport = make_transport()
    sessions = []
    thread = threading.Thread(target=lambda: sessions.append(transport._session()))
    thread.start()
    thread.join()
    mine = transport._session()
    assert sessions[0] is not mine
    assert transport._session() is mine


# -- secrets ------------------------------------------------------------------------------------


def test_write_key_never_in_repr():
    transport = Transport(KEY, HOST, gzip=True)
    encoded = base64.b64encode(f"{KEY}:".encode()).decode()
    for text in (repr(transport), str(transport)):
        assert KEY not in text
        assert encoded not in text
        assert HOST in text


def test_write_key_never_in_client_repr():
    client = analytics_core.Client(KEY, host=HOST)
    assert KEY not in repr(client)
    assert KEY not in repr(client.transport)


@responses.activate
def test_a_second_401_with_a_fresh_token_is_final():
    class Tokens:
        invalidated = 0

        def get_token(self):
            return "token"

        def invalidate(self):
            self.invalidated += 1

    tokens = Tokens()
    responses.add(responses.POST, URL, status=401, json={"code": "unauthorized", "message": "no"})
    transport = make_transport(max_retries=5, token_provider=tokens)
    transport.stop_event = RecordingEvent()
    with pytest.raises(APIError) as caught:
        transport.send(body_of({"type": "track"}))
    assert caught.value.status == 401
    assert len(responses.calls) == 2
    assert tokens.invalidated == 1
