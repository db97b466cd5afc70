"""The request context analytics_flask gives every analytics call made while handling a request,
checked on the messages the real collector received."""

import contextvars
import logging
import threading

import pytest
from analytics_flask.request_context import made_context
from flask import (
    Flask,
    Response,
    abort,
    copy_current_request_context,
    jsonify,
    request,
    stream_with_context,
)

import analytics_core
from analytics_core.collector.access import write_key_fingerprint as fingerprint
from analytics_core.context import context_set_by_integration, current_request_context

from .flask_apps.factory import WRITE_KEY, AppFactory, add_track_route, ajs_cookie, flush


@pytest.fixture
def make_app(collector):
    factory = AppFactory(collector.url)
    yield factory
    factory.close()


@pytest.fixture
def app(make_app):
    return add_track_route(make_app())


def delivered(collector, app, count=1):
    """Flush ``app``'s client; the ``count`` messages the collector got, oldest first."""
    flush(app)
    events = collector.events(limit=0, order="asc")
    assert len(events) == count, events
    return events


# -- what the context holds ---------------------------------------------------------------------


def test_a_request_fills_in_ip_user_agent_locale_page_and_anonymous_id(app, collector):
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("anon-42"))
    response = client.get(
        "/track?q=flask%20shoes&page=2",
        headers={
            "User-Agent": "Mozilla/5.0 (test)",
            "Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8",
            "Referer": "https://search.example/?q=shoes",
        },
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.json["ok"] is True
    (event,) = delivered(collector, app)
    assert event["event"] == "Test Event"
    assert event["anonymousId"] == "anon-42"
    assert "userId" not in event
    assert event["_write_key_fingerprint"] == fingerprint(WRITE_KEY)
    context = event["context"]
    assert context["ip"] == "203.0.113.7"
    assert context["userAgent"] == "Mozilla/5.0 (test)"
    assert context["locale"] == "fr-CH"
    assert context["page"] == {
        "path": "/track",
        "search": "?q=flask%20shoes&page=2",  # raw, as the browser's location.search
        "url": "http://localhost/track?q=flask%20shoes&page=2",
        "referrer": "https://search.example/?q=shoes",
    }
    assert context["library"]["name"] == "analytics-core"


def test_the_page_path_includes_the_mount_point_and_the_url_the_scheme(app, collector):
    client = app.test_client()
    # A cookie without JSON quoting is fine.
    client.set_cookie("ajs_anonymous_id", "plain-id", domain="shop.example")
    client.get("/track", base_url="https://shop.example/store/")
    (event,) = delivered(collector, app)
    assert event["anonymousId"] == "plain-id"
    assert event["context"]["page"]["path"] == "/store/track"
    assert event["context"]["page"]["url"] == "https://shop.example/store/track"


# -- client IP and proxies ----------------------------------------------------------------------

FORGED = {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=7.7.7.7"}


@pytest.mark.parametrize(
    ("trusted_proxies", "header", "headers", "ip"),
    [
        pytest.param(0, "X-Forwarded-For", FORGED, "10.0.0.1", id="no-trust-ignores-forged"),
        pytest.param(
            1,
            "X-Forwarded-For",
            {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"},
            "203.0.113.9",
            id="one-hop-right-most",
        ),
        pytest.param(
            2,
            "X-Forwarded-For",
            {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.2"},
            "203.0.113.9",
            id="two-hops",
        ),
        pytest.param(
            1,
            "Forwarded",
            {"Forwarded": 'for=6.6.6.6, for="[2001:db8::17]:4711";proto=https'},
            "2001:db8::17",
            id="forwarded-header",
        ),
        pytest.param(
            1,
            "Forwarded",
            {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=203.0.113.9"},
            "203.0.113.9",
            id="only-the-configured-header",
        ),
        pytest.param(
            1,
            "X-Real-IP",
            {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "203.0.113.9"},
            "203.0.113.9",
            id="another-header",
        ),
        pytest.param(
            1,
            "X-Forwarded-For",
            {"X-Forwarded-For": '"[6.6.6.6], 203.0.113.9'},
            "203.0.113.9",
            id="unbalanced-quote",
        ),
        pytest.param(1, "X-Forwarded-For", {}, "10.0.0.1", id="trusted-but-no-header"),
    ],
)
def test_the_ip_trusts_forwarding_headers_only_across_configured_hops(
    make_app, collector, trusted_proxies, header, headers, ip
):
    app = add_track_route(
        make_app(ANALYTICS_TRUSTED_PROXIES=trusted_proxies, ANALYTICS_FORWARDED_HEADER=header)
    )
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/track", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    (event,) = delivered(collector, app)
    assert event["context"]["ip"] == ip


# -- nothing malformed gets through or raises ---------------------------------------------------


@pytest.mark.parametrize(
    "cookie",
    [
        "%E0%A4%A",  # broken percent-encoding
        "%22unterminated",  # an opening JSON quote only
        "%7B%22a%22%3A1%7D",  # JSON that is not a string: plain text to us, at most
        "%22%5Cu0000%22",  # a control character inside the JSON string
        "%22" + "x" * 2000 + "%22",  # far longer than any real id
        "%22%20%20%22",  # blank
    ],
)
def test_a_malformed_anonymous_id_cookie_is_left_out_and_never_raises(app, collector, cookie):
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", cookie)
    response = client.post("/track", json={"user_id": "u1"})
    assert response.status_code == 200
    (event,) = delivered(collector, app)
    assert event["userId"] == "u1"
    anonymous_id = event.get("anonymousId")
    # Only a printable, short id may come through (a JSON object is just text to us).
    assert anonymous_id is None or (anonymous_id.isprintable() and len(anonymous_id) <= 256)


def test_malformed_headers_never_raise(make_app, collector):
    app = add_track_route(make_app(ANALYTICS_TRUSTED_PROXIES=1))
    client = app.test_client(use_cookies=False)  # so the raw Cookie header below is sent
    response = client.post(
        "/track",
        json={"user_id": "u1"},
        headers={
            "X-Forwarded-For": "not-an-ip, , ;;;",
            "Accept-Language": "*;q=0.5,<script>",
            "User-Agent": "é" * 5000,  # over the header length limit, and not ASCII
            "Referer": "",
            "Cookie": "a=b; ajs_anonymous_id; =; ;;",
        },
    )
    assert response.status_code == 200
    (event,) = delivered(collector, app)
    context = event["context"]
    # The trusted hop wrote garbage: the socket peer, never a value of the client's choosing.
    assert context["ip"] == "127.0.0.1"
    assert "locale" not in context
    assert "userAgent" not in context
    assert "referrer" not in context["page"]


def test_raw_bytes_in_the_path_and_query_never_raise(app, collector, caplog):
    seen = []
    app.before_request(lambda: seen.append(current_request_context()))
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    with caplog.at_level(logging.ERROR, logger="segment"):
        response = client.get(
            "/", environ_overrides={"PATH_INFO": "/caf\xc3\xa9/\xff", "QUERY_STRING": "q=\xff\x00"}
        )
    assert response.status_code == 404  # the app's answer: no such page, not a crash
    assert not caplog.records
    page = seen[0].context["page"]
    assert page["path"].startswith("/café/")
    assert page["search"] == "?q=\xff\x00"


@pytest.mark.skipif(
    "TRUSTED_HOSTS" not in Flask.default_config, reason="TRUSTED_HOSTS is new in Flask 3.1"
)
def test_an_untrusted_host_header_leaves_the_url_out_and_flask_answers_400(make_app, collector):
    app = make_app(TRUSTED_HOSTS=["shop.example"])
    seen = []

    @app.before_request
    def look():  # registered after the extension's hook, so it sees the context
        seen.append(current_request_context())

    @app.get("/")
    def index():
        return "ok"

    client = app.test_client()
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "shop.example"}).status_code == 200
    assert "url" not in seen[0].context["page"]
    assert seen[1].context["page"]["url"] == "http://shop.example/"


# -- explicit arguments win ---------------------------------------------------------------------


def test_explicit_context_wins_key_by_key(app, collector):
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.post(
        "/track?x=1",
        json={"context": {"ip": "198.51.100.1", "page": {"path": "/virtual"}, "app": {"v": 2}}},
        headers={"User-Agent": "ua"},
    )
    (event,) = delivered(collector, app)
    context = event["context"]
    assert context["ip"] == "198.51.100.1"
    assert context["page"]["path"] == "/virtual"
    assert context["page"]["url"] == "http://localhost/track?x=1"  # kept from the request
    assert context["page"]["search"] == "?x=1"
    assert context["userAgent"] == "ua"
    assert context["app"] == {"v": 2}


def test_explicit_ids_win_over_the_cookie(app, collector):
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("from-cookie"))
    client.post("/track", json={"user_id": "explicit-user"})
    client.post("/track", json={"anonymous_id": "explicit-anon"})
    first, second = delivered(collector, app, count=2)
    # Key by key: an explicit user id keeps the cookie's anonymous id (the identity stitch).
    assert (first["userId"], first["anonymousId"]) == ("explicit-user", "from-cookie")
    assert second["anonymousId"] == "explicit-anon"
    assert "userId" not in second


# -- the context's lifetime ---------------------------------------------------------------------


def test_the_context_is_reset_after_a_view_raises(make_app, collector):
    app = make_app()
    during = []

    @app.get("/boom")
    def boom():
        during.append(current_request_context())
        raise RuntimeError("boom")

    @app.get("/abort")
    def aborted():
        abort(403)

    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    assert client.get("/boom").status_code == 500
    assert during[0] is not None and during[0].anonymous_id == "a1"
    assert current_request_context() is None
    assert client.get("/abort").status_code == 403
    assert current_request_context() is None
    # PROPAGATE_EXCEPTIONS: the exception reaches the test, the teardown still ran.
    app.testing = True
    with pytest.raises(RuntimeError):
        client.get("/boom")
    assert current_request_context() is None


def test_the_context_follows_flasks_request_context_in_a_with_client_block(app, collector):
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/track", headers={"User-Agent": "zero"})
    # Without `with client:` Flask's request context is gone once the test has its answer.
    assert current_request_context() is None
    with client:
        client.get("/track", headers={"User-Agent": "first"})
        # The test client keeps Flask's request context (request.path works here), and the
        # analytics context with it: a call here is about that request, as Flask says.
        assert request.path == "/track"
        kept = current_request_context()
        assert kept is not None
        assert kept.context["userAgent"] == "first"
        client.get("/track", headers={"User-Agent": "second"})
        assert current_request_context().context["userAgent"] == "second"
    assert current_request_context() is None
    zero, first, second = delivered(collector, app, count=3)
    agents = [event["context"]["userAgent"] for event in (zero, first, second)]
    assert agents == ["zero", "first", "second"]


def test_streamed_bodies_keep_the_context_until_the_response_is_closed(make_app, collector):
    app = make_app()

    @app.get("/with-context")
    def with_context():
        @stream_with_context
        def body():
            yield "a"
            analytics_core.track(event="Streamed", properties={"how": "stream_with_context"})
            yield "b"

        return Response(body())

    @app.get("/plain")
    def plain():
        def body():
            yield "a"
            analytics_core.track(event="Streamed", properties={"how": "plain"})
            yield "b"

        return Response(body())

    @app.get("/broken")
    def broken():
        def body():
            yield "a"
            raise RuntimeError("the body failed")

        return Response(body())

    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    for path in ("/with-context", "/plain"):
        response = client.get(path)
        assert response.data == b"ab"
        response.close()  # what every WSGI server does; the test client leaves it to us
        assert current_request_context() is None, path
    response = client.get("/broken")
    with pytest.raises(RuntimeError):
        response.get_data()
    response.close()
    assert current_request_context() is None
    events = delivered(collector, app, count=2)
    assert [event["properties"]["how"] for event in events] == ["stream_with_context", "plain"]
    for event, path in zip(events, ("/with-context", "/plain")):
        assert event["anonymousId"] == "a1"
        assert event["context"]["page"]["path"] == path


def test_a_streamed_body_closed_in_a_copied_context(make_app, collector):
    app = add_track_route(make_app())

    @app.get("/stream")
    def stream():
        def body():
            try:
                yield "a"
                yield "b"
            finally:  # runs when the server closes the body before its end
                analytics_core.track(event="Body Closed")

        return Response(body())

    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    response = client.get("/stream")
    # The test client made the first chunk; the test's own code is outside the request.
    assert current_request_context() is None
    # A server that closes responses in a copy of the request's contextvars.Context.
    copy = contextvars.copy_context()
    copy.run(response.close)
    assert copy.run(current_request_context) is None
    assert current_request_context() is None
    client.get("/track")
    assert current_request_context() is None
    closed, tracked = delivered(collector, app, count=2)
    assert closed["event"] == "Body Closed"
    assert closed["anonymousId"] == "a1"
    assert closed["context"]["page"]["path"] == "/stream"
    assert tracked["context"]["page"]["path"] == "/track"


def test_nothing_leaks_from_one_request_to_the_next(app, collector):
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("first-visitor"))
    client.get("/track", headers={"User-Agent": "one"}, environ_base={"REMOTE_ADDR": "1.1.1.1"})
    other = app.test_client()  # a second browser: no cookie
    other.post("/track", json={"user_id": "u2"}, environ_base={"REMOTE_ADDR": "2.2.2.2"})
    first, second = delivered(collector, app, count=2)
    assert first["anonymousId"] == "first-visitor"
    assert "anonymousId" not in second
    assert second["context"]["ip"] == "2.2.2.2"
    assert second["context"].get("userAgent") != "one"


def test_requests_on_threads_each_get_their_own_context(app, collector):
    errors = []

    def visit(number):
        try:
            client = app.test_client()
            client.set_cookie("ajs_anonymous_id", ajs_cookie(f"visitor-{number}"))
            for _ in range(5):
                client.get(f"/track?n={number}")
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=visit, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    events = delivered(collector, app, count=40)
    for event in events:
        number = event["anonymousId"].split("-")[1]
        assert event["context"]["page"]["search"] == f"?n={number}"


# -- which client ---------------------------------------------------------------------------


def test_module_level_calls_in_a_request_use_the_apps_client(make_app, collector):
    default = analytics_core.default_client
    app = make_app(ANALYTICS_WRITE_KEY="module-level-routing")

    @app.get("/")
    def index():
        ok, _ = analytics_core.track("u1", "Routed")
        return jsonify(ok=ok, flushed=analytics_core.flush(timeout=5))

    assert app.test_client().get("/").json == {"ok": True, "flushed": True}
    # flush() inside the request flushed the app's client: the event is there already.
    (event,) = collector.events(limit=0)
    assert event["_write_key_fingerprint"] == fingerprint("module-level-routing")
    assert analytics_core.default_client is default  # neither used nor built
    assert current_request_context() is None


def test_flush_each_request_delivers_before_the_response(make_app, collector):
    app = add_track_route(make_app(ANALYTICS_FLUSH_EACH_REQUEST=True, ANALYTICS_UPLOAD_INTERVAL=60))
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/track")
    assert len(collector.events(limit=0)) == 1  # no flush by the test: the request did it


def test_a_request_that_sends_nothing_sets_and_makes_no_context(app, collector):
    seen = {}

    @app.get("/quiet")
    def quiet():
        # What the extension did for this request before the view ran: nothing but a mark in
        # the environ. The context rides on Flask's own request context (see the middleware).
        seen["set"] = context_set_by_integration()
        seen["made"] = made_context(request.environ)
        return "ok"

    assert app.test_client().get("/quiet").status_code == 200
    assert seen == {"set": None, "made": None}
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/track")
    (event,) = delivered(collector, app)
    assert event["anonymousId"] == "a1"


def test_a_request_context_the_extension_did_not_serve_has_no_analytics_context(app):
    # app.test_request_context() pushes Flask's request context without the WSGI app.
    with app.test_request_context("/cart"):
        assert request.path == "/cart"
        assert current_request_context() is None


def test_a_copied_request_context_in_a_thread_outlives_the_request(make_app, collector):
    app = make_app()
    started, finished, threads = threading.Event(), [], []

    @app.get("/later")
    def later():
        @copy_current_request_context
        def work():
            started.wait(10)  # the response is sent before this runs
            analytics_core.track(event="Done Later")
            finished.append(current_request_context().context["page"]["path"])

        threads.append(threading.Thread(target=work, daemon=True))
        threads[0].start()
        return "accepted", 202

    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    assert client.get("/later").status_code == 202
    assert current_request_context() is None
    started.set()
    threads[0].join(10)
    (event,) = delivered(collector, app)
    assert finished == ["/later"]
    assert event["event"] == "Done Later"
    assert event["anonymousId"] == "a1"
