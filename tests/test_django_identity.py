"""Who a message is about, inside real Django requests (``Client`` drives the WSGI handler,
``AsyncClient`` the ASGI one), against the real collector or the per-test capture.

The visitors first: nobody logged in, no ``ajs_anonymous_id`` cookie (curl, a crawler, an API
client with a bearer token, a first visit). A view's ``analytics.track(event=...)`` with no ids
must still answer 200, the event must carry a minted anonymous id, and the browser must get it
back as analytics.js's cookie. Then how identities are stitched (explicit ids, ``identify``,
``set_user_id``, ``IDENTIFY_ON_LOGIN``), the ``USER_ID`` setting and its system checks, hostile
forwarding headers, and invalid calls inside a request.
"""

import json
import logging
import re
import time
from email.utils import parsedate_to_datetime

import pytest
from analytics_django.configure import MIDDLEWARE_PATH, configure
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

import analytics_core
from analytics_core import ValidationError
from analytics_core.testing import allow_sending
from tests.django_project.testing import (
    LOGIN_VIEWS,
    browser_cookie,
    collector_settings,
    delivered,
    get,
    minted,
    only,
    post,
)

COOKIE = "ajs_anonymous_id"
ONE_YEAR = 365 * 24 * 60 * 60

# Visitors with neither a login nor the cookie: each used to get HTTP 500 from a view's
# track(event=...) (ValidationError: either user_id or anonymous_id is required).
VISITORS = {
    "no-user-agent": {},
    "curl": {"user-agent": "curl/8.5.0", "accept": "*/*"},
    "crawler": {
        "user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    },
    "api-client": {
        "authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqb2huZG9lIn0.c2ln",
        "accept": "application/json",
        "user-agent": "python-httpx/0.28",
    },
}

ERRORS = []


def record_error(error, items):
    """ON_ERROR, by its dotted path, in the invalid-call tests."""
    ERRORS.append((error, items))


@pytest.fixture(autouse=True)
def _installed_client():
    # The shared conftest resets analytics_core.default_client after every test; install the
    # app's client again, as AppConfig.ready() did at start-up.
    configure()


@pytest.fixture(params=["client", "async_client"])
def any_client(request):
    """Each test client: ``Client`` drives the sync handler, ``AsyncClient`` the ASGI one."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def tracking(settings, collector):
    """ANALYTICS pointed at the collector (pytest-django's settings fixture restores it)."""
    settings.ANALYTICS = collector_settings(collector)
    return collector


def assert_no_cookie(response):
    assert COOKIE not in response.cookies, response.cookies[COOKIE].OutputString()


# -- (a) the visitor nobody knows ---------------------------------------------------------------


@pytest.mark.parametrize("visitor", list(VISITORS))
@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_a_visitor_with_no_ids_is_served_and_gets_a_minted_anonymous_id(
    tracking, any_client, view, visitor
):
    response = get(any_client, view, headers=VISITORS[visitor])
    assert response.status_code == 200, response.content
    assert response.json()["ok"] is True

    event = only(delivered(tracking))
    assert event["messageId"] == response.json()["messageId"]
    assert "userId" not in event
    anonymous_id = minted(event["anonymousId"])
    assert response.cookies[COOKIE].value == f"%22{anonymous_id}%22"
    assert event["context"]["ip"] == "127.0.0.1"
    assert event["context"]["page"]["path"] == view


def test_the_cookie_is_written_the_way_analytics_js_writes_it(tracking, any_client):
    before = time.time()
    response = get(any_client, "/track/")
    anonymous_id = minted(only(delivered(tracking))["anonymousId"])

    morsel = response.cookies[COOKIE]
    assert morsel.value == f"%22{anonymous_id}%22"  # JSON-quoted, the quotes URL-encoded
    assert morsel["path"] == "/"
    assert str(morsel["max-age"]) == str(ONE_YEAR)
    # Expires too, for browsers that ignore Max-Age: a year from now.
    expires = parsedate_to_datetime(morsel["expires"]).timestamp()
    assert before + ONE_YEAR - 5 <= expires <= time.time() + ONE_YEAR + 5
    assert morsel["samesite"] == "Lax"
    assert not morsel["httponly"]  # analytics.js in the page has to read it
    assert not morsel["secure"]  # plain http: a Secure cookie would never come back
    assert not morsel["domain"]  # host-only unless ANONYMOUS_ID_COOKIE_DOMAIN says otherwise
    header = morsel.OutputString()
    assert "HttpOnly" not in header and "Secure" not in header and "Domain" not in header


def test_the_cookie_is_secure_when_the_request_came_over_https(tracking, any_client):
    response = get(any_client, "/track/", secure=True)
    event = only(delivered(tracking))
    assert event["context"]["page"]["url"] == "https://testserver/track/"
    morsel = response.cookies[COOKIE]
    assert morsel.value == f"%22{minted(event['anonymousId'])}%22"
    assert morsel["secure"] is True
    assert "Secure" in morsel.OutputString()


def test_the_cookie_domain_comes_from_the_setting(settings, collector, any_client):
    settings.ANALYTICS = collector_settings(collector, ANONYMOUS_ID_COOKIE_DOMAIN=".example.com")
    response = get(any_client, "/track/")
    event = only(delivered(collector))
    morsel = response.cookies[COOKIE]
    assert morsel.value == f"%22{minted(event['anonymousId'])}%22"
    assert morsel["domain"] == ".example.com"


def test_the_next_request_continues_the_same_id_and_sets_no_cookie(tracking, any_client):
    first = get(any_client, "/track/?n=1")
    # The test client keeps the cookie and sends it back, as a browser does.
    assert any_client.cookies[COOKIE].value == first.cookies[COOKIE].value
    second = get(any_client, "/atrack/?n=2")
    assert second.status_code == 200
    assert_no_cookie(second)  # the browser has it already: no Set-Cookie on every response

    one, two = delivered(tracking)
    assert two["anonymousId"] == minted(one["anonymousId"])
    assert [one["properties"]["n"], two["properties"]["n"]] == [1, 2]


def test_every_call_of_one_request_carries_the_one_minted_id(tracking, any_client):
    response = get(any_client, "/track-twice/")
    first, second = delivered(tracking)
    assert first["anonymousId"] == second["anonymousId"] == minted(first["anonymousId"])
    assert response.cookies[COOKIE].value == f"%22{first['anonymousId']}%22"


@pytest.mark.parametrize("pageviews", [False, True], ids=["pageviews-off", "pageviews-on"])
@pytest.mark.parametrize("path", ["/pid/", "/plain/", "/missing/", "/no-such-page/"])
def test_a_request_that_tracks_nothing_sets_no_cookie(
    settings, collector, any_client, path, pageviews
):
    # Consent: the cookie is only set when a call actually needed an id.
    settings.ANALYTICS = collector_settings(collector, PAGEVIEWS=pageviews)
    response = get(any_client, path)
    assert_no_cookie(response)
    assert delivered(collector) == []


def test_a_page_not_tracked_sets_no_cookie(tracking, any_client):
    # An HTML page with PAGEVIEWS off: nothing needed an id.
    response = get(any_client, "/")
    assert response.status_code == 200
    assert_no_cookie(response)
    assert delivered(tracking) == []


def test_with_the_cookie_turned_off_the_id_lives_for_one_request(settings, collector, any_client):
    settings.ANALYTICS = collector_settings(collector, ANONYMOUS_ID_COOKIE=False)
    first = get(any_client, "/track/")
    second = get(any_client, "/track/")
    assert first.status_code == second.status_code == 200
    assert_no_cookie(first)
    assert_no_cookie(second)
    one, two = delivered(collector)
    # Both served with an id of their own, and nothing ties them together.
    assert minted(one["anonymousId"]) != minted(two["anonymousId"])


def test_the_apps_own_anonymous_id_cookie_wins(tracking, any_client):
    response = get(any_client, "/own-cookie/")
    assert response.status_code == 200
    morsel = response.cookies[COOKIE]
    assert morsel.value == "%22app-own-id%22"
    assert str(morsel["max-age"]) == "60"  # the app's cookie, untouched
    minted(only(delivered(tracking))["anonymousId"])


@pytest.mark.django_db
def test_a_logged_in_user_needs_no_minted_id(tracking, any_client, django_user_model):
    user = django_user_model.objects.create_user("ann", password="pw")
    any_client.force_login(user)
    response = get(any_client, "/atrack/")
    event = only(delivered(tracking))
    assert event["userId"] == str(user.pk)
    assert "anonymousId" not in event
    assert_no_cookie(response)


# -- (b) stitching identities -------------------------------------------------------------------


def test_an_explicit_user_id_keeps_the_cookies_anonymous_id(tracking, any_client):
    any_client.cookies[COOKIE] = browser_cookie("anon-before-signup")
    get(any_client, "/track/?user_id=u-7")
    event = only(delivered(tracking))
    # Both ids on one message: what lets Segment join the anonymous history to the user.
    assert event["userId"] == "u-7"
    assert event["anonymousId"] == "anon-before-signup"


def test_an_explicit_user_id_never_mints(tracking, any_client):
    response = get(any_client, "/atrack/?user_id=u-8")
    event = only(delivered(tracking))
    assert event["userId"] == "u-8"
    assert "anonymousId" not in event
    assert_no_cookie(response)


def test_identify_makes_the_rest_of_the_request_carry_the_user(tracking, any_client):
    any_client.cookies[COOKIE] = browser_cookie("anon-identify")
    response = get(any_client, "/identify/?user_id=member-7")
    assert response.status_code == 200
    get(any_client, "/track/?n=2")  # a later request: identify() said nothing about it

    identify, after, later = delivered(tracking)
    assert identify["type"] == "identify"
    assert identify["userId"] == after["userId"] == "member-7"
    assert identify["anonymousId"] == after["anonymousId"] == "anon-identify"
    assert after["event"] == "After Identify"
    assert "userId" not in later
    assert later["anonymousId"] == "anon-identify"


def test_identify_without_a_cookie_mints_nothing(tracking, any_client):
    response = get(any_client, "/identify/?user_id=member-8")
    identify, after = delivered(tracking)
    assert identify["userId"] == after["userId"] == "member-8"
    assert "anonymousId" not in identify and "anonymousId" not in after
    assert_no_cookie(response)


@pytest.mark.django_db
def test_identify_does_not_replace_a_logged_in_user(tracking, client, django_user_model):
    user = django_user_model.objects.create_user("eve", password="pw")
    client.force_login(user)
    get(client, "/identify/?user_id=someone-else")
    identify, after = delivered(tracking)
    assert identify["userId"] == "someone-else"  # what the call said
    assert after["userId"] == str(user.pk)  # the request's user is still the one logged in


def test_set_user_id_names_the_requests_user(tracking, any_client):
    any_client.cookies[COOKIE] = browser_cookie("anon-set-user")
    response = get(any_client, "/set-user/?user_id=m-9")
    assert response.json()["assigned"] is True
    event = only(delivered(tracking))
    assert event["userId"] == "m-9"
    assert event["anonymousId"] == "anon-set-user"


@pytest.mark.django_db
def test_set_user_id_wins_over_request_user_and_none_gives_it_back(
    tracking, client, django_user_model
):
    user = django_user_model.objects.create_user("sam", password="pw")
    client.force_login(user)
    get(client, "/set-user/?user_id=m-10")
    get(client, "/set-user/")  # set_user_id(None): the logged-in user applies again
    assigned, cleared = delivered(tracking)
    assert assigned["userId"] == "m-10"
    assert cleared["userId"] == str(user.pk)


def test_set_user_id_outside_a_request_changes_nothing():
    assert analytics_core.set_user_id("nobody") is False


@pytest.mark.django_db
@pytest.mark.parametrize("with_cookie", [True, False], ids=["cookie", "no-cookie"])
def test_identify_on_login_carries_the_anonymous_id_before_login(
    settings, collector, client, django_user_model, with_cookie
):
    settings.ANALYTICS = collector_settings(collector, IDENTIFY_ON_LOGIN=True)
    user = django_user_model.objects.create_user("lin", "lin@example.com", "pw")
    if with_cookie:
        client.cookies[COOKIE] = browser_cookie("anon-lin")
    # The view tracks before login() (no cookie: that call mints), then after.
    response = post(client, "/login-tracked/", {"username": "lin", "password": "pw"})
    assert response.status_code == 200, response.content

    submitted, identify, signed_in = delivered(collector)
    assert submitted["event"] == "Login Submitted" and "userId" not in submitted
    anonymous_id = submitted["anonymousId"]
    if with_cookie:
        assert anonymous_id == "anon-lin"
        assert_no_cookie(response)
    else:
        minted(anonymous_id)
        assert response.cookies[COOKIE].value == f"%22{anonymous_id}%22"
    assert identify["type"] == "identify"
    assert identify["userId"] == signed_in["userId"] == str(user.pk)
    assert identify["anonymousId"] == signed_in["anonymousId"] == anonymous_id
    assert identify["traits"] == {"username": "lin", "email": "lin@example.com"}


@pytest.mark.django_db
@pytest.mark.parametrize("view", LOGIN_VIEWS)
def test_identify_on_login_uses_the_user_id_setting(
    settings, collector, any_client, django_user_model, view
):
    settings.ANALYTICS = collector_settings(
        collector, IDENTIFY_ON_LOGIN=True, USER_ID="tests.django_project.identity.username"
    )
    django_user_model.objects.create_user("ida", "ida@example.com", "pw")
    any_client.cookies[COOKIE] = browser_cookie("anon-ida")
    response = post(any_client, view, {"username": "ida", "password": "pw"})
    assert response.status_code == 200, response.content

    identify, signed_in = delivered(collector)
    assert identify["type"] == "identify"
    # The resolver's answer, not the primary key: one person is one userId everywhere.
    assert identify["userId"] == signed_in["userId"] == "ida"
    assert identify["anonymousId"] == signed_in["anonymousId"] == "anon-ida"


# -- (c) the USER_ID setting --------------------------------------------------------------------


@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_user_id_as_a_callable(settings, collector, any_client, view):
    settings.ANALYTICS = collector_settings(
        collector, USER_ID=lambda request: request.headers.get("X-Member-Id")
    )
    get(any_client, view, headers={"x-member-id": "gw-31"})
    response = get(any_client, view)  # no header: nobody, so an anonymous id
    with_header, without = delivered(collector)
    assert with_header["userId"] == "gw-31"
    assert "anonymousId" not in with_header
    assert "userId" not in without
    assert response.cookies[COOKIE].value == f"%22{minted(without['anonymousId'])}%22"


@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_user_id_as_a_dotted_path(settings, collector, any_client, view):
    settings.ANALYTICS = collector_settings(
        collector, USER_ID="tests.django_project.identity.member_from_header"
    )
    get(any_client, view, headers={"x-member-id": "gw-32"})
    assert only(delivered(collector))["userId"] == "gw-32"


@pytest.mark.django_db
@pytest.mark.parametrize("auth_middleware", [True, False], ids=["with-auth", "custom-auth-only"])
@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_a_custom_session_login_read_by_the_user_id_setting(
    settings, collector, any_client, view, auth_middleware
):
    # Custom auth the integration cannot know: the member's id in the session. A project with
    # its own auth may not run django.contrib.auth's middleware at all; then nothing loaded the
    # session before an async view, and the resolver's session query would run in the event
    # loop (SynchronousOnlyOperation: no userId) unless it is asked in a thread first.
    if not auth_middleware:
        settings.MIDDLEWARE = [
            MIDDLEWARE_PATH,
            "django.contrib.sessions.middleware.SessionMiddleware",
        ]
    settings.ANALYTICS = collector_settings(
        collector, USER_ID="tests.django_project.identity.member_id"
    )
    assert get(any_client, "/member-login/?member=m-42").status_code == 200
    response = get(any_client, view)
    assert response.status_code == 200
    event = only(delivered(collector))
    assert event["userId"] == "m-42"
    assert_no_cookie(response)


@pytest.mark.django_db
@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_a_resolver_that_queries_the_database(
    settings, collector, any_client, view, django_user_model
):
    user = django_user_model.objects.create_user("api-user", password="pw")
    settings.ANALYTICS = collector_settings(
        collector, USER_ID="tests.django_project.identity.member_from_database"
    )
    assert get(any_client, view, headers={"x-member-name": "api-user"}).status_code == 200
    assert only(delivered(collector))["userId"] == f"db-{user.pk}"


@pytest.mark.django_db
@pytest.mark.parametrize("view", ["/track/", "/atrack/", "/"])
def test_a_resolver_reading_request_user(settings, collector, any_client, view, django_user_model):
    # request.user is a lazy object whose first read queries the database: in an async view
    # under ASGI nothing has read it before the view runs (auser() has a cache of its own).
    user = django_user_model.objects.create_user("zoe", password="pw")
    any_client.force_login(user)
    settings.ANALYTICS = collector_settings(
        collector, USER_ID="tests.django_project.identity.username", PAGEVIEWS=True
    )
    assert get(any_client, view).status_code == 200
    assert only(delivered(collector))["userId"] == "zoe"


@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_a_resolver_that_raises_is_logged_and_the_request_served(
    settings, collector, any_client, view, caplog
):
    settings.ANALYTICS = collector_settings(
        collector, USER_ID="tests.django_project.identity.broken"
    )
    with caplog.at_level(logging.ERROR, logger="segment"):
        response = get(any_client, view)
    assert response.status_code == 200
    assert "ANALYTICS['USER_ID'] raised" in caplog.text
    assert "KeyError" in caplog.text
    event = only(delivered(collector))
    assert "userId" not in event
    minted(event["anonymousId"])


def analytics_checks():
    return [message for message in run_checks() if message.id.startswith("analytics_django.")]


def test_manage_py_check_reports_a_user_id_path_that_does_not_import(settings):
    settings.ANALYTICS = {"SEND": False, "USER_ID": "tests.django_project.no_such.resolver"}
    [message] = analytics_checks()
    assert message.id == "analytics_django.E004"
    assert "ANALYTICS['USER_ID']" in message.msg
    assert "tests.django_project.no_such.resolver" in message.msg
    with pytest.raises(SystemCheckError, match=r"analytics_django\.E004"):
        call_command("check")


def test_manage_py_check_reports_a_user_id_path_that_is_not_callable(settings):
    settings.ANALYTICS = {"SEND": False, "USER_ID": "tests.django_project.identity.NOT_CALLABLE"}
    [message] = analytics_checks()
    assert message.id == "analytics_django.E004"
    assert "ANALYTICS['USER_ID']" in message.msg
    assert "callable" in message.msg


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("FORWARDED_HEADER", 42, "a header name"),
        ("FORWARDED_HEADER", "X Forwarded For", "a header name"),
        ("ANONYMOUS_ID_COOKIE", "yes", "a bool"),
        ("ANONYMOUS_ID_COOKIE_DOMAIN", "https://example.com", "a domain"),
        ("ANONYMOUS_ID_COOKIE_DOMAIN", 7, "a domain"),
        ("PAGEVIEWS_EXCLUDE", "/static/", "a list of path prefixes"),
        ("PAGEVIEWS_EXCLUDE", ["static/"], "a list of path prefixes"),
        ("PAGEVIEWS_EXCLUDE", [r"^/api/"], "a list of path prefixes"),
        ("FLUSH_EACH_REQUEST", "yes", "True, False or None"),
        ("FLUSH_EACH_REQUEST", 1, "True, False or None"),
        ("USER_ID", 42, "a callable"),
        ("USER_ID", "", "a callable"),
    ],
)
def test_manage_py_check_reports_wrong_types_of_the_identity_keys(
    settings, client, analytics_events, key, value, expected
):
    settings.ANALYTICS = {"SEND": False, key: value}
    [message] = analytics_checks()
    assert message.id == "analytics_django.E003"
    assert f"settings.ANALYTICS[{key!r}] must be {expected}" in message.msg
    # The project still starts and serves; the request still gets its id.
    response = client.get("/track/")
    assert response.status_code == 200
    minted(analytics_events.assert_tracked("Test Event")["anonymousId"])


def test_good_values_of_the_identity_keys_pass_the_checks(settings):
    settings.ANALYTICS = {
        "SEND": False,
        "FORWARDED_HEADER": "Forwarded",
        "ANONYMOUS_ID_COOKIE": False,
        "ANONYMOUS_ID_COOKIE_DOMAIN": ".example.com",
        "PAGEVIEWS_EXCLUDE": ["/internal/", re.compile(r"^/api/")],
        "FLUSH_EACH_REQUEST": None,
        "USER_ID": "tests.django_project.identity.member_id",
    }
    assert analytics_checks() == []
    call_command("check")


# -- (d) forwarding headers a client wrote ------------------------------------------------------

PEER = "127.0.0.1"  # REMOTE_ADDR of Django's test clients
PROXY_SAW = "203.0.113.9"  # what the one trusted proxy appended


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        # An unbalanced quote in the client's part used to swallow what the proxy appended.
        ("X-Forwarded-For", '"[6.6.6.6]', PEER),
        ("X-Forwarded-For", f'"[6.6.6.6], {PROXY_SAW}', PROXY_SAW),
        ("X-Forwarded-For", f'"[6.6.6.6]",{PROXY_SAW}', PROXY_SAW),
        ("X-Forwarded-For", f'6.6.6.6, "{PROXY_SAW}', PEER),
        ("X-Forwarded-For", "6.6.6.6, [6.6.6.6]", PEER),
        # Zone ids carry any text; they are refused, never copied into context.ip.
        ("X-Forwarded-For", "fe80::1%<img src=x onerror=alert(1)>", PEER),
        ("X-Forwarded-For", "6.6.6.6, fe80::1%eth0", PEER),
    ],
)
def test_a_client_cannot_choose_its_ip_behind_one_proxy(
    settings, client, analytics_events, header, value, expected
):
    settings.ANALYTICS = {"SEND": False, "TRUSTED_PROXIES": 1}
    assert client.get("/track/", headers={header: value}).status_code == 200
    event = analytics_events.assert_tracked("Test Event")
    assert event["context"]["ip"] == expected
    wire = json.dumps(event)
    assert "6.6.6.6" not in wire and "<img" not in wire and "eth0" not in wire


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # The proxy writes only Forwarded: the client's own X-Forwarded-For is not read at all.
        ({"X-Forwarded-For": "6.6.6.6"}, PEER),
        ({"X-Forwarded-For": "6.6.6.6", "Forwarded": f"for={PROXY_SAW}"}, PROXY_SAW),
        ({"Forwarded": f'for="[6.6.6.6], for={PROXY_SAW}'}, PROXY_SAW),
        ({"Forwarded": 'for="[6.6.6.6]'}, PEER),
        ({"Forwarded": 'for="[fe80::1%25eth0]"'}, PEER),
        ({"Forwarded": 'for="[2001:db8::7]:4711"'}, "2001:db8::7"),
    ],
)
def test_forwarded_header_forwarded_reads_only_rfc_7239(
    settings, any_client, analytics_events, headers, expected
):
    settings.ANALYTICS = {"SEND": False, "TRUSTED_PROXIES": 1, "FORWARDED_HEADER": "Forwarded"}
    assert get(any_client, "/track/", headers=headers).status_code == 200
    event = analytics_events.assert_tracked("Test Event")
    assert event["context"]["ip"] == expected
    assert "6.6.6.6" not in json.dumps(event)


@pytest.mark.parametrize("peer", ["fe80::1%eth0", "fe80::1%<script>"])
def test_a_peer_with_a_zone_id_never_shows_it(client, analytics_events, peer):
    # REMOTE_ADDR as a server on a link-local interface could report it.
    assert client.get("/track/", REMOTE_ADDR=peer).status_code == 200
    event = analytics_events.assert_tracked("Test Event")
    assert "%" not in event["context"].get("ip", "")
    assert "eth0" not in json.dumps(event) and "<script>" not in json.dumps(event)


# -- (e) an invalid call inside a request -------------------------------------------------------


@pytest.mark.parametrize("view", ["/properties/", "/aproperties/"])
def test_an_invalid_call_never_fails_the_request(settings, collector, any_client, view, caplog):
    ERRORS.clear()
    settings.ANALYTICS = collector_settings(
        collector, ON_ERROR="tests.test_django_identity.record_error"
    )
    with caplog.at_level(logging.ERROR, logger="segment"):
        response = post(any_client, view, "[1, 2]", content_type="application/json")
        good = post(any_client, view, '{"plan": "pro"}', content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": False}
    assert good.json() == {"ok": True}
    assert "a track call inside a request was invalid" in caplog.text
    assert "properties" in caplog.text
    [(error, items)] = ERRORS
    assert isinstance(error, ValidationError)
    assert items == [{"type": "track"}]
    assert only(delivered(collector))["properties"] == {"plan": "pro"}


def test_an_invalid_call_never_fails_the_request_under_allow_sending(client, analytics_events):
    with allow_sending():
        response = client.post("/properties/", "[1, 2]", content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"ok": False}
    analytics_events.assert_nothing_sent()


@pytest.mark.parametrize("view", ["/properties/", "/aproperties/"])
def test_an_invalid_call_raises_in_a_test_so_the_bug_shows(any_client, analytics_events, view):
    with pytest.raises(ValidationError, match="properties"):
        post(any_client, view, "[1, 2]", content_type="application/json")
    analytics_events.assert_nothing_sent()
