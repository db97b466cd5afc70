"""analytics_asgi: who an event is about, in real Starlette and FastAPI apps, for every visitor.

The unhappy visitors first (no cookie, no login, a bot, an API client with a bearer token): an
analytics call with no ids never fails their request, and the id minted for them is handed to
the browser as analytics.js's ``ajs_anonymous_id`` cookie. Then identity stitching (FastAPI's
documented OAuth2 password + JWT app, Starlette's documented authentication example), forged
forwarding headers, invalid calls inside a request, and uvicorn's own proxy headers under a
real uvicorn process. Events are read from the real collector (tests that use ``collector``
really send) or from the ``analytics_events`` capture.
"""

import base64
import binascii
import json
import re
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import Dict, List, Optional
from urllib.parse import quote

import pytest
from analytics_asgi import SegmentMiddleware
from fastapi import BackgroundTasks, FastAPI, Response
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

import analytics_core
from analytics_core.testing import allow_sending

from .asgi_apps.oauth2_jwt import PASSWORD, make_app
from .asgi_apps.support import Clients, TestClient, ajs_cookie
from .support.servers import ServerProcess, executable, free_port, python_env

KEY = "asgi-identity-key"
PEER = ("203.0.113.7", 51000)
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
ONE_YEAR = 365 * 24 * 60 * 60


@pytest.fixture
def clients(collector):
    with Clients(collector.url) as made:
        yield made


def is_uuid(value: object) -> bool:
    """A minted id: a UUID in its canonical text."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def anonymous_cookies(response) -> List[str]:
    """The response's ``Set-Cookie`` values that set ``ajs_anonymous_id``."""
    return [
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith("ajs_anonymous_id=")
    ]


def assert_anonymous_cookie(
    response, anonymous_id: str, *, secure: bool = False, domain: Optional[str] = None
) -> None:
    """The one ``ajs_anonymous_id`` cookie, exactly as analytics.js writes it."""
    (header,) = anonymous_cookies(response)
    value, *attributes = header.split("; ")
    assert value == f"ajs_anonymous_id=%22{anonymous_id}%22"
    fields: Dict[str, Optional[str]] = {}
    for attribute in attributes:
        name, _, text = attribute.partition("=")
        fields[name] = text or None
    expected = {"Expires", "Max-Age", "Path", "SameSite"}
    expected |= {"Secure"} if secure else set()
    expected |= {"Domain"} if domain else set()
    # Not HttpOnly: analytics.js in the page must read it.
    assert set(fields) == expected, header
    assert fields["Path"] == "/"
    assert fields["Max-Age"] == str(ONE_YEAR)
    assert fields["SameSite"] == "Lax"
    expires = parsedate_to_datetime(fields["Expires"]).timestamp()
    assert abs(expires - (time.time() + ONE_YEAR)) < 120
    if domain:
        assert fields["Domain"] == domain


# -- the apps -----------------------------------------------------------------------------------


def shop(**options) -> FastAPI:
    """Endpoints that call analytics with no ids, as the README's snippet does."""
    app = FastAPI()

    @app.post("/orders")
    async def order() -> dict:
        analytics_core.track(event="Order Completed", properties={"revenue": 42.0})
        return {"ok": True}

    @app.post("/checkout")
    async def checkout() -> dict:
        analytics_core.track(event="Checkout Started")
        analytics_core.identify(traits={"plan": "guest"})
        analytics_core.page(name="Checkout")
        analytics_core.track(event="Checkout Done")
        return {"ok": True}

    @app.post("/sync")
    def sync_endpoint() -> dict:  # FastAPI runs it in its threadpool
        analytics_core.track(event="Sync One")
        analytics_core.track(event="Sync Two")
        return {"ok": True}

    @app.post("/later")
    async def later(background: BackgroundTasks) -> dict:
        analytics_core.track(event="Queued")
        background.add_task(analytics_core.track, event="Ran Later")
        return {"ok": True}

    @app.get("/quiet")
    async def quiet() -> dict:
        return {"tracked": False}

    @app.post("/own-cookie")
    async def own_cookie(response: Response) -> dict:
        analytics_core.track(event="Own Cookie")
        response.set_cookie("ajs_anonymous_id", quote(json.dumps("app-chosen")), max_age=60)
        return {"ok": True}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body():
            yield "started\n"
            # The response's start is on the wire already: no cookie can follow.
            analytics_core.track(event="Streamed")
            yield "tracked\n"

        return StreamingResponse(body(), media_type="text/plain")

    @app.post("/as-user")
    async def as_user() -> dict:
        analytics_core.track(user_id="42", event="Explicit User")
        return {"ok": True}

    @app.post("/as-device")
    async def as_device() -> dict:
        analytics_core.track(anonymous_id="device-1", event="Explicit Device")
        return {"ok": True}

    @app.post("/invalid")
    async def invalid() -> dict:
        analytics_core.track(event=42)  # a programmer error, in production
        analytics_core.track(event="After Invalid")
        return {"ok": True}

    app.add_middleware(SegmentMiddleware, **options)
    return app


# -- (a) the unhappy visitor --------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"User-Agent": BROWSER_UA}, id="first-visit"),
        pytest.param({}, id="no-user-agent"),
        pytest.param(
            {
                "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
            },
            id="bot",
        ),
        pytest.param({"User-Agent": "curl/8.5.0"}, id="curl"),
    ],
)
def test_no_cookie_and_no_login_still_tracks_with_a_minted_id(collector, clients, headers):
    app = shop(client=clients.make(KEY))
    with TestClient(app, client=PEER) as http:
        del http.headers["User-Agent"]  # the TestClient's own "testclient"
        response = http.post("/orders", headers=headers)
    assert response.status_code == 200, response.text

    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["event"] == "Order Completed"
    assert is_uuid(event["anonymousId"])
    assert "userId" not in event
    assert event["context"]["ip"] == PEER[0]
    assert event["context"].get("userAgent") == headers.get("User-Agent")
    assert_anonymous_cookie(response, event["anonymousId"])


def test_an_api_client_with_a_bearer_token_and_no_cookie(collector, clients):
    # FastAPI's tutorial as it is: the integration cannot see who the token names.
    app = make_app(name_the_user=False, client=clients.make(KEY))
    with TestClient(app, client=PEER) as api:
        login = api.post("/token", data={"username": "johndoe", "password": PASSWORD})
        assert login.status_code == 200, login.text
        assert anonymous_cookies(login) == []  # identify named the user: nothing minted
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        answers = []
        for _ in range(2):
            api.cookies.clear()  # an API client keeps no cookies
            answers.append(api.get("/users/me/items/", headers=bearer))
    first, second = answers
    assert first.status_code == second.status_code == 200
    assert first.json() == [{"item_id": "Foo", "owner": "johndoe"}]

    events = collector.wait_for(6, write_key=KEY)
    summary = [(e["type"], e.get("event"), e.get("userId")) for e in events]
    assert summary == [
        ("identify", None, "johndoe"),
        ("track", "Signed In", "johndoe"),
        *[("track", "Items Listed", None), ("track", "Items Exported", None)] * 2,
    ]
    # The endpoint's call and its background task's share the request's minted id; without
    # the cookie back, each request is a visitor of its own.
    first_ids = {e["anonymousId"] for e in events[2:4]}
    second_ids = {e["anonymousId"] for e in events[4:6]}
    assert len(first_ids) == len(second_ids) == 1 and first_ids != second_ids
    assert all(is_uuid(anonymous_id) for anonymous_id in first_ids | second_ids)
    assert_anonymous_cookie(first, first_ids.pop())
    assert_anonymous_cookie(second, second_ids.pop())


def test_the_cookie_sent_back_keeps_the_id_and_gets_no_new_cookie(analytics_events):
    with TestClient(shop(write_key=KEY)) as browser:  # a cookie jar
        first = browser.post("/orders")
        second = browser.post("/orders")
        third = browser.post("/sync")

    ids = [event["anonymousId"] for event in analytics_events]
    assert len(ids) == 4 and len(set(ids)) == 1 and is_uuid(ids[0])
    assert_anonymous_cookie(first, ids[0])
    assert anonymous_cookies(second) == anonymous_cookies(third) == []
    # The jar sent exactly what the cookie said.
    assert browser.cookies["ajs_anonymous_id"] == f"%22{ids[0]}%22"


def test_secure_on_https_and_a_domain_only_when_configured(analytics_events):
    with TestClient(shop(write_key=KEY), base_url="https://shop.test") as http:
        secure = http.post("/orders")
    app = shop(write_key=KEY, anonymous_id_cookie_domain=".shop.test")
    with TestClient(app, base_url="http://www.shop.test") as http:
        shared = http.post("/orders")

    secure_id, shared_id = (event["anonymousId"] for event in analytics_events)
    assert_anonymous_cookie(secure, secure_id, secure=True)
    assert_anonymous_cookie(shared, shared_id, domain=".shop.test")


def test_every_call_of_one_request_shares_one_minted_id(analytics_events):
    app = shop(write_key=KEY)
    answers = {}
    with TestClient(app) as http:
        for path in ("/checkout", "/sync", "/later"):
            http.cookies.clear()  # a new visitor each time
            answers[path] = http.post(path)

    by_request: Dict[str, set] = {}
    for event in analytics_events:
        assert "userId" not in event
        by_request.setdefault(event["context"]["page"]["path"], set()).add(event["anonymousId"])
    # identify and page too; a sync endpoint in the threadpool; a background task that ran
    # after the response was sent.
    assert [len(analytics_events.filter(context={"page": {"path": p}})) for p in answers] == [
        4,
        2,
        2,
    ]
    for path, response in answers.items():
        (anonymous_id,) = by_request[path]
        assert is_uuid(anonymous_id)
        assert_anonymous_cookie(response, anonymous_id)
    assert len(set.union(*by_request.values())) == 3


def test_a_request_that_tracks_nothing_sets_no_cookie(analytics_events):
    with TestClient(shop(write_key=KEY, pageviews=True)) as http:
        response = http.get("/quiet", headers={"User-Agent": BROWSER_UA})
    assert response.json() == {"tracked": False}
    assert response.headers.get_list("set-cookie") == []
    analytics_events.assert_nothing_sent()


def test_without_the_cookie_setting_the_id_lives_for_one_request(analytics_events):
    with TestClient(shop(write_key=KEY, anonymous_id_cookie=False)) as http:
        first = http.post("/orders")
        second = http.post("/orders")
    assert first.headers.get_list("set-cookie") == second.headers.get_list("set-cookie") == []
    first_id, second_id = (event["anonymousId"] for event in analytics_events)
    assert is_uuid(first_id) and is_uuid(second_id) and first_id != second_id


def test_the_apps_own_ajs_anonymous_id_cookie_wins(analytics_events):
    with TestClient(shop(write_key=KEY)) as http:
        response = http.post("/own-cookie")
    (header,) = anonymous_cookies(response)
    assert header.startswith("ajs_anonymous_id=%22app-chosen%22;")
    assert is_uuid(analytics_events.assert_tracked("Own Cookie")["anonymousId"])


def test_a_stream_that_tracks_after_its_start_still_delivers(collector, clients):
    with TestClient(shop(client=clients.make(KEY))) as http:
        response = http.get("/stream")
    assert response.text == "started\ntracked\n"
    assert response.headers.get_list("set-cookie") == []  # too late for a header

    (event,) = collector.wait_for(1, write_key=KEY)
    assert event["event"] == "Streamed"
    assert is_uuid(event["anonymousId"])


# -- (b) identity stitching ---------------------------------------------------------------------


def test_identify_at_token_keeps_the_anonymous_id_and_names_the_rest_of_the_request(
    collector, clients
):
    app = make_app(name_the_user=False, client=clients.make(KEY))
    with TestClient(app, cookies={"ajs_anonymous_id": "%22anon-browser%22"}) as browser:
        login = browser.post("/token", data={"username": "johndoe", "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert anonymous_cookies(login) == []

    identify, signed_in = collector.wait_for(2, write_key=KEY)
    # Both ids on both: Segment joins the visitor's anonymous history to johndoe.
    assert (identify["type"], identify["userId"], identify["anonymousId"]) == (
        "identify",
        "johndoe",
        "anon-browser",
    )
    assert identify["traits"] == {"email": "johndoe@example.com", "name": "John Doe"}
    assert (signed_in["event"], signed_in["userId"], signed_in["anonymousId"]) == (
        "Signed In",
        "johndoe",
        "anon-browser",
    )


def test_an_explicit_id_keeps_the_other_one_from_the_request(analytics_events):
    app = shop(write_key=KEY)
    with TestClient(app) as http:
        with_cookie = http.post("/as-user", headers={"Cookie": ajs_cookie("anon-7")})
        http.cookies.clear()
        without = http.post("/as-user")

    stitched, alone = analytics_events.tracked("Explicit User")
    assert (stitched["userId"], stitched["anonymousId"]) == ("42", "anon-7")
    # An explicit user id is an id: nothing is minted, no cookie.
    assert alone["userId"] == "42" and "anonymousId" not in alone
    assert anonymous_cookies(with_cookie) == anonymous_cookies(without) == []


def test_set_user_id_in_the_dependency_names_every_call_of_the_request(collector, clients):
    app = make_app(name_the_user=True, client=clients.make(KEY))
    with TestClient(app) as http:
        token = http.post("/token", data={"username": "johndoe", "password": PASSWORD})
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        browser = http.get("/users/me/items/", headers={**bearer, "Cookie": ajs_cookie("anon-b")})
        http.cookies.clear()
        api = http.get("/users/me/items/", headers=bearer)
    assert browser.status_code == api.status_code == 200
    assert anonymous_cookies(browser) == anonymous_cookies(api) == []

    events = collector.wait_for(6, write_key=KEY)
    # The endpoint's call and the background task's, for each request.
    from_browser, from_api = events[2:4], events[4:6]
    assert [e["event"] for e in from_browser + from_api] == ["Items Listed", "Items Exported"] * 2
    for event in from_browser:
        assert (event["userId"], event["anonymousId"]) == ("johndoe", "anon-b")
    for event in from_api:
        assert event["userId"] == "johndoe" and "anonymousId" not in event


def test_an_explicit_anonymous_id_keeps_the_requests_user(analytics_events):
    resolver = "tests.asgi_apps.resolvers.user_id_from_api_key"
    with TestClient(shop(write_key=KEY, user_id_from_scope=resolver)) as http:
        http.post("/as-device", headers={"X-Api-Key": "key-ada"})
    event = analytics_events.assert_tracked("Explicit Device")
    assert (event["userId"], event["anonymousId"]) == ("ada", "device-1")


# -- (c) the user from the scope ----------------------------------------------------------------


def test_user_id_from_scope_as_a_dotted_path(analytics_events):
    resolver = "tests.asgi_apps.resolvers.user_id_from_api_key"
    with TestClient(shop(write_key=KEY, user_id_from_scope=resolver)) as http:
        keyed = http.post("/orders", headers={"X-Api-Key": "key-ada"})
        http.post("/orders")  # no key: nobody, so a minted id
    named, anonymous = analytics_events.tracked("Order Completed")
    assert named["userId"] == "ada" and "anonymousId" not in named
    assert anonymous_cookies(keyed) == []
    assert "userId" not in anonymous and is_uuid(anonymous["anonymousId"])


class BasicAuthBackend(AuthenticationBackend):
    """Starlette's documented example (docs/authentication.md), as written there."""

    async def authenticate(self, conn):
        if "Authorization" not in conn.headers:
            return None
        auth = conn.headers["Authorization"]
        try:
            scheme, credentials = auth.split()
            if scheme.lower() != "basic":
                return None
            decoded = base64.b64decode(credentials).decode("ascii")
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise AuthenticationError("Invalid basic auth credentials") from exc
        username, _, password = decoded.partition(":")
        # (The docs leave verifying the password to the reader: "TODO: You'd want to verify...")
        return AuthCredentials(["authenticated"]), SimpleUser(username)


async def homepage(request):
    analytics_core.track(event="Homepage Viewed")
    if request.user.is_authenticated:
        return PlainTextResponse("Hello, " + request.user.display_name)
    return PlainTextResponse("Hello, you")


def test_starlettes_documented_authentication_example(collector, clients):
    app = Starlette(
        routes=[Route("/", homepage)],
        middleware=[Middleware(AuthenticationMiddleware, backend=BasicAuthBackend())],
    )
    app.add_middleware(SegmentMiddleware, client=clients.make(KEY))
    basic = "Basic " + base64.b64encode(b"ada:lovelace").decode()
    with TestClient(app) as http:
        assert http.get("/", headers={"Authorization": basic}).text == "Hello, ada"
        assert http.get("/").text == "Hello, you"

    ada, nobody = collector.wait_for(2, write_key=KEY)
    assert ada["userId"] == "ada" and "anonymousId" not in ada
    assert "userId" not in nobody and is_uuid(nobody["anonymousId"])


# -- (d) forged forwarding headers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "headers", "expected"),
    [
        # The client's unbalanced quote: alone it is malformed (the peer), and it cannot
        # swallow what the proxy appended after it.
        ({"trusted_proxies": 1}, {"X-Forwarded-For": '"[6.6.6.6]'}, PEER[0]),
        ({"trusted_proxies": 1}, {"X-Forwarded-For": '"[6.6.6.6], 198.51.100.20'}, "198.51.100.20"),
        (
            {"trusted_proxies": 1, "forwarded_header": "Forwarded"},
            {"Forwarded": 'for="[6.6.6.6]'},
            PEER[0],
        ),
        (
            {"trusted_proxies": 1, "forwarded_header": "Forwarded"},
            {"Forwarded": 'for="[6.6.6.6], for=198.51.100.20'},
            "198.51.100.20",
        ),
        # A zone id would carry any text into context.ip.
        ({"trusted_proxies": 1}, {"X-Forwarded-For": "::1%<img src=x onerror=alert(1)>"}, PEER[0]),
        # A proxy that writes Forwarded: the client's own X-Forwarded-For is never read.
        (
            {"trusted_proxies": 1, "forwarded_header": "Forwarded"},
            {"X-Forwarded-For": "6.6.6.6"},
            PEER[0],
        ),
        (
            {"trusted_proxies": 1, "forwarded_header": "Forwarded"},
            {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=198.51.100.20"},
            "198.51.100.20",
        ),
        # No trusted proxy: headers are not read at all.
        ({}, {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6"}, PEER[0]),
    ],
)
def test_forged_forwarding_headers_never_become_the_ip(
    analytics_events, options, headers, expected
):
    with TestClient(shop(write_key=KEY, **options), client=PEER) as http:
        assert http.post("/orders", headers=headers).status_code == 200
    (event,) = analytics_events
    assert event["context"]["ip"] == expected
    wire = json.dumps(event)
    assert "6.6.6.6" not in wire and "<img" not in wire


# -- (e) an invalid call inside a request -------------------------------------------------------


def test_an_invalid_call_never_fails_the_request_when_sending(collector, clients, caplog):
    errors = []
    client = clients.make(KEY, on_error=lambda error, items: errors.append((error, items)))
    with TestClient(shop(client=client)) as http:
        response = http.post("/invalid")
    assert response.status_code == 200, response.text

    (after,) = collector.wait_for(1, write_key=KEY)
    assert after["event"] == "After Invalid"
    ((error, items),) = errors
    assert isinstance(error, analytics_core.ValidationError) and "event" in str(error)
    assert items == [{"type": "track"}]
    assert "a track call inside a request was invalid" in caplog.text


def test_an_invalid_call_raises_under_the_test_capture(analytics_events):
    app = shop(client=analytics_core.Client(KEY, send=False))
    with TestClient(app) as http, pytest.raises(analytics_core.ValidationError, match="event"):
        http.post("/invalid")
    # Leaving the capture is what production is like: the request answers.
    with allow_sending(), TestClient(app) as http:
        assert http.post("/invalid").status_code == 200
    analytics_events.assert_nothing_sent()


# -- (f) uvicorn's own proxy headers, in real uvicorn processes --------------------------------


def uvicorn(collector, trusted_proxies: int, *options: str) -> ServerProcess:
    port = free_port()
    env = python_env(
        {
            "TESTAPP_WRITE_KEY": KEY,
            "TESTAPP_COLLECTOR_URL": collector.url,
            "TESTAPP_TRUSTED_PROXIES": str(trusted_proxies),
        }
    )
    env.pop("FORWARDED_ALLOW_IPS", None)  # uvicorn's defaults, whatever this shell set
    command = executable("uvicorn") + ["tests.asgi_apps.proxied:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", *options]
    return ServerProcess(command, port, env=env, ready_path="/health")


def visit(server: ServerProcess, visitor: str, forwarded_for: str) -> None:
    headers = {"X-Forwarded-For": forwarded_for, "Cookie": ajs_cookie(visitor)}
    response = server.get("/visit", headers=headers)
    assert response.status_code == 200, server.output()


WARNING = re.compile(r"WARNING segment: analytics: the server took .*--forwarded-allow-ips")


@pytest.mark.slow
def test_uvicorn_defaults_let_a_local_client_choose_its_ip_and_we_warn(collector):
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default and rewrites scope["client"]
    # before any middleware runs: trusted_proxies=0 cannot undo that, so the middleware warns.
    visitor = str(uuid.uuid4())
    with uvicorn(collector, 0) as server:
        visit(server, visitor, "6.6.6.6")
        visit(server, visitor, "6.6.6.7")
        events = collector.wait_for(2, anonymous_id=visitor)
        server.stop()
        output = server.output()
    assert [event["context"]["ip"] for event in events] == ["6.6.6.6", "6.6.6.7"]
    assert len(WARNING.findall(output)) == 1, output  # once per process


@pytest.mark.slow
def test_uvicorn_without_proxy_headers_gives_the_socket_peer(collector):
    visitor = str(uuid.uuid4())
    with uvicorn(collector, 0, "--no-proxy-headers") as server:
        visit(server, visitor, "6.6.6.6")
        (event,) = collector.wait_for(1, anonymous_id=visitor)
        server.stop()
        output = server.output()
    assert event["context"]["ip"] == "127.0.0.1"
    assert "forwarded-allow-ips" not in output, output


@pytest.mark.slow
def test_uvicorn_without_proxy_headers_and_one_trusted_proxy(collector):
    # 127.0.0.1 is the proxy here: it appended the address that connected to it.
    visitor = str(uuid.uuid4())
    with uvicorn(collector, 1, "--no-proxy-headers") as server:
        visit(server, visitor, "6.6.6.6, 203.0.113.9")
        (event,) = collector.wait_for(1, anonymous_id=visitor)
        server.stop()
        output = server.output()
    assert event["context"]["ip"] == "203.0.113.9"
    assert "forwarded-allow-ips" not in output, output
