"""A client can never choose its own ``context.ip`` (analytics_core.web.client_ip).

The situation modelled throughout: a client sends whatever it likes, including its own
forwarding headers; then N trusted proxies each append the address that connected to them, and
the app sees the last proxy as its socket peer. The only address the app may report is the one
the outermost trusted proxy appended (the client's real address) or, when the trusted part is
not what a proxy would write, the peer. Never anything the client wrote.
"""

import ipaddress
import time
from typing import List, Optional, Tuple, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics_core.web import (
    DEFAULT_FORWARDED_HEADER,
    build_request_context,
    client_ip,
    headers_from_asgi,
    headers_from_wsgi,
    normalize_forwarded_header,
    request_fields,
)

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

PEER = "10.0.0.1"
REAL = "203.0.113.9"
FORGED = "6.6.6.6"


def xff(value: str, hops: int = 1, peer: Optional[str] = PEER) -> Optional[str]:
    """client_ip behind ``hops`` proxies that write X-Forwarded-For."""
    return client_ip(peer, {"x-forwarded-for": value}, hops)


def fwd(value: str, hops: int = 1, peer: Optional[str] = PEER) -> Optional[str]:
    """client_ip behind ``hops`` proxies that write RFC 7239 Forwarded."""
    return client_ip(peer, {"forwarded": value}, hops, "forwarded")


# -- the three holes the security review found ------------------------------------------------


def test_hole_1_an_unbalanced_quote_cannot_swallow_what_the_proxy_appended():
    # The client sent `"[6.6.6.6`; its proxy appended `, 10.0.0.7`. Quote state used to carry
    # across the comma and turn both into one element that parsed as 6.6.6.6.
    assert xff('"[6.6.6.6, 10.0.0.7') == "10.0.0.7"
    assert xff('"6.6.6.6, 10.0.0.7') == "10.0.0.7"
    assert xff('6.6.6.6", "x, 10.0.0.7, 10.0.0.8', hops=2) == "10.0.0.7"


def test_hole_1_through_forwarded():
    assert fwd('for="[6.6.6.6, for=10.0.0.7') == "10.0.0.7"
    assert fwd('for="[6.6.6.6]:1, for="[2001:db8::7]"') == "2001:db8::7"
    # Nor can a quote the client opens reach across two proxies' elements.
    assert fwd('for="[6.6.6.6, for=10.0.0.7, for=10.0.0.8', hops=2) == "10.0.0.7"


def test_hole_2_only_the_configured_header_is_read():
    # The proxy writes only Forwarded; the client adds an X-Forwarded-For of its own.
    headers = {"forwarded": f"for={REAL}", "x-forwarded-for": FORGED, "x-real-ip": FORGED}
    assert client_ip(PEER, headers, 1, "forwarded") == REAL
    # And the other way round: X-Forwarded-For configured, a forged Forwarded is ignored.
    headers = {"x-forwarded-for": REAL, "forwarded": f"for={FORGED}"}
    assert client_ip(PEER, headers, 1) == REAL
    # A proxy that writes only Forwarded while the client sends X-Forwarded-For alone: the
    # configured header is missing, so the peer is all there is.
    assert client_ip(PEER, {"x-forwarded-for": FORGED}, 1, "forwarded") == PEER


def test_hole_3_zone_ids_are_refused_everywhere():
    payload = "::1%<img src=x onerror=alert(1)>"
    assert client_ip(payload, {}, 0) is None
    assert client_ip("fe80::1%eth0", {}, 0) is None
    assert xff(payload) == PEER
    assert xff("fe80::1%eth0") == PEER
    assert xff("[fe80::1%25eth0]:80") == PEER
    assert fwd(f'for="[{payload}]"') == PEER
    assert fwd('for="[fe80::1%eth0]:80"') == PEER


# -- configuration --------------------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_client():
    headers = {"x-forwarded-for": FORGED, "forwarded": f"for={FORGED}"}
    for hops in (0, -1, -100):
        assert client_ip(PEER, headers, hops) == PEER
        assert client_ip(PEER, headers, hops, "forwarded") == PEER


def test_a_non_integer_hop_count_trusts_nothing_rather_than_raise():
    assert client_ip(PEER, {"x-forwarded-for": FORGED}, "1") == PEER  # type: ignore[arg-type]
    assert client_ip(PEER, {"x-forwarded-for": FORGED}, None) == PEER  # type: ignore[arg-type]


def test_the_forwarded_header_name_is_case_insensitive_and_any_list_header_works():
    assert DEFAULT_FORWARDED_HEADER == "x-forwarded-for"
    assert client_ip(PEER, {"x-forwarded-for": REAL}, 1, "X-Forwarded-For") == REAL
    assert client_ip(PEER, {"forwarded": f"For={REAL}"}, 1, " Forwarded ") == REAL
    for name in ("x-real-ip", "cf-connecting-ip", "true-client-ip"):
        headers = {name: REAL, "x-forwarded-for": FORGED, "forwarded": f"for={FORGED}"}
        assert client_ip(PEER, headers, 1, name.upper()) == REAL, name
    # X-Forwarded-For grammar for every name but "forwarded": `for=` is not an address there.
    assert client_ip(PEER, {"x-real-ip": f"for={REAL}"}, 1, "x-real-ip") == PEER


def test_normalize_forwarded_header():
    assert normalize_forwarded_header("X-Forwarded-For") == "x-forwarded-for"
    assert normalize_forwarded_header("  Forwarded\t") == "forwarded"
    assert normalize_forwarded_header("CF-Connecting-IP") == "cf-connecting-ip"
    # Not tokens. The Kelvin sign lower-cases to an ASCII "k": it must be refused first.
    for bad in ("", " ", "x forwarded", "x-forwarded-for:", "forward\ned", "\u212aey", "é"):
        with pytest.raises(ValueError, match="forwarded_header") as raised:
            normalize_forwarded_header(bad)
        assert repr(bad) in str(raised.value)
    with pytest.raises(ValueError, match="None"):
        normalize_forwarded_header(None)  # type: ignore[arg-type]


def test_an_unusable_header_name_in_the_request_path_falls_back_to_the_peer():
    for bad in ("x forwarded", "", None, 42):
        assert client_ip(PEER, {"x-forwarded-for": REAL}, 1, bad) == PEER  # type: ignore[arg-type]


# -- choosing the element ---------------------------------------------------------------------


def test_the_nth_element_from_the_right_is_chosen():
    value = f"{FORGED}, {REAL}, 10.0.0.2, 10.0.0.3"
    assert xff(value, 1) == "10.0.0.3"
    assert xff(value, 2) == "10.0.0.2"
    assert xff(value, 3) == REAL
    value = f"for={FORGED}, for={REAL};proto=https, for=10.0.0.2"
    assert fwd(value, 1) == "10.0.0.2"
    assert fwd(value, 2) == REAL


def test_fewer_elements_than_hops_take_the_left_most():
    # All the elements present were written by proxies: the left-most is nearest the client.
    assert xff(REAL, 3) == REAL
    assert xff(f"{REAL}, 10.0.0.2", 3) == REAL
    assert fwd(f'for="{REAL}", for=10.0.0.2', 5) == REAL
    # ...and all of them must be well-formed.
    assert xff(f"junk, {REAL}", 3) == PEER
    assert fwd(f"for={REAL};, for=10.0.0.2", 3) == PEER


def test_no_header_or_one_without_elements_gives_the_peer():
    assert client_ip(PEER, {}, 1) == PEER
    assert client_ip(PEER, {}, 1, "forwarded") == PEER
    for empty in ("", " ", ",", " , ,\t,", ",,,"):
        assert xff(empty) == PEER, repr(empty)
        assert fwd(empty) == PEER, repr(empty)


def test_whitespace_around_elements_and_empty_elements_are_ignored():
    assert xff(f"{FORGED} ,\t{REAL}\t, ,") == REAL
    assert xff(f"{REAL},,, ,10.0.0.2", 2) == REAL
    assert fwd(f"for={FORGED},  for={REAL} ,") == REAL
    # Only SP and HTAB are optional whitespace; anything else makes the element malformed.
    for other in ("\n", "\r", "\x0b", "\x0c", "\xa0", "\u3000"):
        assert xff(f"{FORGED}, {REAL}{other}") == PEER, repr(other)


def test_a_malformed_element_anywhere_in_the_trusted_part_gives_the_peer():
    # The chosen element is fine, but the proxy after it wrote something no proxy writes.
    assert xff(f"{FORGED}, {REAL}, unknown", 2) == PEER
    assert xff(f"{FORGED}, {REAL}, 10.0.0.2:99999999", 2) == PEER
    assert fwd(f'{FORGED}, for={REAL}, for="unclosed', 2) == PEER


def test_the_client_part_is_never_parsed():
    for junk in ('"', '"[', "for=", "[::1", "::1%x", "\x00", "é" * 50, ";;;", "=,=", "\\"):
        assert xff(f"{junk}, {REAL}") == REAL, repr(junk)
        assert fwd(f"{junk}, for={REAL}") == REAL, repr(junk)


def test_a_chosen_node_that_is_no_address_gives_the_peer():
    for node in ("unknown", "_hidden", "_SEVKISEK", "localhost", "example.com", "300.1.1.1"):
        assert xff(f"{FORGED}, {node}") == PEER, node
        assert fwd(f"for={FORGED}, for={node}") == PEER, node
    # A Forwarded element without a `for` node says nothing about the client.
    assert fwd(f"for={FORGED}, proto=https;by=10.0.0.9") == PEER
    # The elements to the right of the chosen one may carry any well-formed node.
    assert fwd(f"for={REAL}, for=unknown;proto=http, for=_gw", 3) == REAL


# -- address shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:8080", "203.0.113.9"),
        ("0.0.0.0", "0.0.0.0"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::FFFF:1.2.3.4", "1.2.3.4"),  # what a dual-stack socket reports for IPv4 clients
        ("[::ffff:102:304]:80", "1.2.3.4"),
        ("::1.2.3.4", "::102:304"),
    ],
)
def test_accepted_shapes_give_the_canonical_address(text, expected):
    assert client_ip(text, {}, 0) == expected
    assert xff(f"{FORGED}, {text}") == expected


@pytest.mark.parametrize(
    "text",
    [
        '"203.0.113.9"',  # quotes belong to Forwarded, not to an address list
        "[203.0.113.9]",  # brackets are for IPv6
        "[203.0.113.9]:80",
        "2001:db8::1:80:x",
        "[2001:db8::1",
        "2001:db8::1]",
        "[2001:db8::1]:",
        "[2001:db8::1]:123456",
        "203.0.113.9:",
        "203.0.113.9:123456",
        "203.0.113.9:-1",
        "203.0.113.9:+80",
        "203.0.113.09",  # leading zeros: octal to some readers, decimal to others
        "::ffff:01.2.3.4",
        "203.0.113",
        "203.0.113.9.1",
        "256.0.0.1",
        "3405803785",  # an integer that ipaddress would take
        "0xcb.0.113.9",
        "\u0662\u0660\u0663.0.113.9",  # Arabic-Indic digits
        "203.0.113.9 ",
        " 203.0.113.9x",
        "203 .0.113.9",
        "203.0.113.9/32",
        "2001:db8::1%1",
        "2001:db8::1%",
        "1" * 100,
        "",
    ],
)
def test_anything_outside_the_address_shapes_is_refused(text):
    assert client_ip(text, {}, 0) is None
    if text.strip(" \t") == text != "":
        # (In a header, surrounding SP/HTAB is list syntax and an empty element is skipped.)
        assert xff(f"{REAL}, {text}") == PEER


@pytest.mark.parametrize("peer", [None, "", "testclient", "/run/gunicorn.sock", "unix:/tmp/s"])
def test_a_peer_that_is_no_address_gives_none(peer):
    assert client_ip(peer, {}, 0) is None
    # Behind a trusted proxy on a unix socket the header still works, and nothing else does.
    assert client_ip(peer, {"x-forwarded-for": f"{FORGED}, {REAL}"}, 1) == REAL
    assert client_ip(peer, {"x-forwarded-for": "garbage"}, 1) is None


# -- the Forwarded grammar (RFC 7239) --------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        (f"for={REAL}", REAL),
        (f"for={REAL}:4711", REAL),
        (f'for="{REAL}"', REAL),
        (f'for="{REAL}:4711"', REAL),
        ('for="[2001:db8:cafe::17]"', "2001:db8:cafe::17"),
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ('for="[::ffff:1.2.3.4]"', "1.2.3.4"),
        (f"FOR={REAL}", REAL),  # parameter names are case-insensitive
        (f"proto=https;For={REAL};by=_gw;host=shop.example.com", REAL),
        (f'proto=https ; for={REAL}\t;\tby="[2001:db8::1]"', REAL),
        (r'for="\[2001:db8::5\]"', "2001:db8::5"),  # quoted-pairs are unescaped
        (f'host="a;b=c";for={REAL}', REAL),  # ";" and "=" are fine inside quotes
    ],
)
def test_well_formed_forwarded_elements(element, expected):
    assert fwd(f"for={FORGED}, {element}") == expected


@pytest.mark.parametrize(
    "element",
    [
        "for=2001:db8::1",  # IPv6 must be quoted
        "for=[2001:db8::1]",
        '"for=2001:db8::1"',
        'for="2001:db8::1"',  # ...and bracketed
        f"for={REAL};for={FORGED}",  # two `for` nodes: which one?
        f"for={REAL};proto=http;proto=https",
        f"for = {REAL}",  # no whitespace around "="
        f"for ={REAL}",
        f"for={REAL};",  # no empty pairs
        f";for={REAL}",
        f"for={REAL};;proto=https",
        f'for="{REAL}',  # a quote not closed inside its element
        f'for={REAL};host="x',
        f'for="{REAL}"x',
        f'for={REAL}"',
        f"for={REAL} proto=https",
        f"for={REAL}/32",
        f"for=[{REAL}]",
        f"for={REAL};by",
        f"for={REAL};=x",
        f"f(r={REAL}",
        "for=" + "1" * 2000,
        f'for="{REAL}";host="' + "a" * 2000 + '"',
        f'for="{REAL}\x7f"',
        f'for="{REAL}\x00"',
        f"for={REAL}\x00",
        "for=\u0662\u0660\u0663.0.113.9",
        '"',
        "=",
    ],
)
def test_malformed_forwarded_elements_give_the_peer(element):
    assert fwd(f"for={FORGED}, {element}") == PEER


# -- bounded work -----------------------------------------------------------------------------


def test_a_huge_client_part_costs_nothing():
    started = time.perf_counter()
    for junk in ("6.6.6.6, " * 200_000, '"[' * 500_000, "x" * 1_000_000, ",;=" * 300_000):
        assert xff(f"{junk}, {REAL}") == REAL
        assert xff(f"{junk}, {REAL}, 10.0.0.2, 10.0.0.3", 3) == REAL
        assert fwd(f"{junk}, for={REAL}") == REAL
    # Linear work only when fewer elements than hops make every element count: a quadratic
    # scan of these would take minutes.
    assert xff("," * 400_000 + REAL, 3) == REAL
    assert fwd(", " * 200_000 + f"for={REAL}", 2) == REAL
    assert xff(f"{REAL}, " * 100_000, 1_000_000) == REAL
    assert time.perf_counter() - started < 2.0


# -- plumbing ---------------------------------------------------------------------------------


def test_headers_from_wsgi_carries_the_configured_header():
    environ = {
        "HTTP_X_FORWARDED_FOR": "1.1.1.1",
        "HTTP_FORWARDED": "for=2.2.2.2",
        "HTTP_X_REAL_IP": "3.3.3.3",
        "HTTP_CF_CONNECTING_IP": "4.4.4.4",
        "HTTP_USER_AGENT": "ua",
        "REMOTE_ADDR": PEER,
    }
    default = headers_from_wsgi(environ)
    assert default == {"x-forwarded-for": "1.1.1.1", "forwarded": "for=2.2.2.2", "user-agent": "ua"}
    assert headers_from_wsgi(environ, "X-Real-IP")["x-real-ip"] == "3.3.3.3"
    assert headers_from_wsgi(environ, "cf-connecting-ip")["cf-connecting-ip"] == "4.4.4.4"
    assert headers_from_wsgi(environ, "forwarded") == default
    # An unusable name reads nothing extra and does not raise inside the request.
    assert headers_from_wsgi(environ, "x real ip") == default
    assert headers_from_wsgi(environ, None) == default  # type: ignore[arg-type]
    assert headers_from_wsgi(environ, ["x-real-ip"]) == default  # type: ignore[arg-type]
    headers = headers_from_wsgi(environ, "x-real-ip")
    assert client_ip(environ["REMOTE_ADDR"], headers, 1, "x-real-ip") == "3.3.3.3"


def test_request_fields_and_build_request_context_pass_the_header_down():
    arguments = dict(
        peer=PEER,
        scheme="https",
        host="shop.example.com",
        path="/",
        query_string="",
        headers={"x-forwarded-for": "198.51.100.1", "forwarded": f"for={REAL}"},
        trusted_proxies=1,
    )
    assert request_fields(**arguments)[0]["ip"] == "198.51.100.1"  # the default header
    assert request_fields(**arguments, forwarded_header="forwarded")[0]["ip"] == REAL
    built = build_request_context(**arguments, forwarded_header="Forwarded")
    assert built.context["ip"] == REAL


def test_asgi_joins_a_proxys_separate_header_line_after_the_clients():
    # HAProxy-style: the proxy adds its own header line; ASGI servers pass both lines on.
    raw = [(b"x-forwarded-for", b'"[6.6.6.6'), (b"X-Forwarded-For", REAL.encode())]
    assert client_ip(PEER, headers_from_asgi(raw), 1) == REAL


# -- properties: the client never chooses its address ----------------------------------------

# Addresses proxies see: any IPv4 or IPv6 address, IPv4 clients on dual-stack sockets (they show
# up as ::ffff:a.b.c.d) and a few special ones. Drawn from integers because st.ip_addresses()
# costs more per example, and the whole file should run in seconds.
ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)
addresses = st.one_of(
    ipv4,
    st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address),
    ipv4.map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}")),
    st.sampled_from(
        [
            ipaddress.ip_address(text)
            for text in (
                "0.0.0.0",
                "127.0.0.1",
                "255.255.255.255",
                "::",
                "::1",
                "::ffff:0.0.0.0",
                "::1.2.3.4",  # IPv4-compatible, not mapped: it stays IPv6
                "64:ff9b::1.2.3.4",
                "fe80::1",
                "2001:db8::ffff:1.2.3.4",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            )
        ]
    ),
)
ports = st.integers(min_value=1, max_value=65535)

# What a client may send: any text at all, text made of the characters that matter to the
# parsers, and text assembled from fragments that look like the real thing (forged addresses
# included).
_SPECIAL = '"\\[]:;,=%_-. \t\n\r\x00\x7f\xe9\xff\u0663\u212a\ufeffFORfor0123456789abcdef'
_FRAGMENTS = st.sampled_from(
    [
        '"',
        '"[',
        "[",
        "]",
        "]:",
        "for=",
        'For="[',
        "for=unknown",
        "_hidden",
        ",",
        ", ",
        ";",
        "; ",
        "=",
        "\\",
        "%",
        "%eth0",
        "::1",
        "::ffff:",
        ":80",
        " ",
        "\t",
        "6.6.6.6",
        "2001:db8::666",
        "[2001:db8::666]:1",
        "\u0663",
    ]
)
client_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=_SPECIAL, max_size=40),
    st.lists(
        _FRAGMENTS | addresses.map(str) | st.text(alphabet=_SPECIAL, max_size=3),
        max_size=12,
    ).map("".join),
)
client_header = st.none() | client_text


def canonical(address: Address) -> str:
    """What client_ip reports for ``address``."""
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def spell(address: Address, style: int) -> str:
    """One of the ways a proxy or a socket may write ``address`` (all of them mean it)."""
    if address.version == 4:
        return str(address)
    return (str(address), address.exploded, str(address).upper())[style % 3]


@st.composite
def xff_entry(draw: st.DrawFn, address: Address) -> str:
    """One element as X-Forwarded-For writers append it: nginx's bare address, or the
    address with a port (Azure's gateways, some load balancers)."""
    style, port = draw(st.integers(min_value=0, max_value=5)), draw(ports)
    text = spell(address, style)
    if style < 3:
        return text
    return f"{text}:{port}" if address.version == 4 else f"[{text}]:{port}"


# Parameters an RFC 7239 proxy may write next to ``for``.
_FORWARDED_EXTRAS = st.sampled_from(
    [
        (),
        ("proto=https",),
        ("by=_proxy", "proto=http"),
        ('by="[2001:db8::1]:80"',),
        ("host=shop.example.com", "by=10.0.0.1"),
        ('host="shop.example.com:8443"', "proto=https", "by=_p"),
    ]
)


@st.composite
def forwarded_element(draw: st.DrawFn, address: Address) -> str:
    """One element as an RFC 7239 proxy appends it: the ``for`` node (IPv6 quoted and
    bracketed, IPv4 as a token or quoted, with or without a port) among other parameters."""
    style, port = draw(st.integers(min_value=0, max_value=63)), draw(ports)
    text = spell(address, style)
    suffix = f":{port}" if style & 4 else ""
    if address.version == 6:
        node = f'"[{text}]{suffix}"'
    elif style & 8:
        node = f"{text}{suffix}"
    else:
        node = f'"{text}{suffix}"'
    pairs = list(draw(_FORWARDED_EXTRAS))
    name = ("for", "For", "FOR", "fOr")[style >> 4]
    pairs.insert(draw(st.integers(min_value=0, max_value=len(pairs))), f"{name}={node}")
    return draw(st.sampled_from([";", "; ", " ;\t"])).join(pairs)


@st.composite
def proxy_chain(draw: st.DrawFn) -> Tuple[Address, List[Address]]:
    """The client's real address and the addresses of the N trusted proxies, outermost
    first; the last one is the app's socket peer."""
    return draw(addresses), draw(st.lists(addresses, min_size=1, max_size=3))


def append(existing: Optional[str], element: str, separator: str) -> str:
    """What a proxy does: ``<existing>, <element>``, or just ``<element>`` if there was none."""
    return element if existing is None else f"{existing}{separator}{element}"


def peer_text(address: Address, how: str) -> Optional[str]:
    """The socket peer as a server may report it (a unix socket has no address at all)."""
    if how == "unix socket":
        return None
    if how == "with port":
        return f"{address}:8000" if address.version == 4 else f"[{address}]:8000"
    return str(address)


separators = st.sampled_from([", ", ",", " , ", ",\t"])
peer_spellings = st.sampled_from(["plain", "with port", "unix socket"])


@settings(max_examples=300, deadline=None, database=None)
@given(
    chain=proxy_chain(),
    client_value=client_header,
    forged=client_text,
    header_lines=st.booleans(),
    data=st.data(),
)
def test_property_behind_x_forwarded_for_proxies_the_client_is_always_the_real_address(
    chain, client_value, forged, header_lines, data
):
    real, proxies = chain
    # Proxy 1 appends the client's address, proxy k the address of proxy k-1.
    entries = [data.draw(xff_entry(connected)) for connected in [real, *proxies[:-1]]]
    if header_lines:
        # HAProxy's way: each proxy adds a header line of its own after the client's lines,
        # and the ASGI server hands all of them on (raw bytes, whatever the client sent).
        raw = [(b"forwarded", forged.encode()), (b"x-real-ip", forged.encode())]
        if client_value is not None:
            raw.append((b"X-Forwarded-For", client_value.encode()))
        raw += [(b"x-forwarded-for", entry.encode()) for entry in entries]
        headers = headers_from_asgi(raw)
    else:
        # nginx's way ($proxy_add_x_forwarded_for): append to the header as it arrived.
        value = client_value
        for entry in entries:
            value = append(value, entry, data.draw(separators))
        headers = {"x-forwarded-for": value, "forwarded": forged, "x-real-ip": forged}
    peer = peer_text(proxies[-1], data.draw(peer_spellings))
    # The strongest true statement: exactly the real address, whatever the client sent. The
    # proxies' N elements are non-empty, comma-free and well-formed, so they are always the
    # last N elements, and the client's part is never looked at: the peer fallback is never
    # even needed. Other headers the client sends change nothing.
    assert client_ip(peer, headers, len(proxies)) == canonical(real)


@settings(max_examples=300, deadline=None, database=None)
@given(
    chain=proxy_chain(),
    client_value=client_header,
    client_xff=client_header,
    forged=addresses,
    data=st.data(),
)
def test_property_behind_forwarded_proxies_the_client_is_always_the_real_address(
    chain, client_value, client_xff, forged, data
):
    real, proxies = chain
    hops = len(proxies)
    value = client_value
    for connected in [real, *proxies[:-1]]:
        value = append(value, data.draw(forwarded_element(connected)), data.draw(separators))
    # The wrong-header attack: the proxies write only Forwarded, and the client adds an
    # X-Forwarded-For of its own, either well-formed and naming the forged address at every
    # position, or any text at all. It must change nothing.
    forged_chain = ", ".join([str(forged)] * (hops + 1))
    headers = {
        "forwarded": value,
        "x-forwarded-for": forged_chain if client_xff is None else client_xff,
        "x-real-ip": str(forged),
    }
    peer = peer_text(proxies[-1], data.draw(peer_spellings))
    assert client_ip(peer, headers, hops, "forwarded") == canonical(real)
    assert client_ip(peer, headers, hops, "Forwarded") == canonical(real)


@settings(max_examples=300, deadline=None, database=None)
@given(
    chain=proxy_chain(),
    client_value=client_header,
    garbage=client_text,
    position=st.integers(min_value=0, max_value=2),
    data=st.data(),
)
def test_property_a_trusted_proxy_writing_garbage_gives_the_peer_or_the_real_address(
    chain, client_value, garbage, position, data
):
    # One trusted proxy misbehaves and appends arbitrary text instead of an address. The
    # answer is still never the client's: the peer, or, if that text happens to be an address,
    # what it says when it is the chosen element (a trusted proxy wrote it), else the real one.
    real, proxies = chain
    writers = [real, *proxies[:-1]]
    broken = min(position, len(writers) - 1)
    value = client_value
    for index, connected in enumerate(writers):
        element = garbage if index == broken else data.draw(xff_entry(connected))
        value = append(value, element, ", ")
    peer = str(proxies[-1])
    result = client_ip(peer, {"x-forwarded-for": value}, len(proxies))
    if "," in garbage or not garbage.strip(" \t"):
        # A comma splits the broken proxy's element (an empty one vanishes), so the N-element
        # window shifts left into the client's part: then only "a canonical address" holds.
        # A proxy writing that is outside what trusting a proxy can mean.
        assert result is None or str(ipaddress.ip_address(result)) == result
        return
    allowed = {canonical(proxies[-1])}
    allowed.add(canonical(real) if broken != 0 else xff(garbage, 1, peer=None))
    assert result in allowed


# -- properties: never raises, always canonical ------------------------------------------------

header_names = st.sampled_from(
    ["x-forwarded-for", "forwarded", "x-real-ip", "cf-connecting-ip", "X-Forwarded-For"]
)
# Addresses with a zone id of any text: ipaddress accepts them, client_ip must not.
zoned = st.builds("{}%{}".format, addresses.map(str), client_text)
# ...also where the header parsers look: as the last element, or as a Forwarded node.
zoned_elements = st.builds(
    "{}, {}".format, client_text, zoned | zoned.map('for="[{}]"'.format) | zoned.map("[{}]".format)
)


@settings(max_examples=500, deadline=None, database=None)
@given(
    peer=st.none() | client_text | addresses.map(str) | zoned,
    headers=st.dictionaries(header_names.map(str.lower), client_text | zoned_elements),
    hops=st.integers(min_value=-2, max_value=6),
    name=header_names | st.text(max_size=12),
)
def test_property_never_raises_and_only_returns_canonical_addresses(peer, headers, hops, name):
    result = client_ip(peer, headers, hops, name)
    if result is not None:
        assert isinstance(result, str)
        assert str(ipaddress.ip_address(result)) == result
        assert "%" not in result
        assert getattr(ipaddress.ip_address(result), "ipv4_mapped", None) is None
    if hops <= 0:
        assert result == client_ip(peer, {}, 0)


@settings(max_examples=300, deadline=None, database=None)
@given(address=addresses, port=ports, style=st.integers(min_value=0, max_value=5))
def test_property_every_spelling_of_an_address_gives_its_canonical_form(address, port, style):
    text = spell(address, style)
    if style >= 3:
        text = f"{text}:{port}" if address.version == 4 else f"[{text}]:{port}"
    assert client_ip(text, {}, 0) == canonical(address)
    assert xff(f"{FORGED}, {text}") == canonical(address)
    assert client_ip(f"{text}%1", {}, 0) is None


_OCTET_TEXT = st.one_of(
    st.integers(min_value=0, max_value=999).map(str),
    st.sampled_from(["00", "01", "010", "255", "256", "299", "300", "199", "25", "2550"]),
)


@given(st.lists(_OCTET_TEXT, min_size=3, max_size=5).map(".".join))
def test_a_dotted_peer_is_read_as_ipaddress_reads_it(text):
    # A plain IPv4 peer skips ipaddress (it is its own canonical text); the answer must be
    # the one ipaddress gives: the address, or no address (a leading zero, an octet past 255,
    # three or five octets).
    try:
        expected: Optional[str] = str(ipaddress.IPv4Address(text))
    except ValueError:
        expected = None
    assert client_ip(text, {}) == expected
