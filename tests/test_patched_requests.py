"""A test suite that patches ``requests`` intercepts every batch, as it did with analytics-python.

Batches normally go over analytics_core's own keep-alive connection, which ``requests`` never
sees. Users' tests (and analytics-python's own) patch ``requests`` in several ways and expect
nothing to leave the process. Each case here runs against a real collector: while the patch is
in place the double sees the batch and the collector receives nothing; once it is lifted the
next batch goes out over the network again.
"""

import functools
import json
from unittest import mock

import pytest
import requests
import requests.adapters

from analytics_core import Client, requests_hooks

WRITE_KEY = "patched-requests-key"


@pytest.fixture
def client(collector):
    made = Client(WRITE_KEY, host=collector.url, upload_interval=30, max_retries=2)
    made.transport.retry.base = 0.01
    yield made
    made.shutdown(timeout=2)


def batch_of(call):
    """The batch a double was called with, from its ``data`` keyword."""
    return json.loads(call.kwargs["data"])["batch"]


def delivers_again(client, collector):
    ok, sent = client.track("u", "After The Patch")
    assert ok and client.flush(timeout=10)
    assert [event["messageId"] for event in collector.events(limit=0)] == [sent["messageId"]]


PATCHES = {
    "Session.post": lambda: mock.patch.object(requests.Session, "post"),
    "Session.request": lambda: mock.patch.object(requests.Session, "request"),
    "requests.post": lambda: mock.patch("requests.post"),
}


@pytest.mark.parametrize("target", sorted(PATCHES))
def test_a_mocked_post_or_request_sees_every_batch_and_nothing_leaks(client, collector, target):
    with PATCHES[target]() as double:
        sent = [client.track("u", "Mocked", {"i": i})[1] for i in range(3)]
        assert client.flush(timeout=10)
        assert double.called
        call = double.call_args
        assert call.args[-1].endswith("/v1/batch") or call.kwargs.get("url", "").endswith(
            "/v1/batch"
        )
        body = call.kwargs["data"]
        assert [m["messageId"] for m in json.loads(body)["batch"]] == [m["messageId"] for m in sent]
    assert collector.events(limit=0) == []  # the double answered: nothing went out
    assert client.stats()["delivered"] == 3 and client.stats()["failed"] == 0
    delivers_again(client, collector)


def test_a_mocked_session_send_sees_the_prepared_request(client, collector):
    with mock.patch.object(requests.Session, "send") as double:
        _, sent = client.track("u", "Mocked Send")
        assert client.flush(timeout=10)
        (prepared,) = [call.args[0] for call in double.call_args_list]
        assert json.loads(prepared.body)["batch"][0]["messageId"] == sent["messageId"]
        assert prepared.headers["Authorization"].startswith("Basic ")
    assert collector.events(limit=0) == []
    delivers_again(client, collector)


def test_a_replaced_adapter_send_sees_the_batch(client, collector):
    seen = []

    def answer(adapter, request, **kwargs):  # what a hand-written stub of a test looks like
        seen.append(json.loads(request.body)["batch"])
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.request = request
        return response

    with mock.patch.object(requests.adapters.HTTPAdapter, "send", answer):
        _, sent = client.track("u", "Stubbed Adapter")
        assert client.flush(timeout=10)
    assert [batch[0]["messageId"] for batch in seen] == [sent["messageId"]]
    assert collector.events(limit=0) == []
    delivers_again(client, collector)


def test_a_replaced_session_class_is_used(client, collector):
    with mock.patch("requests.Session") as session_class:
        _, sent = client.track("u", "Mocked Session Class")
        assert client.flush(timeout=10)
        post = session_class.return_value.post
        assert batch_of(post.call_args)[0]["messageId"] == sent["messageId"]
    assert collector.events(limit=0) == []
    delivers_again(client, collector)


def test_a_status_the_test_gives_is_honoured(client, collector):
    reports = []
    client.on_error = lambda error, items: reports.append((error, items))
    failing = mock.Mock(status_code=500, reason="Internal Server Error", text="down", headers={})
    with mock.patch.object(requests.Session, "post", return_value=failing) as double:
        _, sent = client.track("u", "Stubbed 500")
        assert client.flush(timeout=10)
        assert double.call_count == 3  # the first try and max_retries=2 more
    refused = mock.Mock(status_code=400, headers={}, json=lambda: {"code": "bad", "message": "no"})
    refused.text = None
    with mock.patch.object(requests.Session, "post", return_value=refused) as double:
        client.track("u", "Stubbed 400")
        assert client.flush(timeout=10)
        assert double.call_count == 1  # a 400 is not retried
    assert [items[0]["messageId"] for _, items in reports][0] == sent["messageId"]
    assert [(error.status, error.code) for error, _ in reports] == [
        (500, "request-failed"),
        (400, "bad"),
    ]
    assert collector.events(limit=0) == []


def test_sync_mode_goes_through_the_patch_too(collector):
    client = Client(WRITE_KEY, host=collector.url, sync_mode=True)
    with mock.patch.object(requests.Session, "post") as double:
        ok, sent = client.track("u", "Sync Mocked")
        assert ok is True
        assert batch_of(double.call_args)[0]["messageId"] == sent["messageId"]
    assert collector.events(limit=0) == []


def test_responses_still_intercepts(client, collector):
    responses = pytest.importorskip("responses")
    with responses.RequestsMock() as mocked:
        mocked.add(responses.POST, client.transport.url, json={})
        _, sent = client.track("u", "Via Responses")
        assert client.flush(timeout=10)
        assert (
            json.loads(mocked.calls[0].request.body)["batch"][0]["messageId"] == (sent["messageId"])
        )
    assert collector.events(limit=0) == []


def test_instrumentation_that_wraps_requests_keeps_the_fast_connection(client, collector):
    # APM agents (OpenTelemetry, ddtrace) wrap Session.send with functools.wraps or wrapt and
    # keep requests' own module name: that is not a test's double, so batches keep the
    # keep-alive connection (and the collector gets them).
    original = requests.Session.send
    wrapped_calls = []

    @functools.wraps(original)
    def traced_send(self, request, **kwargs):
        wrapped_calls.append(request.url)
        return original(self, request, **kwargs)

    with mock.patch.object(requests.Session, "send", traced_send):
        assert not requests_hooks.requests_patched()
        _, sent = client.track("u", "Instrumented")
        assert client.flush(timeout=10)
    assert [event["messageId"] for event in collector.events(limit=0)] == [sent["messageId"]]
    assert not [url for url in wrapped_calls if url.endswith("/v1/batch")]


def test_what_counts_as_patched():
    assert not requests_hooks.requests_patched()
    for patch in PATCHES.values():
        with patch():
            assert requests_hooks.requests_patched()
    with mock.patch.object(requests.adapters.HTTPAdapter, "send"):
        assert requests_hooks.requests_patched()
    with mock.patch.object(requests.Session, "get_adapter"):  # requests-mock's hook
        assert requests_hooks.requests_patched()
    assert not requests_hooks.requests_patched()
