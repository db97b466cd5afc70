"""Turning an HTTP request into a :class:`RequestContext`, once, for every web integration.

Framework-free: the Django, Flask and ASGI integrations hand over the socket peer, the scheme,
host, path, query string and the headers, and get back the context every analytics call made
while handling the request is merged with. Every parser here is defensive: a malformed header,
cookie or encoding leaves its field out (for the client IP: falls back to the socket peer), it
never raises into the user's request.
"""

import functools
import ipaddress
import json
import logging
import operator
import re
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Union
from urllib.parse import unquote

from ..context import RequestContext

logger = logging.getLogger("segment")

__all__ = [
    "ANONYMOUS_ID_COOKIE",
    "DEFAULT_FORWARDED_HEADER",
    "anonymous_id_from_cookie",
    "build_request_context",
    "client_ip",
    "cookie_value",
    "headers_from_asgi",
    "headers_from_wsgi",
    "locale_from_accept_language",
    "normalize_forwarded_header",
    "warn_if_the_server_rewrote_the_peer",
    "request_fields",
]

ANONYMOUS_ID_COOKIE = "ajs_anonymous_id"
"""The cookie analytics.js keeps the browser's anonymous id in."""

# Ids and header values longer than this are not real: leave them out rather than let one
# request push its messages towards the 32 KB limit.
_MAX_ID_LENGTH = 256
_MAX_HEADER_LENGTH = 4096
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


# -- client IP --------------------------------------------------------------------------------
#
# The rule (DESIGN.md, "Rules of behaviour"): the socket peer is the client unless the user
# said N proxies stand in front of the app. Then the forwarding header the proxies write is
# read, but only its last N elements: those are what the N proxies appended, everything to
# their left came from the client and may be forged. Anything unexpected in those N elements
# means "use the peer", never "use something the client wrote".

_OWS = " \t"
# RFC 9110 token characters: a header name, a Forwarded parameter name or plain value.
_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(f"[{_TCHAR}]+")
# A Forwarded value: a token, with ":" allowed too because proxies write ``for=1.2.3.4:80``
# unquoted (RFC 7239 wants it quoted), or a quoted-string with backslash escapes. Only
# latin-1 characters can occur in a decoded header; the classes are explicit, never \d or \w,
# so no non-ASCII digit or letter slips through.
_QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_FORWARDED_PAIR = re.compile(f"([{_TCHAR}]+)=([{_TCHAR}:]+|{_QUOTED_STRING})")
_PAIR_SEPARATOR = re.compile(r"[ \t]*;[ \t]*")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)

# Addresses, in the only shapes accepted: IPv4, IPv4:port, IPv6, [IPv6], [IPv6]:port. Octets
# with leading zeros are refused here because Python 3.9.0-3.9.4 read them as decimal while
# other software reads them as octal. No "%": a zone id would let any text through.
_OCTET = "(?:0|[1-9][0-9]{0,2})"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_ADDRESS = re.compile(
    rf"(?P<v4>{_IPV4.pattern})(?::[0-9]{{1,5}})?"
    r"|\[(?P<v6b>[0-9A-Fa-f:.]+)\](?::[0-9]{1,5})?"
    r"|(?P<v6>[0-9A-Fa-f:.]+)"
)
# The longest accepted shape is "[" + 45-character IPv6 + "]:65535"; anything longer is not
# an address and is refused before any parsing work.
_MAX_ADDRESS_LENGTH = 56
# A Forwarded element a proxy writes is a few short pairs; a longer one is not from a proxy.
_MAX_ELEMENT_LENGTH = 1024

_Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_ANY_SHAPE = frozenset(("v4", "v6b", "v6"))
# RFC 7239 node shapes: an IPv4 node may be a token; an IPv6 node is quoted and bracketed.
_FORWARDED_TOKEN_SHAPES = frozenset(("v4",))
_FORWARDED_QUOTED_SHAPES = frozenset(("v4", "v6b"))

DEFAULT_FORWARDED_HEADER = "x-forwarded-for"
"""The forwarding header read by default when ``trusted_proxies`` is above zero."""


def _header_name(name: object) -> Optional[str]:
    """``name`` stripped and lower-cased if it is an HTTP token, else None (never raises)."""
    if not isinstance(name, str):
        return None
    name = name.strip()
    # Checked before lower-casing: str.lower() turns some non-ASCII letters (the Kelvin sign)
    # into ASCII ones, which would let a non-token through.
    if not _TOKEN.fullmatch(name):
        return None
    return name.lower()


def normalize_forwarded_header(name: str) -> str:
    """The header name ``name`` as :func:`client_ip` compares it: stripped and lower-cased.

    Raises :class:`ValueError` naming the value if it is not an HTTP header name (an RFC 9110
    token), so integrations can reject a bad setting at start-up rather than silently never
    finding the header.
    """
    normalized = _header_name(name)
    if normalized is None:
        raise ValueError(f"forwarded_header must be an HTTP header name, got {name!r}")
    return normalized


def _parse_address(text: str, shapes: FrozenSet[str] = _ANY_SHAPE) -> Optional[_Address]:
    """The address in ``text``, or None.

    ``text`` must be exactly one of the accepted shapes (no whitespace, quotes or zone id) and
    parse with :mod:`ipaddress`; ``shapes`` narrows which of them are allowed. IPv4-mapped IPv6
    (``::ffff:1.2.3.4``, what a dual-stack socket reports for IPv4 clients) becomes the IPv4.
    """
    if len(text) > _MAX_ADDRESS_LENGTH:
        return None
    match = _ADDRESS.fullmatch(text)
    if match is None or match.lastgroup not in shapes:
        return None
    kind, found = match.lastgroup, match.group(match.lastgroup)
    if kind != "v4" and "." in found and not _IPV4.fullmatch(found.rpartition(":")[2]):
        # An embedded IPv4 tail follows the same no-leading-zeros rule as plain IPv4.
        return None
    address: _Address
    try:
        address = ipaddress.IPv4Address(found) if kind == "v4" else ipaddress.IPv6Address(found)
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def _parse_ip(text: str) -> Optional[str]:
    """The canonical text of the address in ``text`` (any accepted shape), or None."""
    if _IPV4.fullmatch(text) and all(len(octet) < 3 or octet <= "255" for octet in text.split(".")):
        # A plain IPv4 address (the socket peer, most of the time) is its own canonical text:
        # _IPV4 has no leading zeros and the octets are in range. 1 µs instead of 7 for
        # ipaddress's parsing and str().
        return text
    address = _parse_address(text)
    # str() is the costly part for IPv6, so it is only paid for the one address returned.
    return None if address is None else str(address)


def _trusted_elements(value: str, count: int) -> List[str]:
    """The last ``count`` non-empty elements of the comma-separated ``value``, in order.

    Splits at every comma, quotes or not: a proxy never appends a comma inside its own
    element, so the last ``count`` pieces are exactly what ``count`` proxies appended, and no
    quote the client left open can reach across into them. Optional whitespace around an
    element is dropped and empty elements are skipped (RFC 9110's list rule). The scan runs
    from the right and stops after ``count`` elements, so a huge client part costs nothing.
    """
    elements: List[str] = []
    end = len(value)
    while len(elements) < count:
        start = value.rfind(",", 0, end)
        element = value[start + 1 : end].strip(_OWS)
        if element:
            elements.append(element)
        if start < 0:
            break
        end = start
    elements.reverse()
    return elements


def _forwarded_pairs(element: str) -> Optional[Dict[str, Tuple[str, bool]]]:
    """The parameters of one RFC 7239 element as ``{name: (value, quoted)}``, None if malformed.

    Strict: ``pair *( OWS ";" OWS pair )``, names are tokens (compared lower-cased), values are
    tokens or closed quoted-strings (returned unescaped), and no parameter may repeat (RFC 7239
    section 4), so there is never a choice between two ``for`` nodes.
    """
    if len(element) > _MAX_ELEMENT_LENGTH:
        return None
    pairs: Dict[str, Tuple[str, bool]] = {}
    position = 0
    while True:
        pair = _FORWARDED_PAIR.match(element, position)
        if pair is None:
            return None
        name, value = pair.group(1).lower(), pair.group(2)
        if name in pairs:
            return None
        if value.startswith('"'):
            pairs[name] = (_QUOTED_PAIR.sub(r"\1", value[1:-1]), True)
        else:
            pairs[name] = (value, False)
        position = pair.end()
        if position == len(element):
            return pairs
        separator = _PAIR_SEPARATOR.match(element, position)
        if separator is None:
            return None
        position = separator.end()


def _forwarded_for(pairs: Dict[str, Tuple[str, bool]]) -> Optional[_Address]:
    """The address of a parsed element's ``for`` node; None when there is none, or when it is
    ``unknown``, an obfuscated ``_node`` or anything else that is not an address."""
    node = pairs.get("for")
    if node is None:
        return None
    value, quoted = node
    return _parse_address(value, _FORWARDED_QUOTED_SHAPES if quoted else _FORWARDED_TOKEN_SHAPES)


def client_ip(
    peer: Optional[str],
    headers: Mapping[str, str],
    trusted_proxies: int = 0,
    forwarded_header: str = DEFAULT_FORWARDED_HEADER,
) -> Optional[str]:
    """The client's address, trusting a forwarding header only across ``trusted_proxies`` hops.

    With no trusted proxies the socket ``peer`` is the client, whatever the headers claim.
    With N, the peer is the nearest proxy and each of the N proxies appended the address that
    connected to it to ``forwarded_header`` (the one header the user's proxies write, a lower-
    case key of ``headers``; ``"forwarded"`` is read with RFC 7239's grammar, any other name as
    an ``X-Forwarded-For`` list). The client is the N-th element from the right; fewer than N
    elements means they were all written by proxies and the left-most is taken. Every other
    header is ignored, and anything malformed in those last N elements, or a chosen node that
    is no address, gives the peer: never something the client wrote.

    The result is None or a canonical address, ``str(ipaddress.ip_address(...))``; a peer that
    is no address (a unix socket path, ``testclient``) gives None. Never raises.
    """
    try:
        hops = operator.index(trusted_proxies)
    except TypeError:
        # Not an integer: trust nothing rather than break the request (settings are checked
        # by the integrations at start-up).
        hops = 0
    if hops > 0:
        name = _header_name(forwarded_header)
        value = headers.get(name) if name is not None else None
        if isinstance(value, str):
            address = _address_from_header(value, hops, name == "forwarded")
            if address is not None:
                return str(address)
    return _parse_ip(peer) if isinstance(peer, str) else None


def _address_from_header(value: str, hops: int, forwarded: bool) -> Optional[_Address]:
    """The client address ``hops`` trusted proxies wrote into ``value``, or None for "use the
    peer": no element at all, a malformed one in the trusted part, or no address chosen."""
    elements = _trusted_elements(value, hops)
    # elements[0] is the chosen one; the others must be well-formed too: garbage after it
    # means the chain of proxies is not the one the user described, so nothing is trusted.
    chosen: Optional[_Address] = None
    for index, element in enumerate(elements):
        if forwarded:
            pairs = _forwarded_pairs(element)
            if pairs is None:
                return None
            if index == 0:
                chosen = _forwarded_for(pairs)
        else:
            address = _parse_address(element)
            if address is None:
                return None
            if index == 0:
                chosen = address
    return chosen


_warned_about_server_proxy_headers = False


def warn_if_the_server_rewrote_the_peer(
    peer: Optional[str], forwarded_for: Optional[str], setting: str
) -> bool:
    """Warn once per process when the server seems to have taken the peer from
    ``X-Forwarded-For`` itself; True when it warned now.

    uvicorn (alone, or as gunicorn's ``UvicornWorker``) replaces the ASGI ``client`` with an
    address from ``X-Forwarded-For`` when the connection comes from ``--forwarded-allow-ips``
    (by default 127.0.0.1 and ::1), before any application code runs: the real peer is gone,
    and any process that connects from there chooses its ``context.ip``. That cannot be told for
    sure afterwards; a peer that is one of the header's entries is the trace. ``setting`` names
    the integration's ``trusted_proxies`` setting in the advice.
    """
    global _warned_about_server_proxy_headers
    if _warned_about_server_proxy_headers or not peer or not forwarded_for:
        return False
    if peer not in {entry.strip().strip("[]") for entry in forwarded_for.split(",")}:
        return False
    _warned_about_server_proxy_headers = True
    logger.warning(
        "analytics: the server took this request's client address from X-Forwarded-For "
        "(uvicorn's proxy headers, trusted for --forwarded-allow-ips); context.ip is what it "
        "chose, and a client connecting from a trusted address can choose it. Run uvicorn "
        "with --forwarded-allow-ips set to your proxy's address only, or with "
        "--no-proxy-headers and %s set to the number of proxies in front of the app (see the "
        "README)",
        setting,
    )
    return True


def locale_from_accept_language(value: Optional[str]) -> Optional[str]:
    """The first language tag of an ``Accept-Language`` header (``en-US,en;q=0.9`` -> ``en-US``)."""
    if not value:
        return None
    first = value.split(",", 1)[0].split(";", 1)[0].strip()
    return first if _LANGUAGE_TAG.match(first) else None


def cookie_value(cookie_header: Optional[str], name: str) -> Optional[str]:
    """The raw value of cookie ``name`` in a ``Cookie`` header, without ``http.cookies``'s
    habit of discarding every cookie once one of them is malformed."""
    if not cookie_header:
        return None
    for pair in cookie_header.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    return None


def anonymous_id_from_cookie(value: Optional[str]) -> Optional[str]:
    """The id in analytics.js's ``ajs_anonymous_id`` cookie, which the browser stores
    URL-encoded and JSON-quoted (``%22abc%22``); plain values are accepted as they are.

    What is left must look like an id: printable, no quotes or backslashes (a broken or
    doubly-encoded JSON string), and not a JSON object or list."""
    if not value or len(value) > 3 * _MAX_ID_LENGTH:
        return None
    try:
        text = unquote(value, errors="strict").strip()
    except UnicodeDecodeError:
        return None
    if text.startswith('"'):
        try:
            text = json.loads(text)
        except ValueError:
            return None
        if not isinstance(text, str):
            return None
    text = text.strip()
    if not text or len(text) > _MAX_ID_LENGTH or not text.isprintable():
        return None
    if '"' in text or "\\" in text or text[0] in "{[":
        return None
    # What a script wrote for "no id" (a JSON null, JavaScript's undefined): taken as an id, it
    # would make every visitor whose page wrote it one and the same user in Segment.
    if text.lower() in _NO_ID_PLACEHOLDERS:
        return None
    return text


_NO_ID_PLACEHOLDERS = frozenset({"null", "undefined", "none", "nan"})


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    value = headers.get(name)
    if not value or len(value) > _MAX_HEADER_LENGTH:
        return None
    return value


def _text_as_sent(value: Optional[str]) -> Optional[str]:
    """A header's text as its sender wrote it: WSGI and ASGI decode header bytes as latin-1,
    which turns the UTF-8 of a user agent such as ``MyApp/2 (Café ☃)`` into ``CafÃ©``. Bytes
    that are valid UTF-8 are read as UTF-8 (latin-1 text with accents almost never is)."""
    if value is None or value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not UTF-8 (or not from bytes at all): latin-1 it was
        return value


def _page(
    scheme: str, host: Optional[str], path: str, query_string: str, referrer: Optional[str]
) -> dict:
    # A path or query string longer than a header may be is left out, as an over-long header
    # is: a 17 KB query string (in page.search and again in page.url) made the message larger
    # than the API takes (32 KB), and the event was lost. Without its query the URL still
    # names the page.
    page: Dict[str, Any] = {}
    path_kept = len(path) <= _MAX_HEADER_LENGTH
    if path_kept:
        page["path"] = path
    if len(query_string) <= _MAX_HEADER_LENGTH:
        page["search"] = f"?{query_string}" if query_string else ""
    if host and path_kept:
        page["url"] = f"{scheme}://{host}{path}{page.get('search', '')}"
    if referrer:
        page["referrer"] = referrer
    return page


def request_fields(
    *,
    peer: Optional[str],
    scheme: str,
    host: Optional[str],
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    trusted_proxies: int = 0,
    anonymous_id_cookie: Optional[str] = None,
    forwarded_header: str = DEFAULT_FORWARDED_HEADER,
) -> Tuple[Dict[str, Any], Optional[str]]:
    """The context fields and the ``ajs_anonymous_id`` of one request.

    ``headers`` maps lower-case header names to their (latin-1 decoded) values;
    ``anonymous_id_cookie`` is the raw ``ajs_anonymous_id`` cookie value if the framework
    parsed cookies already, otherwise it is read from the ``cookie`` header.
    ``trusted_proxies`` and ``forwarded_header`` are :func:`client_ip`'s.
    """
    context: Dict[str, Any] = {}
    ip = client_ip(peer, headers, trusted_proxies, forwarded_header)
    if ip:
        context["ip"] = ip
    user_agent = _text_as_sent(_header(headers, "user-agent"))
    if user_agent:
        context["userAgent"] = user_agent
    locale = locale_from_accept_language(_header(headers, "accept-language"))
    if locale:
        context["locale"] = locale
    context["page"] = _page(
        scheme, host, path, query_string, _text_as_sent(_header(headers, "referer"))
    )
    if anonymous_id_cookie is None:
        anonymous_id_cookie = cookie_value(headers.get("cookie"), ANONYMOUS_ID_COOKIE)
    return context, anonymous_id_from_cookie(anonymous_id_cookie)


def build_request_context(
    *,
    peer: Optional[str],
    scheme: str,
    host: Optional[str],
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    trusted_proxies: int = 0,
    anonymous_id_cookie: Optional[str] = None,
    user_id: Optional[str] = None,
    client: Any = None,
    forwarded_header: str = DEFAULT_FORWARDED_HEADER,
) -> RequestContext:
    """The context of one request, built now (see :func:`request_fields` for the arguments).

    ``client`` is the integration's client, used by the module-level API while this context is
    current. Integrations defer this work instead: ``RequestContext(fill=...)``.
    """
    context, anonymous_id = request_fields(
        peer=peer,
        scheme=scheme,
        host=host,
        path=path,
        query_string=query_string,
        headers=headers,
        trusted_proxies=trusted_proxies,
        anonymous_id_cookie=anonymous_id_cookie,
        forwarded_header=forwarded_header,
    )
    return RequestContext(context, user_id=user_id, anonymous_id=anonymous_id, client=client)


# The headers request_fields reads, by their WSGI environ key.
_WSGI_HEADERS = {
    "HTTP_USER_AGENT": "user-agent",
    "HTTP_ACCEPT_LANGUAGE": "accept-language",
    "HTTP_REFERER": "referer",
    "HTTP_COOKIE": "cookie",
    "HTTP_X_FORWARDED_FOR": "x-forwarded-for",
    "HTTP_FORWARDED": "forwarded",
}


def headers_from_wsgi(
    environ: Mapping[str, Any], forwarded_header: str = DEFAULT_FORWARDED_HEADER
) -> Dict[str, str]:
    """The headers :func:`request_fields` reads, from a WSGI environ (or Django's META).

    ``forwarded_header`` is the header the user's proxies write (see :func:`client_ip`); it is
    carried under its lower-case name, as ``HTTP_<NAME>`` is where WSGI keeps it.
    """
    if not isinstance(forwarded_header, str):  # never raises, as _header_name never did
        forwarded_header = ""
    headers = {}
    for key, name in _wsgi_keys(forwarded_header):
        value = environ.get(key)
        if isinstance(value, str):
            headers[name] = value
    return headers


@functools.lru_cache(maxsize=16)
def _wsgi_keys(forwarded_header: str) -> Tuple[Tuple[str, str], ...]:
    # The environ keys to read and the names they go under, per forwarded-header setting (an
    # app has one): worked out once instead of on every request.
    keys = dict(_WSGI_HEADERS)
    configured = _header_name(forwarded_header)
    if configured is not None:
        # Not validated loudly here: this runs inside the request, and an unusable name just
        # means the header is never found and the peer is used.
        keys["HTTP_" + configured.upper().replace("-", "_")] = configured
    return tuple(keys.items())


def headers_from_asgi(raw: Iterable[Tuple[bytes, bytes]]) -> Mapping[str, str]:
    """ASGI's list of (name, value) byte pairs as a dict; repeated headers joined by commas."""
    headers: dict = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in headers:
            # HTTP/2 may split cookies over several headers; they rejoin with "; ".
            text = f"{headers[key]}{'; ' if key == 'cookie' else ', '}{text}"
        headers[key] = text
    return headers
