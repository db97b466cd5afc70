"""The local collector: the Segment HTTP Tracking API contract, its read API and fault plans."""

import gzip
import http.client
import json
import socket
import time

import pytest
import requests

from analytics_core.collector import MAX_BODY_BYTES, MAX_MESSAGE_BYTES, Collector
from analytics_core.collector.access import write_key_fingerprint as fingerprint

from .support.collector_process import CollectorProcess


def _track(n: int = 0, **extra):
    message = {"type": "track", "event": f"Event {n}", "userId": f"user-{n}", "messageId": f"m{n}"}
    message.update(extra)
    return message


@pytest.fixture
def server():
    with Collector(faults=True) as collector:
        yield collector


@pytest.fixture
def session():
    with requests.Session() as s:
        s.trust_env = False  # never route 127.0.0.1 through an environment proxy
        yield s


def _raw(collector: Collector, data: bytes, shut_write: bool = False) -> bytes:
    """Send raw bytes on a fresh socket and return everything the server answers."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and shut_write is False and _complete(chunks):
                break
        return b"".join(chunks)


def _complete(chunks) -> bool:
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def _status_and_json(response: bytes):
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


# -- accepting batches -------------------------------------------------------------------------


def test_batch_with_basic_auth_is_stored(server, session):
    batch = [_track(1), {"type": "identify", "anonymousId": "anon-1", "traits": {"a": 1}}]
    response = session.post(
        server.url + "/v1/batch",
        json={"batch": batch, "sentAt": "2024-01-01T00:00:00Z"},
        auth=("KEY", ""),
    )
    assert response.status_code == 200
    assert response.json() == {"success": True}
    events = server.events(order="asc")
    assert [e["type"] for e in events] == ["track", "identify"]
    assert events[0]["event"] == "Event 1"
    assert events[0]["_write_key_fingerprint"] == fingerprint("KEY")
    assert events[1]["traits"] == {"a": 1}
    assert events[0]["_id"] < events[1]["_id"] and events[0]["_received_at"].endswith("+00:00")
    assert server.stats() == {"requests": 1, "batches": 1, "messages": 2, "rejected": 0}


def test_write_key_from_the_body(server, session):
    response = session.post(server.url + "/v1/batch", json={"batch": [_track()], "writeKey": "BK"})
    assert response.status_code == 200
    assert server.events()[0]["_write_key_fingerprint"] == fingerprint("BK")


def test_gzip_body(server, session):
    body = gzip.compress(json.dumps({"batch": [_track(1), _track(2)]}).encode())
    response = session.post(
        server.url + "/v1/batch",
        data=body,
        auth=("KEY", ""),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert {e["event"] for e in server.events()} == {"Event 1", "Event 2"}


def test_pretty_printed_batch_is_parsed_and_stored_as_sent(server, session):
    messages = [_track(1, properties={"name": "Zoë \U0001f600"}), _track(2)]
    body = json.dumps({"writeKey": "K", "batch": messages}, indent=2, ensure_ascii=True)
    response = session.post(server.url + "/v1/batch", data=body.encode())
    assert response.status_code == 200
    stored = server.events(order="asc")
    assert [{k: v for k, v in e.items() if not k.startswith("_")} for e in stored] == messages


def test_chunked_body(server, session):
    payload = json.dumps({"batch": [_track(i) for i in range(50)], "writeKey": "K"}).encode()
    parts = (payload[i : i + 1000] for i in range(0, len(payload), 1000))
    response = session.post(server.url + "/v1/batch", data=parts)
    assert response.status_code == 200
    assert len(server.events()) == 50


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"json": {"batch": [_track()]}}, "missing-write-key"),
        ({"data": b"{not json", "auth": ("K", "")}, "invalid-json"),
        ({"json": {"batch": {"a": 1}}, "auth": ("K", "")}, "invalid-batch"),
        ({"json": {"batch": [_track(), 5]}, "auth": ("K", "")}, "invalid-message"),
        (
            {"json": {"batch": [_track(), {"event": "x", "userId": "u"}]}, "auth": ("K", "")},
            "invalid-type",
        ),
        (
            {"json": {"batch": [_track(), {"type": "track", "event": "E"}]}, "auth": ("K", "")},
            "missing-user-id",
        ),
        (
            {"json": {"batch": [{"type": "track", "userId": "u"}]}, "auth": ("K", "")},
            "missing-event",
        ),
        (
            {"json": {"batch": [{"type": "alias", "userId": "u"}]}, "auth": ("K", "")},
            "missing-previous-id",
        ),
        (
            {
                "json": {"batch": [{"type": "alias", "anonymousId": "a", "previousId": "p"}]},
                "auth": ("K", ""),
            },
            "missing-user-id",
        ),
        (
            {
                "json": {"batch": [_track(), _track(properties={"x": "y" * MAX_MESSAGE_BYTES})]},
                "auth": ("K", ""),
            },
            "message-too-large",
        ),
        ({"data": b"{" + b" " * MAX_BODY_BYTES + b"}", "auth": ("K", "")}, "body-too-large"),
        (
            {
                "data": gzip.compress(b" " * (MAX_BODY_BYTES + 10)),
                "auth": ("K", ""),
                "headers": {"Content-Encoding": "gzip"},
            },
            "body-too-large",
        ),
        (
            {"data": b"not gzip", "auth": ("K", ""), "headers": {"Content-Encoding": "gzip"}},
            "invalid-gzip",
        ),
        (
            {"json": {"batch": []}, "headers": {"Authorization": "Basic !!!"}},
            "invalid-authorization",
        ),
    ],
)
def test_bad_requests_get_400_and_store_nothing(server, session, kwargs, code):
    response = session.post(server.url + "/v1/batch", **kwargs)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert server.events() == []
    assert server.stats()["rejected"] == 1
    # The connection (or a new one) still works afterwards.
    ok = session.post(server.url + "/v1/batch", json={"batch": [_track()]}, auth=("K", ""))
    assert ok.status_code == 200


def test_wrong_write_key_gets_401_when_a_key_is_configured(session):
    with Collector(write_key="RIGHT") as collector:
        wrong = session.post(
            collector.url + "/v1/batch", json={"batch": [_track()]}, auth=("WRONG", "")
        )
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid-write-key"
        assert collector.events() == []
        right = session.post(
            collector.url + "/v1/batch", json={"batch": [_track()], "writeKey": "RIGHT"}
        )
        assert right.status_code == 200
        assert len(collector.events()) == 1


@pytest.mark.parametrize(
    "kind, message",
    [
        ("track", {"event": "Clicked", "userId": "u"}),
        ("identify", {"userId": "u", "traits": {"email": "a@b.c"}}),
        ("page", {"anonymousId": "a", "name": "Home"}),
        ("screen", {"userId": 42, "name": "Main"}),
        ("group", {"userId": "u", "groupId": "g"}),
        ("alias", {"userId": "new", "previousId": "old"}),
    ],
)
def test_single_call_endpoints(server, session, kind, message):
    response = session.post(server.url + f"/v1/{kind}", json=dict(message, writeKey="K"))
    assert response.status_code == 200, response.text
    (stored,) = server.events()
    assert stored["type"] == kind and stored["_write_key_fingerprint"] == fingerprint("K")
    assert "writeKey" not in stored  # auth, not data
    assert server.events(type=kind) == [stored]


def test_single_call_rejects_a_mismatched_type(server, session):
    response = session.post(
        server.url + "/v1/track", json={"type": "identify", "userId": "u", "writeKey": "K"}
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid-type"


# -- reading back --------------------------------------------------------------------------


def test_read_api_filters_and_clear(server, session):
    batch = [_track(i, userId="even" if i % 2 == 0 else "odd") for i in range(6)]
    session.post(server.url + "/v1/batch", json={"batch": batch}, auth=("K", ""))
    session.post(server.url + "/v1/batch", json={"batch": [_track(9)]}, auth=("OTHER", ""))
    get = session.get(server.url + "/v1/events").json()
    assert [e["event"] for e in get][:2] == ["Event 9", "Event 5"]  # newest first
    assert len(session.get(server.url + "/v1/events", params={"user_id": "even"}).json()) == 3
    assert len(session.get(server.url + "/v1/events", params={"write_key": "OTHER"}).json()) == 1
    assert len(session.get(server.url + "/v1/events", params={"limit": 2}).json()) == 2
    after = session.get(server.url + "/v1/events", params={"after_id": get[1]["_id"]}).json()
    assert [e["event"] for e in after] == ["Event 9"]
    assert session.get(server.url + "/v1/events", params={"nope": 1}).status_code == 400
    assert session.get(server.url + "/v1/stats").json()["messages"] == 7
    assert session.delete(server.url + "/v1/events").status_code == 200
    assert server.events() == []
    assert server.stats() == {"requests": 0, "batches": 0, "messages": 0, "rejected": 0}


# -- faults --------------------------------------------------------------------------------


def test_fault_plan_500_then_200(server, session):
    plan = [{"status": 500, "retry_after": "1", "times": 2}]
    assert session.post(server.url + "/_faults", json=plan).status_code == 200
    body = {"batch": [_track()], "writeKey": "K"}
    first = session.post(server.url + "/v1/batch", json=body)
    assert first.status_code == 500 and first.headers["Retry-After"] == "1"
    assert session.get(server.url + "/_faults").json()[0]["times"] == 1
    assert session.post(server.url + "/v1/batch", json=body).status_code == 500
    assert server.events() == []  # a failed batch is not stored
    assert session.get(server.url + "/_faults").json() == []
    assert session.post(server.url + "/v1/batch", json=body).status_code == 200
    assert len(server.events()) == 1


def test_fault_delay_stores_then_answers_late(server, session):
    session.post(server.url + "/_faults", json=[{"status": 200, "delay": 1.0}])
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.post(
            server.url + "/v1/batch", json={"batch": [_track()], "writeKey": "K"}, timeout=0.3
        )
    assert len(server.events()) == 1  # stored before the late answer: a resend duplicates it


def test_delete_faults_and_invalid_plans(server, session):
    session.post(server.url + "/_faults", json=[{"status": 503}])
    assert session.delete(server.url + "/_faults").status_code == 200
    assert (
        session.post(
            server.url + "/v1/track", json={"event": "E", "userId": "u", "writeKey": "K"}
        ).status_code
        == 200
    )
    bad = session.post(server.url + "/_faults", json=[{"status": "oops"}])
    assert bad.status_code == 400 and bad.json()["code"] == "invalid-fault"


def test_faults_api_is_off_by_default(session):
    with Collector() as collector:
        assert session.post(collector.url + "/_faults", json=[{"status": 500}]).status_code == 404


# -- hostile clients and connections -------------------------------------------------------


@pytest.mark.parametrize(
    "data, shut_write",
    [
        (b"\x00\xff\xfe garbage \r\n\r\n", False),
        (
            b'POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"batch"',
            True,
        ),
        (
            b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 99999999999999\r\n\r\n{}",
            False,
        ),
        (b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", False),
        (b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", False),
        (
            b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            False,
        ),
        (
            b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 4\r\n\r\n\xff\xfe\x00\x01",
            False,
        ),
    ],
)
def test_hostile_requests_get_400_and_the_server_survives(server, session, data, shut_write):
    status, body = _status_and_json(_raw(server, data, shut_write))
    assert status == 400 and body["code"]
    assert server.events() == []
    ok = session.post(server.url + "/v1/batch", json={"batch": [_track()]}, auth=("K", ""))
    assert ok.status_code == 200


def test_a_malformed_header_line_gets_400_and_closes(server):
    # The email parser http.server used would silently drop this line and every header after
    # it (Content-Length included) and then read the body as the next request.
    body = json.dumps({"batch": [_track()], "writeKey": "K"}).encode()
    request = (
        b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: 1\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    response = _raw(server, request)
    status, payload = _status_and_json(response)
    assert status == 400 and payload["code"] == "bad-request"
    assert b"\r\nConnection: close\r\n" in response
    assert server.events() == []


def test_answer_head_is_the_same_as_http_servers(server):
    body = json.dumps({"batch": [_track()], "writeKey": "K"}).encode()
    request = b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(
        body
    )
    head, _, payload = _raw(server, request + body).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert lines[1] == "Server: analytics-core-collector"
    assert lines[2].startswith("Date: ") and lines[2].endswith(" GMT")
    assert lines[3:] == [
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        "X-Content-Type-Options: nosniff",
    ]
    assert json.loads(payload) == {"success": True}


def test_header_names_ignore_case(server):
    body = gzip.compress(json.dumps({"batch": [_track(7)]}).encode())
    request = (
        b"POST /v1/batch HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ENCODING: GZIP\r\n"
        b"AUTHORIZATION: Basic S0VZOg==\r\n"
        b"content-length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    )
    status, payload = _status_and_json(_raw(server, request))
    assert (status, payload) == (200, {"success": True})
    (stored,) = server.events()
    assert stored["event"] == "Event 7" and stored["_write_key_fingerprint"] == fingerprint("KEY")


def test_a_large_batch_is_stored_whole_in_order_with_one_received_at(server, session):
    batch = [{"type": "track", "event": f"E{i}", "userId": str(i)} for i in range(777)]
    response = session.post(server.url + "/v1/batch", json={"batch": batch}, auth=("K", ""))
    assert response.status_code == 200
    stored = server.events(order="asc", limit=0)
    assert [event["event"] for event in stored] == [f"E{i}" for i in range(777)]
    assert len({event["_received_at"] for event in stored}) == 1
    assert server.stats() == {"requests": 1, "batches": 1, "messages": 777, "rejected": 0}


def test_a_nested_batch_key_before_the_real_one(server, session):
    messages = [_track(1), _track(2, properties={"batch": [{"x": 1}]})]
    body = {"context": {"batch": [{"type": "track"}]}, "batch": messages, "writeKey": "K"}
    compact = json.dumps(body, separators=(",", ":")).encode()
    assert compact.index(b'"batch":[') < compact.index(b'"batch":[{"type":"track","event"')
    assert session.post(server.url + "/v1/batch", data=compact).status_code == 200
    stored = server.events(order="asc")
    assert [{k: v for k, v in e.items() if not k.startswith("_")} for e in stored] == messages


def test_http_versions_and_request_lines(server):
    def status_of(request: bytes) -> int:
        return _status_and_json(_raw(server, request))[0]

    assert status_of(b"GET /v1/stats HTTP/1.0\r\n\r\n") == 200
    assert status_of(b"GET / HTTP/2.0\r\n\r\n") == 505
    assert status_of(b"GET / HTTP/1.x\r\n\r\n") == 400
    assert status_of(b"GET / HTTP/1.1 extra\r\n\r\n") == 400
    assert status_of(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n") == 431
    assert status_of(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n") == 431
    # HTTP/0.9: the body alone, no status line.
    assert _raw(server, b"GET /\r\n", shut_write=True).startswith(b'{"service"')


def test_keep_alive_reuses_one_connection(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"batch": [_track()], "writeKey": "K"})
    sockets = set()
    for _ in range(5):
        connection.request("POST", "/v1/batch", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and not response.will_close
        response.read()
        sockets.add(id(connection.sock))
    connection.close()
    assert len(sockets) == 1
    assert server.stats()["messages"] == 5


def test_absorbs_many_batches_on_one_session(server, session):
    bodies = [
        json.dumps({"batch": [_track(b * 100 + i) for i in range(100)], "writeKey": "K"})
        for b in range(100)
    ]
    started = time.perf_counter()
    for body in bodies:
        assert session.post(server.url + "/v1/batch", data=body).status_code == 200
    elapsed = time.perf_counter() - started
    assert server.stats()["messages"] == 10_000
    assert elapsed < 10  # generous: a few thousand messages/s would already pass


# -- the real process ----------------------------------------------------------------------


def test_process_restart_with_a_file_db_keeps_events(tmp_path, session):
    db = str(tmp_path / "events.db")
    with CollectorProcess(db=db) as first:
        response = session.post(
            first.url + "/v1/batch", json={"batch": [_track(1), _track(2)], "writeKey": "K"}
        )
        assert response.status_code == 200
        first.wait_for(2)
    assert first.process.returncode == 0  # SIGTERM is a clean stop
    with CollectorProcess(db=db) as second:
        assert {e["event"] for e in second.events()} == {"Event 1", "Event 2"}
        assert second.stats()["messages"] == 2


def test_process_fault_plan_and_wait_for(session):
    with CollectorProcess() as process:
        process.set_faults([{"status": 429, "retry_after": "0"}])
        body = {"batch": [_track(1)], "writeKey": "K"}
        assert session.post(process.url + "/v1/batch", json=body).status_code == 429
        assert session.post(process.url + "/v1/batch", json=body).status_code == 200
        events = process.wait_for(1, timeout=5)
        assert [e["event"] for e in events] == ["Event 1"]
        with pytest.raises(AssertionError):
            process.wait_for(2, timeout=0.2)
        process.clear()
        assert process.stats()["messages"] == 0
