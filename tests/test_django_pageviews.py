"""``PAGEVIEWS``: one ``page`` call per page a browser loads, through real Django requests
(``Client`` and ``AsyncClient``).

Most tests run the fuller URLconf of tests/django_project/site_urls.py: the Django admin mounted
at /backoffice/, routes with converters, Wagtail's catch-all ``re_path`` and a last catch-all
that serves an HTML document for any other path, so that only the page-view rules (not a 404)
keep static files, health checks and the admin out. The rules themselves are
analytics_core.web.pageviews'; these tests prove the Django integration feeds them what Django has
(the resolver's route, the response body, META, STATIC_URL, the admin's mount point).
"""

import re

import pytest
from analytics_django.configure import configure
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from analytics_core.web.pageviews import DEFAULT_EXCLUDE
from tests.django_project.testing import (
    browser_cookie,
    collector_settings,
    delivered,
    get,
    minted,
    only,
    request,
)

HEADERS = {
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "accept-language": "en-GB,en;q=0.9",
    "referer": "https://referrer.example/from",
}
SITE_URLS = "tests.django_project.site_urls"


@pytest.fixture(autouse=True)
def _installed_client():
    configure()  # the shared conftest resets analytics_core.default_client after every test


@pytest.fixture(params=["client", "async_client"])
def any_client(request):
    """Each test client: ``Client`` drives the sync handler, ``AsyncClient`` the ASGI one."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def pageviews(settings, collector):
    """PAGEVIEWS on, sending to the collector, with the project's own URLconf."""
    settings.ANALYTICS = collector_settings(collector, PAGEVIEWS=True)
    return collector


@pytest.fixture
def site(settings):
    """PAGEVIEWS on with the fuller URLconf; messages go to the test's capture."""
    settings.ROOT_URLCONF = SITE_URLS
    settings.ANALYTICS = {"SEND": False, "PAGEVIEWS": True}


def pages(events):
    return events.of_type("page")


def streamed_body(response):
    """A streaming response's body, from a sync or an async iterator."""
    if not response.is_async:
        return b"".join(response.streaming_content)

    async def read():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(read)()


def visit(client, path, headers=None, **extra):
    """A browser's GET of ``path`` (it has an anonymous id: no cookie is minted); ``extra``
    goes into the request's META (SCRIPT_NAME)."""
    client.cookies["ajs_anonymous_id"] = browser_cookie("anon-pages")
    response = get(client, path, headers={**HEADERS, **(headers or {})}, **extra)
    assert response.status_code < 400, (path, response.status_code)
    return response


# -- what a page view carries -------------------------------------------------------------------


@pytest.mark.parametrize(("path", "name"), [("/", "/"), ("/ahome/", "/ahome/")])
def test_pageviews_send_one_page_call_per_html_response(pageviews, any_client, path, name):
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-pages")
    assert get(any_client, path + "?ref=ad", headers=HEADERS).status_code == 200
    page = only(delivered(pageviews))
    assert page["type"] == "page"
    assert page["name"] == name  # the route pattern
    assert page["anonymousId"] == "anon-pages"
    assert page["properties"] == {
        "path": path,
        "search": "?ref=ad",
        "url": f"http://testserver{path}?ref=ad",
        "referrer": HEADERS["referer"],
        "title": "Test page",
    }
    assert page["context"]["page"]["referrer"] == HEADERS["referer"]
    assert page["context"]["userAgent"] == HEADERS["user-agent"]


@pytest.mark.django_db
def test_an_async_page_view_carries_the_user(pageviews, async_client, django_user_model):
    user = django_user_model.objects.create_user("pat", password="pw")
    async_client.force_login(user)
    response = get(async_client, "/ahome/")
    page = only(delivered(pageviews))
    assert page["userId"] == str(user.pk)
    assert "anonymousId" not in page  # a known user: nothing minted, no cookie
    assert "ajs_anonymous_id" not in response.cookies


def test_a_first_visit_gets_a_page_call_and_the_anonymous_id_cookie(pageviews, any_client):
    # Neither a user nor an ajs_anonymous_id cookie: an id is minted and handed to the browser.
    response = get(any_client, "/")
    assert response.status_code == 200
    page = only(delivered(pageviews))
    assert response.cookies["ajs_anonymous_id"].value == f"%22{minted(page['anonymousId'])}%22"
    # The second page of the visit continues it.
    get(any_client, "/ahome/")
    assert delivered(pageviews)[-1]["anonymousId"] == page["anonymousId"]


def test_pageviews_are_off_by_default(settings, collector, client):
    settings.ANALYTICS = collector_settings(collector)
    client.cookies["ajs_anonymous_id"] = browser_cookie("anon-pages")
    get(client, "/")
    assert delivered(collector) == []


@pytest.mark.parametrize("path", ["/plain/", "/missing/", "/no-such-page/"])
def test_no_page_call_for_other_responses(pageviews, any_client, path):
    # JSON, an HTML 404 page, Django's own 404.
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-pages")
    get(any_client, path)
    assert delivered(pageviews) == []


# -- names: the route pattern, or the path ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/unnamed/", "/unnamed/"),  # a route without a name= is still a route
        ("/articles/2024/", "/articles/<int:year>/"),
        ("/articles/1999/", "/articles/<int:year>/"),
        ("/blog/hello-world/", "/blog/<slug:slug>/"),  # through include()
        # Wagtail's catch-all regex serves every page: the path tells them apart.
        ("/about/team/", "/about/team/"),
        ("/products/", "/products/"),
        ("/docs/guide.html", "/docs/guide.html"),  # <path:...> catch-all
    ],
)
def test_a_page_is_named_after_its_route_pattern_or_else_its_path(
    site, any_client, analytics_events, path, name
):
    visit(any_client, path)
    page = only(pages(analytics_events))
    assert page["name"] == name
    assert page["properties"]["path"] == path


# -- documents, not any HTML-typed answer -------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/ok/",  # HttpResponse("ok"): text/html by Django's default, but a health check
        "/fragment/",  # an <h1> fragment, as htmx swaps in
        "/no-content/",  # 204
    ],
)
def test_answers_that_are_not_documents_are_not_page_views(
    site, any_client, analytics_events, path
):
    visit(any_client, path)
    analytics_events.assert_nothing_sent()


def test_the_title_is_the_documents_title(site, any_client, analytics_events):
    visit(any_client, "/escaped-title/")
    page = only(pages(analytics_events))
    assert page["properties"]["title"] == "Fish & Chips"


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
@pytest.mark.parametrize("path", ["/streamed/", "/astreamed/"])
def test_a_streamed_document_is_a_page_view(site, any_client, analytics_events, path):
    # Its body is produced after the middleware returned: nothing to sniff, and it counts.
    response = get(any_client, path, headers=HEADERS)
    assert response.status_code == 200
    assert b"<title>Streamed</title>" in streamed_body(response)
    page = only(pages(analytics_events))
    assert page["name"] == path
    assert "title" not in page["properties"]
    # A first visit: the streamed response still carries the minted id's cookie.
    assert response.cookies["ajs_anonymous_id"].value == f"%22{minted(page['anonymousId'])}%22"


@pytest.mark.parametrize("method", ["post", "head", "put", "options"])
def test_only_a_get_is_a_page_view(site, any_client, analytics_events, method):
    any_client.cookies["ajs_anonymous_id"] = browser_cookie("anon-pages")
    request(any_client, method, "/about/", headers=HEADERS)
    analytics_events.assert_nothing_sent()


# -- what the default exclusions leave out ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/static/app.css",
        "/media/photo.png",
        "/favicon.ico",
        "/robots.txt",
        "/health",
        "/health/live",
        "/healthz",
        "/healthcheck/",
        "/ready",
        "/readyz",
        "/livez",
        "/ping",
        "/metrics",
        "/admin/",
        # The real admin, mounted where no default would guess: excluded by reversing
        # "admin:index".
        "/backoffice/login/",
    ],
)
def test_default_exclusions(site, any_client, analytics_events, path):
    visit(any_client, path)
    analytics_events.assert_nothing_sent()


@pytest.mark.parametrize(
    "path", ["/healthy/", "/pinged/", "/static-pages/", "/administration/", "/ready-made/"]
)
def test_paths_that_only_look_excluded_are_pages(site, any_client, analytics_events, path):
    visit(any_client, path)
    assert only(pages(analytics_events))["name"] == path


def test_static_url_and_media_url_are_excluded(settings, site, any_client, analytics_events):
    settings.STATIC_URL = "/assets/"
    settings.MEDIA_URL = "uploads/"  # relative, as startproject writes STATIC_URL
    for path in ("/assets/app.css", "/uploads/photo.png", "/static/app.css"):
        visit(any_client, path)
    analytics_events.assert_nothing_sent()
    visit(any_client, "/about/")
    assert only(pages(analytics_events))["name"] == "/about/"


def test_the_admin_login_page_is_a_document_only_the_exclusion_stops(
    settings, any_client, analytics_events
):
    # The control for the test above: with no exclusions, the real admin page is a page view.
    settings.ROOT_URLCONF = SITE_URLS
    settings.ANALYTICS = {"SEND": False, "PAGEVIEWS": True, "PAGEVIEWS_EXCLUDE": []}
    visit(any_client, "/backoffice/login/")
    page = only(pages(analytics_events))
    assert page["name"] == "/backoffice/login/"
    assert "Log in" in page["properties"]["title"]


def test_pageviews_exclude_replaces_the_defaults(settings, any_client, analytics_events):
    settings.ROOT_URLCONF = SITE_URLS
    settings.ANALYTICS = {
        "SEND": False,
        "PAGEVIEWS": True,
        "PAGEVIEWS_EXCLUDE": ["/private/", re.compile(r"^/articles/\d{4}/$")],
    }
    for path in ("/private/", "/private/notes/", "/articles/2024/"):
        visit(any_client, path)
    analytics_events.assert_nothing_sent()
    # The defaults no longer apply: a project that wants them extends DEFAULT_EXCLUDE.
    for path in ("/static/app.css", "/backoffice/login/", "/articles/2024/draft/"):
        visit(any_client, path)
    assert [page["properties"]["path"] for page in pages(analytics_events)] == [
        "/static/app.css",
        "/backoffice/login/",
        "/articles/2024/draft/",
    ]


def test_pageviews_exclude_extending_the_defaults(settings, any_client, analytics_events):
    settings.ROOT_URLCONF = SITE_URLS
    settings.ANALYTICS = {
        "SEND": False,
        "PAGEVIEWS": True,
        "PAGEVIEWS_EXCLUDE": [*DEFAULT_EXCLUDE, "/internal/"],
    }
    for path in ("/internal/report/", "/static/app.css", "/healthz"):
        visit(any_client, path)
    analytics_events.assert_nothing_sent()


# -- browsers loading a document, not scripts or crawlers ---------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"hx-request": "true"},
        {"x-requested-with": "XMLHttpRequest"},
        {"sec-fetch-dest": "empty"},  # fetch()
        {"sec-fetch-dest": "script"},
        {"sec-purpose": "prefetch"},
        {"sec-purpose": "prefetch;prerender"},
        {"purpose": "prefetch"},
        {"accept": "application/json"},  # an API client with a browser's User-Agent
    ],
    ids=lambda headers: "-".join(f"{key}={value}" for key, value in headers.items()),
)
def test_script_fetches_and_prefetches_are_not_page_views(
    site, any_client, analytics_events, headers
):
    visit(any_client, "/about/", headers)
    analytics_events.assert_nothing_sent()


@pytest.mark.parametrize("destination", ["document", "iframe"])
def test_a_navigation_is_a_page_view(site, any_client, analytics_events, destination):
    visit(any_client, "/about/", {"sec-fetch-dest": destination, "sec-fetch-mode": "navigate"})
    assert only(pages(analytics_events))["name"] == "/about/"


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    ],
)
def test_a_crawler_that_says_so_is_not_a_page_view(site, any_client, analytics_events, user_agent):
    visit(any_client, "/about/", {"user-agent": user_agent})
    analytics_events.assert_nothing_sent()


@pytest.mark.parametrize(
    "user_agent",
    [
        # A phone called CUBOT X30: "bot" in a browser's User-Agent is not a crawler.
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    ],
    ids=["cubot-x30", "iphone"],
)
def test_browsers_are_page_views(site, any_client, analytics_events, user_agent):
    visit(any_client, "/about/", {"user-agent": user_agent})
    page = only(pages(analytics_events))
    assert page["context"]["userAgent"] == user_agent


# -- a project served under a mount point ------------------------------------------------------

MOUNT = "/shop"


@pytest.fixture(params=["wsgi", "asgi"])
def mounted_visit(request):
    """A browser's GET of a project path, the project served under /shop: gunicorn/mod_wsgi's
    SCRIPT_NAME (request.path /shop/healthz, path_info /healthz), or ASGI's root_path
    (uvicorn --root-path), where the path the server passes on still starts with /shop."""
    if request.param == "wsgi":
        client = Client(SCRIPT_NAME=MOUNT)
        return lambda path: visit(client, path)
    # AsyncClient puts its defaults into the scope (and, harmlessly, into a header too).
    client = AsyncClient(root_path=MOUNT)
    return lambda path: visit(client, MOUNT + path)


@pytest.mark.parametrize("path", ["/healthz", "/static/app.css", "/backoffice/login/", "/ping"])
def test_exclusions_hold_under_a_mount_point(site, mounted_visit, analytics_events, path):
    response = mounted_visit(path)
    served = getattr(response, "wsgi_request", None) or response.asgi_request
    assert (served.path, served.path_info) == (MOUNT + path, path)
    analytics_events.assert_nothing_sent()


@pytest.mark.parametrize(
    ("path", "name"),
    [("/articles/2024/", "/shop/articles/<int:year>/"), ("/about/team/", "/shop/about/team/")],
)
def test_names_under_a_mount_point_are_what_the_browser_sees(
    site, mounted_visit, analytics_events, path, name
):
    mounted_visit(path)
    page = only(pages(analytics_events))
    assert page["name"] == name
    assert page["properties"]["path"] == MOUNT + path
