"""The shared request-to-context code every web integration uses (analytics_core.web)."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st

import analytics_core
from analytics_core.collector.access import write_key_fingerprint as fingerprint
from analytics_core.context import RequestContext, reset_request_context, set_request_context
from analytics_core.web import (
    anonymous_id_from_cookie,
    build_request_context,
    client_ip,
    cookie_value,
    headers_from_asgi,
    headers_from_wsgi,
    locale_from_accept_language,
    request_fields,
)

# -- client IP ------------------------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say():
    headers = {"x-forwarded-for": "6.6.6.6", "forwarded": "for=7.7.7.7"}
    assert client_ip("10.0.0.5", headers, 0) == "10.0.0.5"


def test_one_trusted_proxy_takes_the_right_most_forwarded_entry():
    # The client forged 6.6.6.6; the proxy appended the address that really connected.
    headers = {"x-forwarded-for": "6.6.6.6, 203.0.113.9"}
    assert client_ip("10.0.0.1", headers, 1) == "203.0.113.9"


def test_two_trusted_proxies_skip_the_inner_proxy():
    headers = {"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.0.0.2"}
    assert client_ip("10.0.0.1", headers, 2) == "203.0.113.9"


def test_fewer_entries_than_hops_takes_the_left_most():
    assert client_ip("10.0.0.1", {"x-forwarded-for": "203.0.113.9"}, 3) == "203.0.113.9"


def test_trusted_proxies_without_a_header_fall_back_to_the_peer():
    assert client_ip("10.0.0.1", {}, 1) == "10.0.0.1"
    assert client_ip("10.0.0.1", {"x-forwarded-for": ""}, 1) == "10.0.0.1"


def test_forwarded_header_with_quoting_ports_and_ipv6():
    headers = {"forwarded": 'for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";by=x'}
    assert client_ip("10.0.0.1", headers, 1, "forwarded") == "2001:db8:cafe::17"
    forwarded = {"forwarded": "for=198.51.100.7:8080"}
    assert client_ip("10.0.0.1", forwarded, 1, "forwarded") == "198.51.100.7"


def test_x_forwarded_for_wins_over_forwarded():
    headers = {"x-forwarded-for": "203.0.113.9", "forwarded": "for=198.51.100.7"}
    assert client_ip("10.0.0.1", headers, 1) == "203.0.113.9"


def test_addresses_are_normalised():
    assert client_ip("::FFFF:1.2.3.4", {}, 0) == "1.2.3.4"
    assert client_ip("2001:DB8::1", {}, 0) == "2001:db8::1"
    assert client_ip("[::1]:5000", {}, 0) == "::1"


def test_malformed_entries_fall_back_to_the_peer():
    for bad in ("unknown", "_hidden", "300.1.1.1", "[::1", "a, ", ",,,", "1.2.3.4, x"):
        assert client_ip("10.0.0.1", {"x-forwarded-for": bad}, 1) == "10.0.0.1", bad
    assert client_ip("not-an-ip", {}, 0) is None
    assert client_ip(None, {}, 0) is None


# -- locale, cookies --------------------------------------------------------------------------


def test_locale_is_the_first_language_tag():
    assert locale_from_accept_language("en-US,en;q=0.9,fr;q=0.8") == "en-US"
    assert locale_from_accept_language("de;q=0.7") == "de"
    assert locale_from_accept_language("zh-Hant-TW") == "zh-Hant-TW"


def test_wildcard_and_garbage_locales_are_left_out():
    for bad in (None, "", "*", "<script>", "en_US", "toolongtag-x"):
        assert locale_from_accept_language(bad) is None, bad


def test_cookie_value_survives_a_malformed_neighbour():
    header = 'broken"cookie; ajs_anonymous_id=%22abc%22; other=1'
    assert cookie_value(header, "ajs_anonymous_id") == "%22abc%22"
    assert cookie_value("ajs_anonymous_id_x=1", "ajs_anonymous_id") is None
    assert cookie_value(None, "ajs_anonymous_id") is None


def test_analytics_js_cookie_is_url_decoded_and_json_unquoted():
    assert (
        anonymous_id_from_cookie("%22507f191e-810c-19729de860ea%22") == "507f191e-810c-19729de860ea"
    )
    assert anonymous_id_from_cookie('"quoted"') == "quoted"
    assert anonymous_id_from_cookie("plain-id") == "plain-id"


def test_bad_cookie_values_are_left_out():
    for bad in (
        "",
        "%22unterminated",
        "%ff%fe",
        "%2212%22x",
        "%225%22%22",
        "%221%5Cu0000%22",
        "%22%22",
    ):
        assert anonymous_id_from_cookie(bad) is None, bad
    assert anonymous_id_from_cookie("x" * 1000) is None


# -- the whole context -----------------------------------------------------------------------


def _context(**overrides):
    arguments = dict(
        peer="198.51.100.7",
        scheme="https",
        host="shop.example.com",
        path="/cart",
        query_string="a=1&b=2",
        headers={
            "user-agent": "Mozilla/5.0",
            "accept-language": "fr-CH, fr;q=0.9",
            "referer": "https://google.com/",
            "cookie": "ajs_anonymous_id=%22anon-1%22",
        },
    )
    arguments.update(overrides)
    return build_request_context(**arguments)


def test_request_context_has_every_field():
    request = _context(user_id="u-9")
    assert request.context == {
        "ip": "198.51.100.7",
        "userAgent": "Mozilla/5.0",
        "locale": "fr-CH",
        "page": {
            "url": "https://shop.example.com/cart?a=1&b=2",
            "path": "/cart",
            "search": "?a=1&b=2",
            "referrer": "https://google.com/",
        },
    }
    assert (request.user_id, request.anonymous_id) == ("u-9", "anon-1")


def test_a_parsed_cookie_value_wins_over_the_header():
    assert _context(anonymous_id_cookie="%22from-framework%22").anonymous_id == "from-framework"


def test_missing_parts_are_left_out_not_invented():
    request = _context(peer=None, host=None, query_string="", headers={})
    assert request.context == {"page": {"path": "/cart", "search": ""}}
    assert request.anonymous_id is None


def test_oversized_headers_are_left_out():
    request = _context(headers={"user-agent": "x" * 10_000})
    assert "userAgent" not in request.context


def test_asgi_headers_are_decoded_and_repeated_ones_joined():
    raw = [
        (b"X-Forwarded-For", b"1.1.1.1"),
        (b"x-forwarded-for", b"2.2.2.2"),
        (b"cookie", b"a=1"),
        (b"cookie", b"ajs_anonymous_id=x"),
        (b"user-agent", "caf\u00e9".encode("latin-1")),
    ]
    headers = headers_from_asgi(raw)
    assert headers["x-forwarded-for"] == "1.1.1.1, 2.2.2.2"
    assert headers["cookie"] == "a=1; ajs_anonymous_id=x"
    assert headers["user-agent"] == "caf\u00e9"


# -- what a call inside the request sends ---------------------------------------------------


def test_calls_inside_a_request_merge_its_context_under_theirs():
    client = analytics_core.Client("key", send=False)
    token = set_request_context(_context(user_id="u-9"))
    try:
        _, implicit = client.track(event="Viewed")
        _, explicit = client.track(
            "someone-else", "Viewed", context={"page": {"path": "/mine"}, "ip": "0.0.0.0"}
        )
    finally:
        reset_request_context(token)
    _, outside = client.track("u-1", "Viewed")
    assert implicit["userId"] == "u-9" and implicit["anonymousId"] == "anon-1"
    assert implicit["context"]["ip"] == "198.51.100.7"
    assert implicit["context"]["library"]["name"] == "analytics-core"
    # Key by key: the explicit user keeps the request's anonymous id.
    assert explicit["userId"] == "someone-else" and explicit["anonymousId"] == "anon-1"
    assert explicit["context"]["ip"] == "0.0.0.0"
    assert explicit["context"]["page"]["path"] == "/mine"
    assert explicit["context"]["page"]["url"] == "https://shop.example.com/cart?a=1&b=2"
    assert "ip" not in outside["context"]


def test_module_level_calls_go_to_the_request_client(collector):
    own = analytics_core.Client("own-key", host=collector.url)
    analytics_core.write_key, analytics_core.host = "default-key", collector.url
    token = set_request_context(RequestContext({"ip": "1.2.3.4"}, user_id="u", client=own))
    try:
        analytics_core.track(event="Inside")
        assert analytics_core.flush(5) is True  # flushes the request's client
    finally:
        reset_request_context(token)
    analytics_core.track("u", "Outside")
    analytics_core.flush(5)
    inside, outside = collector.wait_for(2)
    assert (inside["event"], inside["_write_key_fingerprint"]) == ("Inside", fingerprint("own-key"))
    assert inside["context"]["ip"] == "1.2.3.4"
    assert (outside["event"], outside["_write_key_fingerprint"]) == (
        "Outside",
        fingerprint("default-key"),
    )
    own.shutdown(timeout=1)


# -- never raises -----------------------------------------------------------------------------

header_text = st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    peer=st.none() | header_text,
    headers=st.dictionaries(
        st.sampled_from(
            ["x-forwarded-for", "forwarded", "user-agent", "accept-language", "referer", "cookie"]
        ),
        header_text | st.text(alphabet=string.printable + '"[]:;,=%', max_size=60),
    ),
    hops=st.integers(min_value=0, max_value=4),
    cookie=st.none() | header_text,
)
def test_no_header_cookie_or_peer_makes_it_raise(peer, headers, hops, cookie):
    request = build_request_context(
        peer=peer,
        scheme="http",
        host="h",
        path="/",
        query_string="",
        headers=headers,
        trusted_proxies=hops,
        anonymous_id_cookie=cookie,
    )
    if "ip" in request.context:
        assert request.context["ip"].replace(":", "").replace(".", "").isalnum()
    if hops == 0 and "ip" in request.context:
        assert peer is not None


def _user_agent_read_from(environ):
    context, _ = request_fields(
        peer="10.0.0.1",
        scheme="http",
        host="shop.test",
        path="/",
        query_string="",
        headers=headers_from_wsgi(environ),
    )
    return context["userAgent"]


def test_a_utf8_user_agent_from_a_wsgi_environ_is_read_as_utf8():
    # PEP 3333: the server decodes header bytes as latin-1 into the environ.
    agent = "MyApp/2.1 (Caf\u00e9 \u2603)"
    assert (
        _user_agent_read_from({"HTTP_USER_AGENT": agent.encode("utf-8").decode("latin-1")}) == agent
    )
    # latin-1 text that is not UTF-8 stays as it was sent.
    assert _user_agent_read_from({"HTTP_USER_AGENT": "Navigateur \u00e9"}) == "Navigateur \u00e9"
