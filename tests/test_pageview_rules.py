"""The framework-free page-view rules (analytics_core.web.pageviews) every integration applies."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics_core.web import pageviews
from analytics_core.web.pageviews import (
    DEFAULT_EXCLUDE,
    compile_exclude,
    document_title,
    is_document,
    is_excluded,
    is_page_request,
    is_page_response,
    route_name,
)

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


@pytest.mark.parametrize(
    ("status", "content_type", "expected"),
    [
        (200, "text/html", True),
        (200, "text/html; charset=utf-8", True),
        (201, "TEXT/HTML", True),
        (200, "application/xhtml+xml", True),
        (204, "text/html", False),
        (301, "text/html", False),
        (404, "text/html", False),
        (500, "text/html", False),
        (200, "application/json", False),
        (200, "text/htmlx", False),
        (200, None, False),
        ("200", "text/html", False),
    ],
)
def test_the_response_side(status, content_type, expected):
    assert is_page_response(status, content_type) is expected


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", {"user-agent": BROWSER}, True),
        ("GET", {}, True),  # Django's test client sends no User-Agent: its tests must see pages
        ("GET", {"user-agent": "Werkzeug/3.1.3"}, True),  # Flask's test client
        ("GET", {"user-agent": "testclient"}, True),  # Starlette's
        ("GET", {"user-agent": BROWSER, "accept": "text/html,application/xhtml+xml;q=0.9"}, True),
        ("GET", {"user-agent": BROWSER, "accept": "*/*"}, True),
        ("GET", {"user-agent": BROWSER, "accept": "application/json"}, False),  # an API client
        ("GET", {"user-agent": BROWSER, "sec-fetch-dest": "document"}, True),
        ("GET", {"user-agent": BROWSER, "sec-fetch-dest": "iframe"}, True),
        ("POST", {"user-agent": BROWSER}, False),
        ("HEAD", {"user-agent": BROWSER}, False),
        ("GET", {"user-agent": BROWSER, "hx-request": "true"}, False),
        ("GET", {"user-agent": BROWSER, "x-requested-with": "XMLHttpRequest"}, False),
        ("GET", {"user-agent": BROWSER, "sec-fetch-dest": "empty"}, False),
        ("GET", {"user-agent": BROWSER, "sec-purpose": "prefetch;prerender"}, False),
        ("GET", {"user-agent": BROWSER, "purpose": "prefetch"}, False),
    ],
)
def test_the_request_side(method, headers, expected):
    assert is_page_request(method, headers) is expected


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "facebookexternalhit/1.1",
        "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
        "Twitterbot/1.0",
    ],
)
def test_crawlers_that_say_so_make_no_page_views(user_agent):
    assert is_page_request("GET", {"user-agent": user_agent}) is False


@pytest.mark.parametrize(
    "user_agent",
    [
        "curl/8.5.0",
        "Wget/1.21.3",
        "python-requests/2.32.3",
        "python-httpx/0.27.0",
        "Python-urllib/3.11",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "axios/1.7.2",
        "PostmanRuntime/7.39.0",
        "Java/17.0.2",
    ],
)
def test_http_libraries_and_tools_make_no_page_views(user_agent):
    assert is_page_request("GET", {"user-agent": user_agent}) is False


@pytest.mark.parametrize(
    "user_agent",
    [
        BROWSER,
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 Mobile Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15",
    ],
)
def test_people_are_not_crawlers(user_agent):
    assert is_page_request("GET", {"user-agent": user_agent}) is True


# Pieces of User-Agents, crawler words in odd cases and near misses among them, so that the
# generated text often holds what the crawler search looks for.
_UA_PIECES = st.sampled_from(
    [
        "Mozilla/5.0 ",
        "(compatible; ",
        "GoogleBOT/2.1",
        "cubot x30",
        "Bot",
        "bot_",
        "-",
        "/",
        "+",
        ";",
        "_",
        "HTTPS://",
        "http:/",
        "Crawler",
        "sPiDeR",
        "Slurp",
        "FacebookExternalHit",
        "Mediapartners-Google",
        "mediapartners-googl",
        "\u017fpider/",  # LATIN SMALL LETTER LONG S: a case-blind "s" outside ASCII
        "\u212aB",  # KELVIN SIGN: a case-blind "k"
        "Café ☃ ",
        " ",
    ]
)


@given(st.lists(_UA_PIECES, max_size=12).map("".join) | st.text(max_size=80))
def test_the_quick_crawler_test_answers_as_the_crawler_search_does(user_agent):
    # is_crawler skips the (slow, case-blind) search for text that cannot match it; it must
    # never skip text that does.
    expected = pageviews._CRAWLER.search(user_agent) is not None
    assert pageviews.is_crawler(user_agent) is expected


@pytest.mark.parametrize(
    "user_agent",
    [
        "x Spider/1",
        "x CRAWLER-1",
        "x slurp;",
        "x bot_",
        "x HTTP://",
        "x https://",
        "x FacebookExternalHit",
        "x Mediapartners-Google",
        "x \u017fpider/",  # a case-blind "s" outside ASCII: the search's answer, not lower()'s
    ],
)
def test_each_word_of_the_crawler_search_alone_is_found(user_agent):
    assert pageviews._CRAWLER.search(user_agent) is not None
    assert pageviews.is_crawler(user_agent) is True


def test_a_user_agent_longer_than_any_browser_sends_makes_no_page_view():
    assert is_page_request("GET", {"user-agent": BROWSER + "x" * 4096}) is False
    assert is_page_request("GET", {"user-agent": BROWSER.ljust(4096, "x")}) is True


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<!DOCTYPE html><html><body>x</body></html>", True),
        (b"\xef\xbb\xbf\n  <!doctype html>", True),
        (b"<html lang='en'><p>hi", True),
        (b"<title>Only a title</title>", True),
        (b"<!-- a comment --><head><meta charset=utf-8></head>", True),
        (b"ok", False),  # Flask's `return "ok"`: a health check, text/html by default
        (b"<h1>hi</h1>", False),  # a fragment (htmx, a partial)
        (b"", False),
        (None, True),  # a streamed body is not at hand: it counts
    ],
)
def test_a_page_is_a_document(body, expected):
    assert is_document(body) is expected


@pytest.mark.parametrize(
    ("body", "title"),
    [
        (b"<html><head><title>Blog | My site</title></head></html>", "Blog | My site"),
        (b"<TITLE lang=en>\n  Caf&eacute;  &amp;\tbar\n</TITLE>", "Caf\u00e9 & bar"),
        ("<title>Caf\u00e9</title>".encode(), "Caf\u00e9"),
        (b"<title>\xff broken</title>", "\ufffd broken"),
        (b"<title>   </title>", None),
        (b"<p>no title</p>", None),
        (b"<title>never closed", None),
        (None, None),
        (b"<title>" + b"x" * 1000 + b"</title>", "x" * 256),
    ],
)
def test_the_document_title(body, title):
    assert document_title(body) == title


@pytest.mark.parametrize(
    ("pattern", "path", "name"),
    [
        ("/blog/<slug:slug>/", "/blog/hello/", "/blog/<slug:slug>/"),
        ("blog/<slug:slug>/", "/blog/hello/", "/blog/<slug:slug>/"),  # Django: no leading /
        ("/items/{item_id}", "/items/3", "/items/{item_id}"),
        ("/post/<int:id>/update", "/post/3/update", "/post/<int:id>/update"),
        ("/files/<path:name>", "/files/a/b.txt", "/files/a/b.txt"),  # catch-all: the path
        ("/static/{path:path}", "/static/a.css", "/static/a.css"),
        (r"^((?:[\w\-]+/)*)$", "/blog/my-post/", "/blog/my-post/"),  # Wagtail's serve route
        (r"^articles/(?P<year>[0-9]{4})/$", "/articles/2024/", "/articles/2024/"),
        ("", "/", "/"),
        (None, "/about", "/about"),
    ],
)
def test_pages_are_named_after_the_route_that_tells_them_apart(pattern, path, name):
    assert route_name(pattern, path) == name


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/static/app.css", True),
        ("/media/photo.jpg", True),
        ("/favicon.ico", True),
        ("/health", True),
        ("/health/live", True),
        ("/healthz", True),
        ("/healthy-recipes/", False),
        ("/admin/", True),
        ("/admin/auth/user/", True),
        ("/administration", False),
        ("/", False),
        ("/docs/getting-started", False),
    ],
)
def test_default_exclusions(path, expected):
    assert is_excluded(path, DEFAULT_EXCLUDE) is expected


def test_exclusions_take_prefixes_and_compiled_regexes():
    rules = compile_exclude(["/internal/", re.compile(r"\.json$")], "PAGEVIEWS_EXCLUDE")
    assert is_excluded("/internal/report", rules)
    assert is_excluded("/export/data.json", rules)
    assert not is_excluded("/static/app.css", rules)  # a setting of its own replaces the defaults
    assert compile_exclude(None, "X") == DEFAULT_EXCLUDE
    assert is_excluded("/static/x", compile_exclude([*DEFAULT_EXCLUDE, "/x/"], "X"))


@pytest.mark.parametrize("bad", ["/static/", ["static/"], [42], [re.compile(rb"x")], 7])
def test_a_bad_exclusion_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="PAGEVIEWS_EXCLUDE"):
        compile_exclude(bad, "PAGEVIEWS_EXCLUDE")


_PATH_STARTS = st.sampled_from(
    ["", "/", "/health", "/healthz", "/static", "/admin", "/x", "/-", "/metrics", "/favicon.ico"]
)
_PATH_ENDS = st.lists(st.sampled_from(["/", "z", ".", "?", "x", "-", "css"]), max_size=3)


@given(
    st.tuples(_PATH_STARTS, _PATH_ENDS.map("".join)).map("".join),
    st.lists(
        st.sampled_from(
            [*DEFAULT_EXCLUDE, "/x", "/static", "/health/", re.compile(r"^/x\.\w+$"), "/-"]
        ),
        max_size=5,
    ),
)
def test_a_tuple_of_rules_excludes_as_the_rules_one_by_one_do(path, rules):
    # A tuple of rules (what compile_exclude gives) takes a quick test over all its prefixes
    # first; a list goes through the rules one by one. Both must answer alike.
    assert is_excluded(path, tuple(rules)) is is_excluded(path, list(rules))
