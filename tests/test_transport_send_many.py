"""``Transport.send_many``: several batches in flight on several keep-alive connections."""

import collections
import gzip
import threading

import pytest
import requests
import responses

from analytics_core import APIError
from analytics_core.collector import Collector
from analytics_core.transport import Transport

from .test_transport_keepalive import (
    KEY,
    RecordingEvent,
    Reply,
    ScriptedServer,
    fast_retry,
    transport_for,
)


def bodies(*names: str):
    return [b'{"batch":[],"writeKey":"K","name":"' + name.encode() + b'"}' for name in names]


@pytest.fixture
def serve():
    servers = []

    def start(*replies, **kwargs):
        server = ScriptedServer(list(replies), **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_every_request_is_written_before_any_answer_is_read(serve):
    # The server answers nobody until it holds all three requests: sent one after the other,
    # the first would wait for an answer that never comes and the barrier would break.
    barrier = threading.Barrier(3, timeout=5)

    def hold(seen):
        barrier.wait()
        return Reply()

    server = serve(reply_for=hold)
    transport = transport_for(server.url, max_retries=0)
    assert transport.send_many(bodies("a", "b", "c")) == [None, None, None]
    assert sorted(seen.body for seen in server.requests) == sorted(bodies("a", "b", "c"))
    assert len({seen.connection for seen in server.requests}) == 3


def test_connections_are_kept_and_reused(serve):
    server = serve()
    transport = transport_for(server.url)
    for _ in range(3):
        assert transport.send_many(bodies("a", "b", "c", "d")) == [None] * 4
    assert server.connections == 4
    transport.send(bodies("e")[0])  # send() uses the first of them
    assert server.connections == 4
    assert len(server.requests) == 13


def test_one_refused_body_does_not_fail_the_others(serve):
    def judge(seen):
        if b'"refuse"' in seen.body:
            return Reply(400, b'{"code": "invalid", "message": "no"}')
        return Reply()

    server = serve(reply_for=judge)
    results = transport_for(server.url).send_many(bodies("ok", "refuse", "fine"))
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], APIError)
    assert (results[1].status, results[1].code) == (400, "invalid")
    assert len(server.requests) == 3  # a 400 is final: not retried


def test_retryable_failures_are_retried_one_by_one(serve):
    tries = collections.Counter()

    def flaky(seen):
        tries[seen.body] += 1
        first = tries[seen.body] == 1
        if first and b'"busy"' in seen.body:
            return Reply(503, b"", [("Retry-After", "0")])
        if first and b'"gone"' in seen.body:
            return Reply(drop=True)  # a new connection dropped: a network error, retried
        return Reply()

    server = serve(reply_for=flaky)
    transport = transport_for(server.url)
    transport.stop_event = RecordingEvent()
    retries = []
    results = transport.send_many(
        bodies("ok", "busy", "gone"), on_retry=lambda n, e: retries.append((n, type(e)))
    )
    assert results == [None, None, None]
    assert sorted(retries, key=str) == sorted(
        [(1, APIError), (1, requests.ConnectionError)], key=str
    )
    assert sorted(tries.values()) == [1, 2, 2]


def test_final_errors_after_max_retries(serve):
    server = serve(reply_for=lambda seen: Reply(500, b'{"code": "down", "message": "x"}'))
    results = transport_for(server.url, max_retries=1).send_many(bodies("a", "b"))
    assert [(error.status, error.code) for error in results] == [(500, "down"), (500, "down")]
    assert len(server.requests) == 4


def test_idle_connections_closed_by_the_server_are_reopened_without_retries(serve):
    server = serve(reply_for=lambda seen: Reply(close=True))
    transport = transport_for(server.url)
    retries = []
    for _ in range(3):
        results = transport.send_many(bodies("a", "b"), on_retry=lambda n, e: retries.append(e))
        assert results == [None, None]
    assert retries == []
    assert len(server.requests) == 6
    assert server.connections == 6  # every request once, each on a new connection


def test_a_refused_connection_is_reported_per_body():
    with Collector() as collector:
        url = collector.url
    transport = Transport(KEY, url, retry=fast_retry(1))
    results = transport.send_many(bodies("a", "b"))
    assert all(isinstance(error, requests.ConnectionError) for error in results)


def test_one_body_and_no_body(serve):
    server = serve()
    transport = transport_for(server.url)
    assert transport.send_many([]) == []
    assert transport.send_many(bodies("solo")) == [None]
    assert len(server.requests) == 1


def test_gzip_and_auth_on_every_body(serve):
    server = serve()
    transport_for(server.url, gzip=True).send_many(bodies("a", "b", "c"))
    assert sorted(gzip.decompress(seen.body) for seen in server.requests) == sorted(
        bodies("a", "b", "c")
    )
    assert {seen.headers["authorization"][:6] for seen in server.requests} == {"Basic "}
    assert {seen.headers["content-encoding"] for seen in server.requests} == {"gzip"}


def test_with_a_hooked_requests_bodies_go_one_after_the_other(serve):
    server = serve()
    transport = transport_for(server.url)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, server.url + "/v1/batch", json={})
        mock.add(responses.POST, server.url + "/v1/batch", status=400, json={"code": "x"})
        assert transport._sessions(2) is None
        results = transport.send_many(bodies("a", "b"))
        assert results[0] is None and isinstance(results[1], APIError)
        assert [call.request.body for call in mock.calls] == bodies("a", "b")
    assert server.requests == []


def test_the_collector_stores_every_body_of_a_send_many():
    with Collector() as collector:
        transport = transport_for(collector.url)
        batch = [
            b'{"batch":[{"type":"track","event":"E%d","userId":"u"}],"writeKey":"K"}' % index
            for index in range(6)
        ]
        assert transport.send_many(batch) == [None] * 6
        assert collector.stats()["messages"] == 6
        assert {event["event"] for event in collector.events()} == {f"E{i}" for i in range(6)}
