"""The Django integration with Django's test clients (WSGI-style ``Client`` and ``AsyncClient``),
against the real collector: what each request contributes to the messages sent inside it.

Views call ``analytics_core.track(...)`` with no ids (tests/django_project/views.py); each test
flushes the default client and reads what the collector stored.
"""

import json

import pytest
from analytics_django.configure import MIDDLEWARE_PATH, configure
from django.test import override_settings

import analytics_core
from analytics_core.context import current_request_context
from tests.django_project.testing import (
    LOGIN_VIEWS,
    browser_cookie,
    collector_settings,
    delivered,
    get,
    only,
    post,
)

HEADERS = {
    "user-agent": "Mozilla/5.0 (TestBrowser)",
    "accept-language": "en-GB,en;q=0.9",
    "referer": "https://referrer.example/from",
}


@pytest.fixture(autouse=True)
def _installed_client():
    # The shared conftest resets analytics_core.default_client after every test; install the
    # app's client again, as AppConfig.ready() did at start-up.
    configure()


@pytest.fixture
def tracking(settings, collector):
    """ANALYTICS pointed at the collector fixture (pytest-django's settings: restored after)."""
    settings.ANALYTICS = collector_settings(collector)
    return collector


@pytest.fixture(params=["client", "async_client"])
def any_client(request):
    """Each test client: ``Client`` drives the sync handler, ``AsyncClient`` the ASGI one."""
    return request.getfixturevalue(request.param)


def test_adding_the_app_put_the_middleware_first(settings):
    assert settings.MIDDLEWARE[0] == MIDDLEWARE_PATH
    assert settings.MIDDLEWARE.count(MIDDLEWARE_PATH) == 1


@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_request_context_fills_a_call_with_no_ids(tracking, any_client, view):
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-42")
    response = get(any_client, f"{view}?n=7&q=shoes", headers=HEADERS)
    assert response.status_code == 200
    assert response.json()["ok"] is True

    event = only(delivered(tracking))
    assert event["messageId"] == response.json()["messageId"]
    assert event["anonymousId"] == "anon-42"
    assert "userId" not in event
    assert event["properties"]["n"] == 7
    context = event["context"]
    assert context["ip"] == "127.0.0.1"
    assert context["userAgent"] == HEADERS["user-agent"]
    assert context["locale"] == "en-GB"
    assert context["page"] == {
        "path": view,
        "search": "?n=7&q=shoes",
        "url": f"http://testserver{view}?n=7&q=shoes",
        "referrer": HEADERS["referer"],
    }
    assert context["library"]["name"] == "analytics-core"


@pytest.mark.django_db
@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_the_authenticated_user_is_the_default_user_id(
    tracking, any_client, view, django_user_model
):
    # Async views under either handler: the id is read before the view (await request.auser()
    # under ASGI, request.user under WSGI), so no synchronous query runs in the event loop
    # (that would raise SynchronousOnlyOperation, and the message would carry no userId).
    user = django_user_model.objects.create_user("ada", "ada@example.com", "pw")
    any_client.force_login(user)
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-ada")
    assert get(any_client, view).status_code == 200

    event = only(delivered(tracking))
    assert event["userId"] == str(user.pk)
    assert event["anonymousId"] == "anon-ada"


@pytest.mark.django_db
@pytest.mark.parametrize("view", LOGIN_VIEWS)
def test_a_call_after_login_in_the_same_request_has_the_new_user(
    tracking, any_client, view, django_user_model
):
    user = django_user_model.objects.create_user("grace", "grace@example.com", "pw")
    response = post(any_client, view, {"username": "grace", "password": "pw"})
    assert response.status_code == 200, response.content

    event = only(delivered(tracking, event="Signed In"))
    assert event["userId"] == str(user.pk)
    assert event["context"]["page"]["path"] == view


def test_forwarded_for_is_ignored_without_trusted_proxies(settings, collector, client):
    settings.ANALYTICS = collector_settings(collector, TRUSTED_PROXIES=0)
    get(client, "/track/?user_id=u1", headers={"x-forwarded-for": "6.6.6.6"})
    assert only(delivered(collector))["context"]["ip"] == "127.0.0.1"


def test_one_trusted_proxy_takes_the_right_most_forwarded_entry(settings, collector, any_client):
    settings.ANALYTICS = collector_settings(collector, TRUSTED_PROXIES=1)
    # The client forged the first entry; the proxy appended the address it saw.
    forged = {"x-forwarded-for": "6.6.6.6, 203.0.113.9"}
    get(any_client, "/track/?user_id=u1", headers=forged)
    assert only(delivered(collector))["context"]["ip"] == "203.0.113.9"


@pytest.mark.parametrize(
    "cookie",
    ["%E0%A4%A", "%22unterminated", "%7B%22a%22%3A1%7D", "x" * 5000, '"', "%22%22"],
)
def test_a_malformed_anonymous_id_cookie_is_left_out(tracking, client, cookie):
    client.cookies["ajs_anonymous_id"] = cookie
    response = get(client, "/track/?user_id=u1")
    assert response.status_code == 200
    event = only(delivered(tracking))
    assert "anonymousId" not in event
    assert event["userId"] == "u1"


def test_malformed_headers_do_not_raise_and_are_left_out_or_fall_back(settings, collector, client):
    settings.ANALYTICS = collector_settings(collector, TRUSTED_PROXIES=2)
    headers = {
        "accept-language": "@@@;;,",
        "x-forwarded-for": "not-an-ip, ,,",
        "user-agent": "A" * 10000,
        "cookie": 'ajs_anonymous_id="unterminated; =; ;;',
    }
    response = get(client, "/track/?user_id=u1", headers=headers)
    assert response.status_code == 200
    context = only(delivered(collector))["context"]
    assert "locale" not in context
    # A malformed trusted part of X-Forwarded-For: the socket peer, never a guess.
    assert context["ip"] == "127.0.0.1"
    assert "userAgent" not in context


def test_a_disallowed_host_leaves_the_url_out(tracking, client):
    response = get(client, "/track/?user_id=u1", headers={"host": "evil.example"})
    assert response.status_code == 200
    page = only(delivered(tracking))["context"]["page"]
    assert page == {"path": "/track/", "search": "?user_id=u1"}


def test_explicit_context_wins_key_by_key(tracking, any_client):
    explicit = {"ip": "192.0.2.1", "page": {"url": "https://explicit.example/x"}, "campaign": {}}
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-1")
    query = f"?context={json.dumps(explicit)}"
    get(any_client, "/atrack/" + query, headers=HEADERS)
    context = only(delivered(tracking))["context"]
    assert context["ip"] == "192.0.2.1"
    assert context["page"]["url"] == "https://explicit.example/x"
    assert context["page"]["path"] == "/atrack/"  # the request's, under the caller's url
    assert context["userAgent"] == HEADERS["user-agent"]
    assert context["campaign"] == {}


@pytest.mark.django_db
def test_an_explicit_user_id_wins_and_keeps_the_request_anonymous_id(
    tracking, client, django_user_model
):
    client.force_login(django_user_model.objects.create_user("bob", password="pw"))
    client.cookies["ajs_anonymous_id"] = browser_cookie("anon-bob")
    get(client, "/track/?user_id=explicit-user")
    event = only(delivered(tracking))
    assert event["userId"] == "explicit-user"
    # Key by key: the browser's anonymous id stays, which is what stitches the identities.
    assert event["anonymousId"] == "anon-bob"


@pytest.mark.parametrize("view", ["/boom/", "/aboom/"])
def test_the_context_is_reset_after_an_exception(tracking, any_client, view):
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-boom")
    with pytest.raises(RuntimeError):
        get(any_client, view)
    # The sync test client runs the handler on this very thread: a leaked context would show.
    assert current_request_context() is None
    event = only(delivered(tracking))
    assert event["anonymousId"] == "anon-boom"
    assert event["context"]["page"]["path"] == view


def test_nothing_leaks_from_one_request_to_the_next(tracking, client):
    client.cookies["ajs_anonymous_id"] = browser_cookie("first-visitor")
    get(client, "/track/?n=1", headers={"user-agent": "First/1.0"})
    del client.cookies["ajs_anonymous_id"]
    get(client, "/track/?n=2&user_id=second", headers={"user-agent": "Second/2.0"})
    assert current_request_context() is None
    analytics_core.track("outside", "Outside A Request")

    first, second, outside = delivered(tracking)
    assert first["anonymousId"] == "first-visitor"
    assert "anonymousId" not in second
    assert second["context"]["userAgent"] == "Second/2.0"
    assert set(outside["context"]) == {"library"}


@override_settings(
    MIDDLEWARE=[MIDDLEWARE_PATH, "django.contrib.sessions.middleware.SessionMiddleware"]
)
@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_without_the_auth_middleware_there_is_no_user(tracking, any_client, view):
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-no-auth")
    assert get(any_client, view).status_code == 200
    event = only(delivered(tracking))
    assert "userId" not in event
    assert event["anonymousId"] == "anon-no-auth"


# Page views: tests/test_django_pageviews.py.


# -- IDENTIFY_ON_LOGIN -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("view", LOGIN_VIEWS)
def test_identify_on_login(settings, collector, any_client, view, django_user_model):
    settings.ANALYTICS = collector_settings(collector, IDENTIFY_ON_LOGIN=True)
    user = django_user_model.objects.create_user("lin", "lin@example.com", "pw")
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-before-login")
    post(any_client, view, {"username": "lin", "password": "pw"}, headers=HEADERS)

    identify = only(delivered(collector, type="identify"))
    assert identify["userId"] == str(user.pk)
    # Both ids: what lets Segment tie the visitor's anonymous history to the user.
    assert identify["anonymousId"] == "anon-before-login"
    assert identify["traits"] == {"username": "lin", "email": "lin@example.com"}
    # Sent while the login request was handled: it carries that request's context.
    assert identify["context"]["page"]["path"] == view
    assert identify["context"]["userAgent"] == HEADERS["user-agent"]


@pytest.mark.django_db
def test_no_identify_on_login_by_default(tracking, client, django_user_model):
    django_user_model.objects.create_user("kim", "kim@example.com", "pw")
    post(client, "/login/", {"username": "kim", "password": "pw"})
    assert [event["type"] for event in delivered(tracking)] == ["track"]


# -- FLUSH_EACH_REQUEST ------------------------------------------------------------------------


@pytest.mark.parametrize("flush", [True, None], ids=["on", "default"])
@pytest.mark.parametrize("view", ["/track/", "/atrack/"])
def test_flush_each_request_delivers_before_the_response(
    settings, collector, any_client, view, flush
):
    # A batch would otherwise wait 60 s. The default (None) flushes only under runserver,
    # which the test clients are not (tests/test_django_servers.py runs the real one).
    settings.ANALYTICS = collector_settings(
        collector, UPLOAD_INTERVAL=60, UPLOAD_SIZE=1000, FLUSH_EACH_REQUEST=flush
    )
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-flush")
    assert get(any_client, view).status_code == 200
    assert collector.stats()["messages"] == (1 if flush else 0)
    assert only(delivered(collector))["anonymousId"] == "anon-flush"
