"""analytics_asgi: from a raw ASGI scope to the request context, whatever the client sent.

Scopes are built by hand here, as a server would, so that the bytes a real HTTP client refuses to
send (non-UTF-8 headers, forged forwarding headers, missing keys) can be tried. The inner app
records the context current while it runs and tracks an event through the real client.
"""

import asyncio
import ipaddress
import logging

import pytest
from analytics_asgi import SegmentMiddleware, user_id_from_scope_user
from analytics_asgi.scope_context import context_for_scope
from hypothesis import given, settings
from hypothesis import strategies as st

import analytics_core
from analytics_core.context import current_request_context

from .asgi_apps.support import Clients, call_http, http_scope

KEY = "asgi-scope-key"


@pytest.fixture
def clients(collector):
    with Clients(collector.url) as made:
        yield made


class Recorder:
    """A raw ASGI app that remembers each request's context and tracks one event."""

    def __init__(self, track: bool = True) -> None:
        self.contexts = []
        self.track = track

    async def __call__(self, scope, receive, send):
        context = current_request_context()
        self.contexts.append(context)
        if self.track:
            analytics_core.track(event="Seen", anonymous_id="fixed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    @property
    def last(self) -> dict:
        return self.contexts[-1].context


def run(app, scope) -> list:
    """Send ``scope`` through ``app``; assert the app answered 200."""
    sent = asyncio.run(call_http(app, scope))
    assert sent[0]["status"] == 200
    return sent


def middleware(**options):
    recorder = Recorder()
    options.setdefault("send", False)  # these tests read the context; the wire is tested below
    options.setdefault("write_key", KEY)
    return SegmentMiddleware(recorder, **options), recorder


@pytest.mark.parametrize(
    ("trusted_proxies", "header", "headers", "expected"),
    [
        # No trusted proxy: whatever the headers claim, the socket peer is the client.
        (0, "X-Forwarded-For", [(b"x-forwarded-for", b"6.6.6.6")], "198.51.100.1"),
        (0, "Forwarded", [(b"forwarded", b"for=6.6.6.6")], "198.51.100.1"),
        # One proxy: it appended the peer it saw, the right-most entry; the rest is forgeable.
        (1, "X-Forwarded-For", [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")], "203.0.113.9"),
        (
            2,
            "X-Forwarded-For",
            [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9, 10.0.0.2")],
            "203.0.113.9",
        ),
        (
            1,
            "Forwarded",
            [(b"forwarded", b'for=6.6.6.6, for="[2001:db8::17]:4711";proto=https')],
            "2001:db8::17",
        ),
        # Only the header the proxy writes is read: the client's own other one is ignored.
        (
            1,
            "Forwarded",
            [(b"x-forwarded-for", b"6.6.6.6"), (b"forwarded", b"for=203.0.113.9")],
            "203.0.113.9",
        ),
        # Proxies promised, no header sent: the peer is the best there is.
        (1, "X-Forwarded-For", [], "198.51.100.1"),
        # A trusted entry that is no address: the peer, never a guess.
        (1, "X-Forwarded-For", [(b"x-forwarded-for", b"unknown")], "198.51.100.1"),
        # The client's unbalanced quote does not swallow what the proxy appended.
        (1, "X-Forwarded-For", [(b"x-forwarded-for", b'"[6.6.6.6], 203.0.113.9')], "203.0.113.9"),
        (1, "Forwarded", [(b"forwarded", b'for="[6.6.6.6], for=203.0.113.9')], "203.0.113.9"),
        # A zone id carries text of the client's choosing: refused.
        (1, "X-Forwarded-For", [(b"x-forwarded-for", b"::1%<img src=x>")], "198.51.100.1"),
    ],
)
def test_client_ip_and_trusted_proxies(trusted_proxies, header, headers, expected):
    app, recorder = middleware(trusted_proxies=trusted_proxies, forwarded_header=header)
    run(app, http_scope(headers=[(b"host", b"shop.test"), *headers]))
    assert recorder.last.get("ip") == expected


def test_repeated_forwarding_headers_are_joined_in_order():
    app, recorder = middleware(trusted_proxies=2)
    headers = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"), (b"x-forwarded-for", b"10.0.0.2")]
    run(app, http_scope(headers=headers))
    assert recorder.last["ip"] == "203.0.113.9"


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        (("2001:db8::5", 1), "2001:db8::5"),
        (("::ffff:192.0.2.44", 1), "192.0.2.44"),  # a dual-stack socket's IPv4 client
        (None, None),  # a unix socket, or a server that does not know
        (("not-an-ip", 1), None),  # Starlette's TestClient says "testclient"
    ],
)
def test_the_socket_peer(peer, expected):
    app, recorder = middleware()
    run(app, http_scope(client=peer))
    assert recorder.last.get("ip") == expected


def test_url_from_the_server_address_root_path_and_scheme():
    app, recorder = middleware()
    # No Host header (HTTP/1.0): the address the server listens on.
    run(app, http_scope("/a", headers=[], server=("10.1.2.3", 8080), scheme="https"))
    assert recorder.last["page"]["url"] == "https://10.1.2.3:8080/a"
    run(app, http_scope("/a", headers=[], server=("10.1.2.3", 443), scheme="https"))
    assert recorder.last["page"]["url"] == "https://10.1.2.3/a"
    run(app, http_scope("/a", headers=[], server=("::1", 80)))
    assert recorder.last["page"]["url"] == "http://[::1]/a"
    # A unix socket has no URL to show; the path still counts.
    run(app, http_scope("/a", headers=[], server=("/tmp/app.sock", None)))
    assert "url" not in recorder.last["page"]
    assert recorder.last["page"]["path"] == "/a"
    # Mounted under a prefix: ASGI servers now include root_path in path; older ones did not.
    run(app, http_scope("/shop/cart", root_path="/shop"))
    assert recorder.last["page"]["path"] == "/shop/cart"
    run(app, http_scope("/cart", root_path="/shop"))
    assert recorder.last["page"]["path"] == "/shop/cart"


@pytest.mark.parametrize(
    "scope_changes",
    [
        # Bytes that are not UTF-8 in every place a client controls.
        {"headers": [(b"host", b"sh\xffp"), (b"user-agent", b"\xff\xfe\x00bot")]},
        {"headers": [(b"cookie", b"ajs_anonymous_id=\xff\xfe; other=\x80")]},
        {"headers": [(b"accept-language", b"\xff;q=x,,"), (b"referer", b"\xfe" * 10000)]},
        {"query_string": b"q=\xff\xfe&%%%"},
        # Cookies analytics.js never wrote.
        {"headers": [(b"cookie", b"ajs_anonymous_id=%ZZ%22")]},
        {"headers": [(b"cookie", b"ajs_anonymous_id=%FF%FE")], "anonymous_id": None},
        {"headers": [(b"cookie", b"ajs_anonymous_id=%22unterminated")], "anonymous_id": None},
        {"headers": [(b"cookie", b"ajs_anonymous_id=" + b"a" * 5000)], "anonymous_id": None},
        {"headers": [(b"cookie", b"ajs_anonymous_id=%22%5Cu0000%22")], "anonymous_id": None},
        {"headers": [(b"cookie", b";;=;ajs_anonymous_id;=x; =")]},
        # Forwarding headers that are garbage, with proxies trusted.
        {"headers": [(b"x-forwarded-for", b",,, ,")], "trusted": 3},
        {"headers": [(b"forwarded", b'for="[::1;for=;;,"')], "trusted": 1},
        {"headers": [(b"host", b"evil.test/../?x= y")]},
        # Keys a minimal server leaves out, or fills oddly.
        {"headers": None, "client": None, "server": None, "query_string": None},
        {"headers": [[b"host", b"list.test"]], "query_string": "a=1", "scheme": None},
        {"path": None, "root_path": None},
    ],
)
def test_malformed_requests_never_raise(collector, clients, scope_changes):
    scope_changes = dict(scope_changes)
    trusted = scope_changes.pop("trusted", 0)
    expect_anonymous = "anonymous_id" in scope_changes
    expected_anonymous_id = scope_changes.pop("anonymous_id", None)
    client = clients.make(KEY)
    recorder = Recorder()
    app = SegmentMiddleware(recorder, client=client, trusted_proxies=trusted)
    scope = http_scope("/ok")
    for name, value in scope_changes.items():
        if value is None:
            scope.pop(name)
        else:
            scope[name] = value
    run(app, scope)
    context = recorder.last
    if expect_anonymous:
        assert recorder.contexts[-1].anonymous_id == expected_anonymous_id
    assert isinstance(context["page"]["path"], str)
    # And the message built from it encodes and is accepted by the collector.
    client.flush()
    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["event"] == "Seen"
    assert event["context"]["page"] == context["page"]


def test_wellformed_bytes_beyond_ascii_reach_the_collector_as_sent(collector, clients):
    client = clients.make(KEY)
    app = SegmentMiddleware(Recorder(), client=client)
    scope = http_scope(
        "/caf\u00e9",
        query_string=b"q=%C3%A9t%C3%A9",
        headers=[(b"host", b"shop.test"), (b"user-agent", "Navigateur \u00e9".encode("latin-1"))],
    )
    run(app, scope)
    client.flush()
    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["context"]["userAgent"] == "Navigateur \u00e9"
    assert event["context"]["page"]["path"] == "/caf\u00e9"
    assert event["context"]["page"]["search"] == "?q=%C3%A9t%C3%A9"


def test_a_utf8_user_agent_and_referrer_reach_the_collector_as_written(collector, clients):
    # Header bytes are latin-1 to ASGI and WSGI alike: UTF-8 came out as "MyApp (CafÃ© â\x98\x83)".
    client = clients.make(KEY)
    app = SegmentMiddleware(Recorder(), client=client)
    agent = "MyApp/2.1 (Caf\u00e9 \u2603)"
    referrer = "https://shop.test/caf\u00e9"
    headers = [
        (b"host", b"shop.test"),
        (b"user-agent", agent.encode("utf-8")),
        (b"referer", referrer.encode("utf-8")),
    ]
    run(app, http_scope("/", headers=headers))
    client.flush()
    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["context"]["userAgent"] == agent
    assert event["context"]["page"]["referrer"] == referrer


@pytest.mark.parametrize(
    ("path", "query", "expected_page"),
    [
        # A 17 KB query string (in page.search and again in page.url) made a 34 KB message,
        # over the API's 32 KB: the event was lost. Now the query is left out, not the event.
        ("/search", b"q=" + b"x" * 17_000, {"path": "/search", "url": "http://shop.test/search"}),
        ("/" + "p" * 5_000, b"q=1", {"search": "?q=1"}),
        ("/ok", b"q=" + b"x" * 4_000, {"path": "/ok", "search": "?q=" + "x" * 4_000}),
    ],
)
def test_an_overlong_path_or_query_is_left_out_not_the_event(
    collector, clients, path, query, expected_page
):
    client = clients.make(KEY)
    app = SegmentMiddleware(Recorder(), client=client)
    run(app, http_scope(path, query_string=query, headers=[(b"host", b"shop.test")]))
    client.flush()
    (event,) = collector.wait_for(1, write_key=KEY)
    page = {key: value for key, value in event["context"]["page"].items() if key != "url"}
    if "url" in expected_page:
        assert event["context"]["page"]["url"] == expected_page["url"]
    assert page == {key: value for key, value in expected_page.items() if key != "url"}


def test_a_context_that_cannot_be_built_still_serves_the_request(caplog, monkeypatch):
    from analytics_asgi import scope_context as module

    def broken(*args, **kwargs):
        raise RuntimeError("broken")

    monkeypatch.setattr(module, "ScopeRequestContext", broken)
    recorder = Recorder(track=False)
    app = SegmentMiddleware(recorder, write_key=KEY, send=False)
    with caplog.at_level(logging.ERROR, logger="segment"):
        run(app, http_scope())
    assert recorder.contexts == [None]
    assert "could not build the request's context" in caplog.text


def test_other_scope_types_pass_straight_through():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope, current_request_context()))

    scope = {"type": "custom.protocol", "path": "/x"}
    asyncio.run(SegmentMiddleware(app, write_key=KEY, send=False)(scope, None, None))
    assert seen == [(scope, None)]


_header_names = st.sampled_from(
    [b"host", b"cookie", b"user-agent", b"referer", b"accept-language", b"x-forwarded-for"]
    + [b"forwarded", b"x-other"]
)


@settings(max_examples=200, deadline=None)
@given(
    headers=st.lists(st.tuples(_header_names | st.binary(max_size=20), st.binary(max_size=200))),
    query_string=st.binary(max_size=100),
    path=st.text(max_size=50),
    root_path=st.text(max_size=10),
    peer=st.none() | st.tuples(st.text(max_size=40), st.integers(0, 65535)),
    trusted=st.integers(0, 5),
    kind=st.sampled_from(["http", "websocket"]),
)
def test_any_bytes_make_a_context_and_never_raise(
    headers, query_string, path, root_path, peer, trusted, kind
):
    scope = http_scope(path, headers=headers, query_string=query_string, client=peer, kind=kind)
    scope["root_path"] = root_path
    context = context_for_scope(
        scope, trusted_proxies=trusted, client=None, user_id_from_scope=user_id_from_scope_user
    )
    assert isinstance(context.context["page"]["path"], str)
    assert context.user_id is None
    assert context.anonymous_id is None or isinstance(context.anonymous_id, str)
    if "ip" in context.context:
        ipaddress.ip_address(context.context["ip"])
