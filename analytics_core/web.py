"""Turning an HTTP request into a :class:`RequestContext`, once, for every web integration.

Framework-free: the Django, Flask and ASGI integrations hand over the socket peer, the scheme,
host, path, query string and the headers, and get back the context every analytics call made
while handling the request is merged with. Every parser here is defensive: a malformed header,
cookie or encoding leaves its field out, it never raises into the user's request.
"""

import ipaddress
import json
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import unquote

from .context import RequestContext

__all__ = [
    "ANONYMOUS_ID_COOKIE",
    "anonymous_id_from_cookie",
    "build_request_context",
    "client_ip",
    "cookie_value",
    "headers_from_asgi",
    "headers_from_wsgi",
    "locale_from_accept_language",
    "request_fields",
]

ANONYMOUS_ID_COOKIE = "ajs_anonymous_id"
"""The cookie analytics.js keeps the browser's anonymous id in."""

# Ids and header values longer than this are not real: leave them out rather than let one
# request push its messages towards the 32 KB limit.
_MAX_ID_LENGTH = 256
_MAX_HEADER_LENGTH = 4096
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


def _parse_ip(text: str) -> Optional[str]:
    """The address in ``text`` (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``), or None."""
    text = text.strip().strip('"').strip()
    if not text:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        # IPv4 with a port; a bare IPv6 address has at least two colons.
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; they are IPv4 clients.
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _split_header_list(value: str) -> List[str]:
    """Comma-separated elements, commas inside double quotes kept (RFC 7239 quoting)."""
    elements, current, quoted = [], [], False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            elements.append("".join(current))
            current = []
        else:
            current.append(char)
    elements.append("".join(current))
    return [element.strip() for element in elements]


def _forwarded_for(value: str) -> List[str]:
    """The ``for=`` node of each element of an RFC 7239 ``Forwarded`` header, in order."""
    nodes = []
    for element in _split_header_list(value):
        node = ""
        for pair in element.split(";"):
            name, _, param = pair.partition("=")
            if name.strip().lower() == "for":
                node = param.strip()
        nodes.append(node)
    return nodes


def client_ip(
    peer: Optional[str], headers: Mapping[str, str], trusted_proxies: int = 0
) -> Optional[str]:
    """The client's address, trusting forwarding headers only across ``trusted_proxies`` hops.

    With no trusted proxies the socket peer is the client, whatever the headers claim. With N,
    the peer is the nearest proxy and each proxy appended the address that connected to it, so
    the client is the N-th entry from the right of ``X-Forwarded-For`` (or of ``Forwarded``'s
    ``for=`` nodes): anything to its left was written by the client and may be forged. An
    entry that is not an IP address (``unknown``, an obfuscated node, garbage) gives None.
    """
    if trusted_proxies <= 0:
        return _parse_ip(peer) if peer else None
    forwarded_for = headers.get("x-forwarded-for")
    if forwarded_for:
        hops = _split_header_list(forwarded_for)
    elif headers.get("forwarded"):
        hops = _forwarded_for(headers["forwarded"])
    else:
        # No header although proxies were promised: the peer is the best we know.
        return _parse_ip(peer) if peer else None
    hops = [hop for hop in hops if hop]
    if not hops:
        return None
    # Fewer entries than promised hops means fewer proxies on this path; the left-most entry
    # is then the closest thing to the client that a proxy wrote.
    chosen = hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]
    return _parse_ip(chosen)


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
    URL-encoded and JSON-quoted (``%22abc%22``); plain values are accepted as they are."""
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
    return text


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    value = headers.get(name)
    if not value or len(value) > _MAX_HEADER_LENGTH:
        return None
    return value


def _page(
    scheme: str, host: Optional[str], path: str, query_string: str, referrer: Optional[str]
) -> dict:
    search = f"?{query_string}" if query_string else ""
    page = {"path": path, "search": search}
    if host:
        page["url"] = f"{scheme}://{host}{path}{search}"
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
) -> Tuple[Dict[str, Any], Optional[str]]:
    """The context fields and the ``ajs_anonymous_id`` of one request.

    ``headers`` maps lower-case header names to their (latin-1 decoded) values;
    ``anonymous_id_cookie`` is the raw ``ajs_anonymous_id`` cookie value if the framework
    parsed cookies already, otherwise it is read from the ``cookie`` header.
    """
    context: Dict[str, Any] = {}
    ip = client_ip(peer, headers, trusted_proxies)
    if ip:
        context["ip"] = ip
    user_agent = _header(headers, "user-agent")
    if user_agent:
        context["userAgent"] = user_agent
    locale = locale_from_accept_language(_header(headers, "accept-language"))
    if locale:
        context["locale"] = locale
    context["page"] = _page(scheme, host, path, query_string, _header(headers, "referer"))
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


def headers_from_wsgi(environ: Mapping[str, Any]) -> Dict[str, str]:
    """The headers :func:`request_fields` reads, from a WSGI environ (or Django's META)."""
    headers = {}
    for key, name in _WSGI_HEADERS.items():
        value = environ.get(key)
        if isinstance(value, str):
            headers[name] = value
    return headers


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
