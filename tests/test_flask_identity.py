"""Who a Flask request's messages are about, for the visitors a real site meets (issue 11).

A call with no ids must never fail a request: a first visit, curl, a crawler, an API client with
a bearer token get an anonymous id minted for the request, handed to the browser as
analytics.js's ``ajs_anonymous_id`` cookie. Explicit ids, ``identify()``, ``set_user_id()``,
``ANALYTICS_USER_ID`` and Flask-Login (Flask-Security's users included) tie the visit to the
user. Forwarding headers never let a client choose its IP. Real apps, real test clients; what
goes to the real collector is delivered, the rest is read from the per-test capture.
"""

import json
import logging
import re
import time
from email.utils import parsedate_to_datetime
from typing import Dict, List, Optional, Tuple

import pytest
from analytics_flask import Analytics
from analytics_flask.state import state_of
from flask import Flask, current_app, jsonify, make_response, request, session
from flask_login import LoginManager, UserMixin, current_user, login_user

import analytics_core
from analytics_core import ValidationError
from analytics_core.collector.access import write_key_fingerprint as fingerprint
from analytics_core.testing import allow_sending
from analytics_core.web.anonymous_cookie import COOKIE_MAX_AGE

from .flask_apps import flaskr
from .flask_apps.factory import WRITE_KEY, AppFactory, ajs_cookie, flush

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
CURL = "curl/8.5.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture
def make_app(collector):
    """Apps that deliver to the real collector."""
    factory = AppFactory(collector.url)
    yield factory
    factory.close()


@pytest.fixture
def captured_apps():
    """Apps whose messages only reach the test's capture (the host is never contacted)."""
    factory = AppFactory("http://127.0.0.1:9")
    yield factory
    factory.close()


@pytest.fixture
def flaskr_apps():
    """flaskr's factory; the apps' clients are shut down after the test."""
    apps: List[Flask] = []

    def create(**config):
        app = flaskr.create_app(**config)
        apps.append(app)
        return app

    yield create
    for app in apps:
        state_of(app).client.shutdown(timeout=2)


def shop(make_app, **config) -> Flask:
    """The README's view snippet, and a few more views that call analytics without ids."""
    app = make_app(**config)

    @app.post("/checkout")
    def checkout():
        analytics_core.track(
            event="Order Completed", properties={"order_id": "o-17", "revenue": 42.0}
        )
        return "thanks"

    @app.get("/browse")
    def browse():
        # Every kind of call, none naming anyone.
        analytics_core.track(event="Products Searched", properties={"query": "duck"})
        analytics_core.track(event="Product Viewed")
        analytics_core.page(name="Catalogue")
        analytics_core.screen(name="Catalogue")
        analytics_core.group(group_id="g-1")
        return "<p>ducks</p>"

    @app.get("/quiet")
    def quiet():
        return "<!doctype html><title>Quiet</title>"

    @app.post("/as-user")
    def as_user():
        analytics_core.track(user_id="42", event="Explicit User")
        return "ok"

    @app.post("/then-as-user")
    def then_as_user():
        analytics_core.track(event="Before")
        analytics_core.track(user_id="42", event="Explicit User")
        analytics_core.track(anonymous_id="chosen", event="Explicit Anonymous")
        return "ok"

    @app.post("/identify")
    def identify():
        analytics_core.track(event="Before Identify")
        analytics_core.identify(user_id="u-5", traits={"plan": "pro"})
        analytics_core.track(event="After Identify")
        return "ok"

    @app.post("/set-user")
    def set_user():
        analytics_core.track(event="Before Set")
        assigned = analytics_core.set_user_id(request.args.get("to", "u-9"))
        analytics_core.track(event="After Set")
        analytics_core.set_user_id(None)
        analytics_core.track(event="After Clear")
        try:
            analytics_core.set_user_id({"id": 9})  # not an id: the programmer's bug
        except ValidationError as error:
            return jsonify(assigned=assigned, rejected=str(error))
        return jsonify(assigned=assigned, rejected=None)

    @app.get("/sets-own-cookie")
    def sets_own_cookie():
        analytics_core.track(event="Own Cookie")
        response = make_response("ok")
        response.set_cookie("ajs_anonymous_id", "%22chosen-by-app%22", max_age=60)
        return response

    return app


def browser(app: Flask, anonymous_id: Optional[str] = None):
    client = app.test_client()
    if anonymous_id is not None:
        client.set_cookie("ajs_anonymous_id", ajs_cookie(anonymous_id))
    return client


def anonymous_id_cookies(response) -> List[str]:
    return [
        header
        for header in response.headers.getlist("Set-Cookie")
        if header.startswith("ajs_anonymous_id=")
    ]


def parse_cookie(header: str) -> Tuple[str, Dict[str, Optional[str]]]:
    """``(value, {attribute in lower case: value or None for a flag})`` of a Set-Cookie."""
    first, *attributes = header.split(";")
    value = first.split("=", 1)[1]
    parsed: Dict[str, Optional[str]] = {}
    for attribute in attributes:
        name, sep, text = attribute.strip().partition("=")
        parsed[name.lower()] = text if sep else None
    return value, parsed


def the_cookie(response) -> Tuple[str, Dict[str, Optional[str]]]:
    (header,) = anonymous_id_cookies(response)
    return parse_cookie(header)


def delivered(collector, app, **filters):
    flush(app)
    return collector.events(limit=0, order="asc", **filters)


# -- (a) the unhappy visitor -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"User-Agent": CURL, "Accept": "*/*"}, id="curl"),
        pytest.param({"User-Agent": GOOGLEBOT}, id="crawler"),
        pytest.param(None, id="no-user-agent"),
        pytest.param(
            {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "Accept": "application/json"},
            id="api-client-with-a-bearer-token",
        ),
    ],
)
def test_a_visitor_without_ids_gets_a_minted_anonymous_id_never_a_500(make_app, collector, headers):
    app = shop(make_app)
    client = browser(app)  # no cookie, no login
    user_agent = client.environ_base.pop("HTTP_USER_AGENT")  # the test client's own
    if headers is not None:
        user_agent = headers.get("User-Agent", user_agent)
        client.environ_base["HTTP_USER_AGENT"] = user_agent
    response = client.post("/checkout", headers=headers or {})
    assert response.status_code == 200
    assert response.get_data() == b"thanks"
    (event,) = delivered(collector, app)
    assert event["event"] == "Order Completed"
    assert event["properties"] == {"order_id": "o-17", "revenue": 42.0}
    assert UUID4.fullmatch(event["anonymousId"])
    assert "userId" not in event
    assert event["context"]["ip"] == "127.0.0.1"
    if headers is None:
        assert "userAgent" not in event["context"]
    else:
        assert event["context"]["userAgent"] == user_agent
    # The id goes to the client in the cookie, so its next request continues it.
    value, _ = the_cookie(response)
    assert value == f"%22{event['anonymousId']}%22"


def test_the_cookie_is_written_exactly_as_analytics_js_writes_it(captured_apps, analytics_events):
    app = shop(captured_apps)
    before = time.time()
    response = browser(app).post("/checkout")
    value, attributes = the_cookie(response)
    anonymous_id = analytics_events.tracked("Order Completed")[0]["anonymousId"]
    # JSON-quoted, the quotes URL-encoded: what analytics.js stores and reads back.
    assert value == f"%22{anonymous_id}%22"
    assert attributes["path"] == "/"
    assert attributes["max-age"] == str(COOKIE_MAX_AGE) == "31536000"
    expires = parsedate_to_datetime(attributes["expires"]).timestamp()
    assert before + COOKIE_MAX_AGE - 5 <= expires <= time.time() + COOKIE_MAX_AGE + 5
    assert attributes["samesite"] == "Lax"
    # analytics.js in the page reads it: never HttpOnly. Plain http: not Secure. No Domain.
    assert set(attributes) == {"path", "max-age", "expires", "samesite"}


def test_the_cookie_is_secure_on_https(captured_apps, analytics_events):
    app = shop(captured_apps)
    response = browser(app).post("/checkout", base_url="https://shop.example")
    _, attributes = the_cookie(response)
    assert "secure" in attributes and attributes["secure"] is None
    assert "httponly" not in attributes
    assert "domain" not in attributes


def test_the_cookie_has_a_domain_only_when_configured(captured_apps, analytics_events):
    app = shop(captured_apps, ANALYTICS_ANONYMOUS_ID_COOKIE_DOMAIN=".example.com")
    client = browser(app)
    response = client.post("/checkout", base_url="https://shop.example.com")
    _, attributes = the_cookie(response)
    # Werkzeug writes it without the leading dot, which RFC 6265 ignores anyway: subdomains
    # share it either way.
    assert attributes["domain"].lstrip(".") == "example.com"
    # The blog on another subdomain continues the same visitor.
    client.post("/checkout", base_url="https://blog.example.com")
    first, second = analytics_events.tracked("Order Completed")
    assert first["anonymousId"] == second["anonymousId"]
    assert second["context"]["page"]["url"] == "https://blog.example.com/checkout"


def test_the_next_request_continues_the_same_id_and_gets_no_new_cookie(make_app, collector):
    app = shop(make_app)
    client = browser(app)
    first = client.post("/checkout")
    assert len(anonymous_id_cookies(first)) == 1
    second = client.post("/checkout")  # the test client sends the cookie back, as a browser
    assert anonymous_id_cookies(second) == []
    one, two = delivered(collector, app)
    assert UUID4.fullmatch(one["anonymousId"])
    assert two["anonymousId"] == one["anonymousId"]


def test_every_call_of_a_request_shares_one_minted_id(captured_apps, analytics_events):
    app = shop(captured_apps)
    response = browser(app).get("/browse")
    assert response.status_code == 200
    assert [message["type"] for message in analytics_events] == [
        "track",
        "track",
        "page",
        "screen",
        "group",
    ]
    (anonymous_id,) = {message["anonymousId"] for message in analytics_events}
    assert UUID4.fullmatch(anonymous_id)
    value, _ = the_cookie(response)  # one cookie, for the one id
    assert value == f"%22{anonymous_id}%22"


def test_a_request_that_needs_no_id_sets_no_cookie(captured_apps, analytics_events):
    # Privacy: the cookie is only set when a call needed an id (what a consent banner asks).
    app = shop(captured_apps)
    client = browser(app)
    quiet = client.get("/quiet")
    assert quiet.status_code == 200 and anonymous_id_cookies(quiet) == []
    # A call naming its user needs no anonymous id: none is minted, no cookie.
    named = client.post("/as-user")
    assert anonymous_id_cookies(named) == []
    (event,) = analytics_events
    assert event["userId"] == "42" and "anonymousId" not in event
    # A visitor who already has the cookie is not sent it again.
    returning = browser(app, "returning-visitor").post("/checkout")
    assert anonymous_id_cookies(returning) == []
    assert analytics_events[-1]["anonymousId"] == "returning-visitor"


def test_with_the_cookie_off_the_id_lives_for_one_request(captured_apps, analytics_events):
    app = shop(captured_apps, ANALYTICS_ANONYMOUS_ID_COOKIE=False)
    client = browser(app)
    first = client.get("/browse")
    second = client.get("/browse")
    assert first.status_code == second.status_code == 200
    assert first.headers.getlist("Set-Cookie") == second.headers.getlist("Set-Cookie") == []
    ids = [message["anonymousId"] for message in analytics_events]
    # Minted once per request: shared within it, a new one for the next.
    assert len(set(ids[:5])) == len(set(ids[5:])) == 1
    assert ids[0] != ids[5]
    assert all(UUID4.fullmatch(anonymous_id) for anonymous_id in ids)


def test_the_apps_own_anonymous_id_cookie_wins(captured_apps, analytics_events):
    def own_hook(app):
        # Registered before the extension, so Flask runs it after the extension's own hook
        # would run if that were registered the ordinary way.
        @app.after_request
        def remember_the_campaign_visitor(response):
            if request.args.get("campaign"):
                response.set_cookie("ajs_anonymous_id", "%22from-campaign%22")
            return response

    app = shop(captured_apps, before_init=own_hook)
    from_view = browser(app).get("/sets-own-cookie")
    (header,) = anonymous_id_cookies(from_view)
    assert parse_cookie(header)[0] == "%22chosen-by-app%22"
    client = browser(app)
    from_hook = client.post("/checkout?campaign=spring")
    (header,) = anonymous_id_cookies(from_hook)
    assert parse_cookie(header)[0] == "%22from-campaign%22"
    assert client.get_cookie("ajs_anonymous_id").value == "%22from-campaign%22"
    # Both requests' calls still had an id: the one minted for them.
    assert all(UUID4.fullmatch(message["anonymousId"]) for message in analytics_events)


def test_a_call_in_an_apps_after_request_hook_gets_the_cookie(captured_apps, analytics_events):
    def own_hook(app):
        @app.after_request
        def track_every_response(response):
            analytics_core.track(event="Response Sent", properties={"status": response.status_code})
            return response

    # The extension's after_request runs after every other, whenever that was registered: an id
    # minted in the app's own hook still reaches the browser.
    app = captured_apps(before_init=own_hook)

    @app.get("/")
    def index():
        return "ok"

    response = browser(app).get("/")
    (event,) = analytics_events
    value, _ = the_cookie(response)
    assert value == f"%22{event['anonymousId']}%22"


def test_a_flaskr_sign_up_redirects_and_the_visit_continues(flaskr_apps, collector):
    app = flaskr_apps(ANALYTICS_HOST=collector.url)
    client = app.test_client()
    response = client.post("/auth/register", data={"username": "ada"})
    # The account is created, then tracked: the visitor gets flaskr's redirect, not a 500.
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert app.extensions["flaskr_db"]["users"][1]["username"] == "ada"
    assert len(anonymous_id_cookies(response)) == 1
    assert client.post("/auth/login", data={"username": "ada"}).status_code == 302
    signed_up, logged_in = delivered(collector, app)
    assert signed_up["event"] == "Signed Up"
    assert signed_up["_write_key_fingerprint"] == fingerprint("flaskr-key")
    assert UUID4.fullmatch(signed_up["anonymousId"])
    assert logged_in["anonymousId"] == signed_up["anonymousId"]


# -- (b) stitching the visit to the user -------------------------------------------------------


def test_an_explicit_user_id_keeps_the_requests_anonymous_id(captured_apps, analytics_events):
    app = shop(captured_apps)
    browser(app, "visitor-1").post("/as-user")
    (from_cookie,) = analytics_events
    assert (from_cookie["userId"], from_cookie["anonymousId"]) == ("42", "visitor-1")
    analytics_events.clear()
    # A first visit: the id minted by the first call stays on the explicit user's message, and
    # an explicit anonymous id keeps the request's user (none here).
    response = browser(app).post("/then-as-user")
    before, as_user, explicit_anonymous = analytics_events
    assert UUID4.fullmatch(before["anonymousId"])
    assert (as_user["userId"], as_user["anonymousId"]) == ("42", before["anonymousId"])
    assert explicit_anonymous["anonymousId"] == "chosen"
    assert "userId" not in explicit_anonymous
    assert the_cookie(response)[0] == f"%22{before['anonymousId']}%22"


def test_identify_in_a_view_makes_its_user_the_requests(captured_apps, analytics_events):
    app = shop(captured_apps)
    client = browser(app, "visitor-1")
    assert client.post("/identify").status_code == 200
    before, identify, after = analytics_events
    assert "userId" not in before
    assert identify["type"] == "identify" and identify["traits"] == {"plan": "pro"}
    assert identify["userId"] == after["userId"] == "u-5"
    assert {before["anonymousId"], identify["anonymousId"], after["anonymousId"]} == {"visitor-1"}
    # For that request only: the next one knows nobody until it is told again.
    client.post("/checkout")
    assert "userId" not in analytics_events[-1]


def test_set_user_id_names_the_requests_user(captured_apps, analytics_events):
    app = shop(captured_apps)
    response = browser(app, "visitor-1").post("/set-user?to=u-9")
    assert response.status_code == 200
    assert response.json["assigned"] is True
    assert "user_id" in response.json["rejected"]
    before, after, cleared = analytics_events
    assert "userId" not in before
    assert (after["userId"], after["anonymousId"]) == ("u-9", "visitor-1")
    assert "userId" not in cleared and cleared["anonymousId"] == "visitor-1"
    # Outside a request there is no request to tell.
    assert analytics_core.set_user_id("u-9") is False


# -- (c) ANALYTICS_USER_ID ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "resolver",
    [
        pytest.param(lambda request: session.get("user_id"), id="callable"),
        pytest.param("tests.flask_apps.flaskr.user_id_from_session", id="dotted-path"),
    ],
)
def test_a_user_id_resolver_reads_flaskrs_own_session_login(
    flaskr_apps, analytics_events, resolver
):
    app = flaskr_apps(ANALYTICS_USER_ID=resolver)
    client = app.test_client()
    client.post("/auth/register", data={"username": "ada"})
    client.post("/auth/login", data={"username": "ada"})
    assert client.post("/create", data={"title": "Hello"}).status_code == 302
    assert client.post("/2/update", data={"title": "Hello again"}).status_code == 302
    signed_up, logged_in, created, updated = analytics_events
    assert "userId" not in signed_up
    # session["user_id"] was set before the call, in the same request.
    assert logged_in["userId"] == created["userId"] == updated["userId"] == "1"
    # One visitor from the sign-up on: every message carries the anonymous id too.
    assert len({message["anonymousId"] for message in analytics_events}) == 1


def test_a_user_id_resolver_reading_g_user(flaskr_apps, analytics_events):
    app = flaskr_apps(ANALYTICS_USER_ID="tests.flask_apps.flaskr.user_id_from_g")
    client = app.test_client()
    client.post("/auth/register", data={"username": "grace"})
    client.post("/auth/login", data={"username": "grace"})
    client.post("/create", data={"title": "Hello"})
    _, logged_in, created = analytics_events
    # flaskr loads g.user before the view runs: in the login request it is still nobody.
    assert "userId" not in logged_in
    assert created["userId"] == "grace"


def test_a_resolver_that_raises_is_logged_and_the_request_answers(
    captured_apps, analytics_events, caplog
):
    def broken(request):
        raise KeyError("the session store is down")

    app = shop(captured_apps, ANALYTICS_USER_ID=broken)
    with caplog.at_level(logging.ERROR, logger="segment"):
        response = browser(app).post("/checkout")
    assert response.status_code == 200
    assert any("ANALYTICS_USER_ID raised" in record.getMessage() for record in caplog.records)
    (event,) = analytics_events
    assert "userId" not in event
    assert UUID4.fullmatch(event["anonymousId"])
    assert the_cookie(response)[0] == f"%22{event['anonymousId']}%22"


# -- (d) Flask-Login and Flask-Security's users ------------------------------------------------


class SecurityUser(UserMixin):
    """A user as Flask-Security models it: get_id() is the fs_uniquifier session token, which
    changes with every password change, while ``id`` is the row's key."""

    def __init__(self, id: int, email: str, fs_uniquifier: str) -> None:
        self.id = id
        self.email = email
        self.fs_uniquifier = fs_uniquifier

    def get_id(self) -> str:
        return self.fs_uniquifier


def security_app(make_app, **config) -> Flask:
    app = make_app(SECRET_KEY="test-secret", **config)
    ada = SecurityUser(7, "ada@example.com", "4f0e7c0e9c5c4f6f8a1b2c3d4e5f6a7b")
    manager = LoginManager(app)

    @manager.user_loader
    def load_user(token):
        return ada if token == ada.fs_uniquifier else None

    @app.get("/pricing")
    def pricing():
        analytics_core.track(event="Pricing Viewed")
        return "<!doctype html><title>Pricing</title>"

    @app.post("/login")
    def login():
        login_user(ada)
        return "welcome"

    @app.post("/change-password")
    def change_password():
        ada.fs_uniquifier = "rotated-" + ada.fs_uniquifier  # what Flask-Security does
        login_user(ada)
        return "changed"

    @app.post("/checkout")
    def checkout():
        analytics_core.track(event="Order Completed")
        return "thanks"

    return app


def test_a_flask_security_user_is_its_stable_id_not_its_session_token(
    captured_apps, analytics_events
):
    app = security_app(captured_apps, ANALYTICS_IDENTIFY_ON_LOGIN=True)
    client = browser(app)
    client.get("/pricing")  # a first visit: the id is minted and set in the cookie
    client.post("/login")
    client.post("/checkout")
    client.post("/change-password")
    client.post("/checkout")
    viewed, identify, order, identify_again, order_again = analytics_events
    anonymous_id = viewed["anonymousId"]
    assert UUID4.fullmatch(anonymous_id) and "userId" not in viewed
    # The identify at login stitches the anonymous visit to user 7.
    assert identify["type"] == "identify"
    assert (identify["userId"], identify["anonymousId"]) == ("7", anonymous_id)
    assert identify["traits"] == {"email": "ada@example.com"}
    assert (order["userId"], order["anonymousId"]) == ("7", anonymous_id)
    # A new password rotates the session token; the Segment user stays the same.
    assert identify_again["userId"] == order_again["userId"] == "7"
    assert "4f0e7c0e" not in json.dumps(analytics_events.messages)


def test_with_a_resolver_its_answer_is_the_user_for_calls_and_identify_on_login(
    captured_apps, analytics_events
):
    def account_of(request):
        return f"acct-{current_user.id}" if current_user.is_authenticated else None

    app = security_app(
        captured_apps, ANALYTICS_IDENTIFY_ON_LOGIN=True, ANALYTICS_USER_ID=account_of
    )
    client = browser(app, "visitor-1")
    client.post("/login")
    client.post("/checkout")
    identify, order = analytics_events
    assert (identify["userId"], identify["anonymousId"]) == ("acct-7", "visitor-1")
    assert (order["userId"], order["anonymousId"]) == ("acct-7", "visitor-1")


# -- (e) hostile headers -----------------------------------------------------------------------

PROXY = "10.0.0.2"  # the one trusted proxy: the socket peer


@pytest.mark.parametrize(
    ("forwarded_header", "headers", "ip"),
    [
        # The client's open quote must not swallow the address the proxy appended.
        pytest.param("X-Forwarded-For", {"X-Forwarded-For": '"[6.6.6.6]'}, PROXY, id="xff-quote"),
        pytest.param(
            "X-Forwarded-For",
            {"X-Forwarded-For": '"[6.6.6.6], 203.0.113.9'},
            "203.0.113.9",
            id="xff-quote-then-the-proxys",
        ),
        pytest.param("Forwarded", {"Forwarded": 'for="[6.6.6.6]'}, PROXY, id="forwarded-quote"),
        pytest.param(
            "X-Forwarded-For",
            {"X-Forwarded-For": "::1%<img src=x onerror=alert(1)>"},
            PROXY,
            id="zone-id-markup",
        ),
        pytest.param(
            "Forwarded",
            {"Forwarded": 'for="[::1%<img src=x>]"'},
            PROXY,
            id="forwarded-zone-id-markup",
        ),
        # Behind a proxy that writes Forwarded, the client's own X-Forwarded-For is ignored.
        pytest.param(
            "Forwarded",
            {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=203.0.113.9"},
            "203.0.113.9",
            id="forwarded-ignores-xff",
        ),
        pytest.param("Forwarded", {"X-Forwarded-For": "6.6.6.6"}, PROXY, id="only-xff-sent"),
    ],
)
def test_a_client_cannot_choose_its_ip(
    captured_apps, analytics_events, forwarded_header, headers, ip
):
    app = shop(
        captured_apps,
        ANALYTICS_TRUSTED_PROXIES=1,
        ANALYTICS_FORWARDED_HEADER=forwarded_header,
    )
    response = browser(app, "visitor-1").post(
        "/checkout", headers=headers, environ_base={"REMOTE_ADDR": PROXY}
    )
    assert response.status_code == 200
    (event,) = analytics_events
    assert event["context"]["ip"] == ip
    wire = json.dumps(event)
    assert "6.6.6.6" not in wire
    assert "<img" not in wire


def test_a_peer_address_with_a_zone_id_is_left_out(captured_apps, analytics_events):
    # A server may report a link-local peer with its zone; the zone is text, not an address.
    app = shop(captured_apps)
    response = browser(app, "visitor-1").post(
        "/checkout", environ_base={"REMOTE_ADDR": "fe80::1%<img src=x>"}
    )
    assert response.status_code == 200
    (event,) = analytics_events
    assert "ip" not in event["context"]
    assert "<img" not in json.dumps(event)


# -- (f) invalid calls inside a request --------------------------------------------------------


def import_app(make_app, errors) -> Flask:
    app = make_app(ANALYTICS_ON_ERROR=lambda error, items: errors.append((error, items)))

    @app.post("/import")
    def import_():
        # The visitor chose this JSON: a list, not the dict properties must be.
        ok, message = analytics_core.track(event="Imported", properties=request.get_json())
        analytics_core.track(event="Import Attempted")
        return jsonify(ok=ok, type=message["type"])

    return app


def test_an_invalid_call_never_fails_the_visitors_request(make_app, collector, caplog):
    errors = []
    app = import_app(make_app, errors)
    with caplog.at_level(logging.ERROR, logger="segment"):
        response = browser(app, "visitor-1").post("/import", json=[1, 2, 3])
    assert response.status_code == 200
    assert response.json == {"ok": False, "type": "track"}
    assert any("inside a request was invalid" in r.getMessage() for r in caplog.records)
    ((error, items),) = errors
    assert isinstance(error, ValidationError) and "properties" in str(error)
    assert items == [{"type": "track"}]
    # The valid call of the same request was delivered; the invalid one was not.
    (event,) = delivered(collector, app)
    assert event["event"] == "Import Attempted"


def test_inside_the_test_capture_an_invalid_call_raises(collector_process, analytics_events):
    # collector_process, not collector: this test keeps the capture and leaves it for a block.
    collector_process.clear()
    errors = []
    factory = AppFactory(collector_process.url)
    try:
        app = import_app(factory, errors)
        app.testing = True  # exceptions reach the test, as in most Flask test suites
        with pytest.raises(ValidationError, match="properties"):
            browser(app, "visitor-1").post("/import", json=[1, 2, 3])
        analytics_events.assert_nothing_sent()
        # A block that leaves the capture sees what production does: no exception, a log line.
        with allow_sending():
            response = browser(app, "visitor-1").post("/import", json=[1, 2, 3])
            flush(app)
        assert response.status_code == 200 and response.json["ok"] is False
        assert [error for error, _ in errors if isinstance(error, ValidationError)]
        (event,) = collector_process.events(limit=0)
        assert event["event"] == "Import Attempted"
    finally:
        factory.close()


# -- (g) the factory pattern: app.extensions["analytics"] --------------------------------------


def test_the_extension_object_in_app_extensions_has_every_call(make_app, collector):
    analytics = Analytics()
    app = make_app(analytics=analytics)

    @app.post("/everything")
    def everything():
        extension = current_app.extensions["analytics"]
        assert extension is analytics
        results = [
            extension.track(event="Ordered"),
            extension.identify(traits={"plan": "pro"}),
            extension.page(name="Home"),
            extension.screen(name="Home"),
            extension.group(group_id="g-1"),
            extension.alias(previous_id="old-id", user_id="new-id"),
        ]
        return jsonify(ok=[ok for ok, _ in results], flushed=extension.flush(timeout=5))

    client = browser(app, "visitor-1")
    assert client.post("/everything").json == {"ok": [True] * 6, "flushed": True}
    # flush() in the view delivered them already.
    in_request = collector.events(limit=0, order="asc")
    assert [event["type"] for event in in_request] == [
        "track",
        "identify",
        "page",
        "screen",
        "group",
        "alias",
    ]
    for event in in_request:
        assert event["_write_key_fingerprint"] == fingerprint(WRITE_KEY)
        assert event["context"]["page"]["path"] == "/everything"
        if event["type"] != "alias":
            assert event["anonymousId"] == "visitor-1"

    collector.clear()
    with app.app_context():
        extension = current_app.extensions["analytics"]
        assert extension.track(user_id="u1", event="From A Script")[0]
        assert extension.identify(user_id="u1", traits={"plan": "pro"})[0]
        assert extension.page(user_id="u1", name="Home")[0]
        assert extension.screen(user_id="u1", name="Home")[0]
        assert extension.group(user_id="u1", group_id="g-1")[0]
        assert extension.alias(previous_id="old-id", user_id="u1")[0]
        # Outside a request nobody is implied: naming no one is the caller's bug.
        with pytest.raises(ValidationError, match="user_id or anonymous_id"):
            extension.track(event="Nobody")
        assert extension.flush(timeout=5)
    outside = collector.events(limit=0, order="asc")
    assert len(outside) == 6
    assert all("page" not in event["context"] for event in outside)  # no request, no page


def test_two_apps_with_their_own_extension_objects_use_their_own_keys(make_app, collector):
    apps = []
    for name in ("shop", "blog"):
        app = make_app(name, analytics=Analytics(), ANALYTICS_WRITE_KEY=f"{name}-key")

        @app.post("/track")
        def track():
            current_app.extensions["analytics"].track(event="Visited")
            analytics_core.track(event="Visited Too")
            return "ok"

        apps.append(app)
    shop_app, blog_app = apps
    assert shop_app.extensions["analytics"] is not blog_app.extensions["analytics"]
    browser(shop_app, "shop-visitor").post("/track")
    browser(blog_app, "blog-visitor").post("/track")
    flush(shop_app)
    flush(blog_app)
    events = collector.events(limit=0)
    assert len(events) == 4
    for event in events:
        name = event["anonymousId"].split("-")[0]
        assert event["_write_key_fingerprint"] == fingerprint(f"{name}-key")
