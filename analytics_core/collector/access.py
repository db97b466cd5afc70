"""Who may talk to the collector: the Host a request names, the Origin of a browser's request,
and the write key that reads and deletes need when the collector has one.

The collector listens on loopback, but any web page the developer opens can make the browser
send it requests. Three defences, each for what a page could otherwise do:

- **DNS rebinding** (a page whose own name is made to resolve to 127.0.0.1, which then reads
  and wipes the store as if it were same-origin): every request must name, in ``Host``, an
  address the collector listens on (loopback names, the ``--host`` given, or a name allowed
  with ``--allow-host``). A browser always sends the page's own name there.
- **Cross-site requests** (a page that sends a DELETE or a fault plan): a state-changing
  request other than the Tracking API's own must not come from another site (``Origin`` or
  ``Sec-Fetch-Site``). A browser only sends a cross-origin DELETE after a preflight, which the
  collector never grants; this refuses it even without one.
- **Reading what others sent**: with ``--write-key``, reads and deletes need that key too, and
  no answer ever carries a write key, only a short fingerprint of it.
"""

import hashlib
import hmac
import ipaddress
from typing import Iterable, Optional, Tuple
from urllib.parse import urlsplit

__all__ = [
    "ANY_HOST",
    "HostPolicy",
    "check_allowed_host",
    "keys_match",
    "write_key_fingerprint",
]

ANY_HOST = "*"
"""The ``--allow-host`` value that turns the Host check off (a collector behind a proxy that
rewrites names, or in a container reached by a name only Docker knows)."""

FINGERPRINT_LENGTH = 12
"""Hex digits of SHA-256 kept: enough to tell keys apart, too few to hold the key."""

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# Sec-Fetch-Site values of a request the collector's own page made, or the user typed.
_OWN_FETCHES = frozenset({"same-origin", "none"})
_WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind


def write_key_fingerprint(write_key: str) -> str:
    """A short, stable fingerprint of ``write_key`` (the first hex digits of its SHA-256): what
    the collector stores and shows in place of the key.

    Unsalted, so a test or a developer can compute it from a key they hold; a real write key
    is long and random, and a short test key only matters where reads need it anyway.
    """
    digest = hashlib.sha256(write_key.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:FINGERPRINT_LENGTH]


def keys_match(given: Optional[str], expected: str) -> bool:
    """Whether the key a request gave is ``expected``, in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


class HostPolicy:
    """The names a request may address the collector by, in ``Host`` and in ``Origin``."""

    def __init__(self, bind_host: str, allowed: Iterable[str] = ()) -> None:
        names = set(_LOOPBACK_NAMES)
        bind = _normalise(bind_host)
        if bind not in _WILDCARD_ADDRESSES:
            names.add(bind)
        extra = {_normalise(name) for name in allowed}
        self.any = ANY_HOST in extra
        self.extra = frozenset(extra - {ANY_HOST})
        self.names = frozenset(names | self.extra)

    def allows_name(self, name: str) -> bool:
        """Whether ``name`` (no port) is one the collector answers to."""
        name = _normalise(name)
        if self.any or name in self.names:
            return True
        # RFC 6761: browsers resolve every *.localhost name to loopback themselves, so no DNS
        # answer can make one point elsewhere (or here).
        return name.endswith(".localhost") or _is_loopback_address(name)

    def allows_host_header(self, host: Optional[str]) -> bool:
        """Whether a request's ``Host`` names the collector. A request without one (HTTP/1.0,
        a raw script) is let through: a browser, the only attacker this guards against,
        always sends it."""
        if host is None:
            return True
        parsed = _split_host(host.strip())
        return parsed is not None and self.allows_name(parsed[0])

    def allows_origin(
        self, origin: Optional[str], sec_fetch_site: Optional[str], own_port: int
    ) -> bool:
        """Whether a browser request comes from the collector's own page (or from no browser
        at all). A page of another port on the same machine is another origin, though the
        browser calls it "same-site": refused too. ``Origin: null`` (a sandboxed frame, a
        file) is refused. A name given with ``--allow-host`` counts whatever its port (a proxy
        in front serves the page on its own)."""
        if sec_fetch_site is not None and sec_fetch_site.strip().lower() not in _OWN_FETCHES:
            return False
        if origin is None:
            return True
        try:
            parts = urlsplit(origin.strip())
            host, port = parts.hostname, parts.port
        except ValueError:
            return False
        if host is None or not self.allows_name(host):
            return False
        if self.any or _normalise(host) in self.extra:
            return True
        default = {"http": 80, "https": 443}.get(parts.scheme)
        return (port if port is not None else default) == own_port


def check_allowed_host(name: str) -> str:
    """A ``--allow-host`` value, checked: a name or address without a port, or ``*``."""
    value = name.strip()
    parsed = _split_host(value)
    if value != ANY_HOST and (parsed is None or parsed[1] is not None or not parsed[0]):
        raise ValueError(f"{name!r} is not a host name (give it without a port or a scheme)")
    return value


def _normalise(name: str) -> str:
    name = name.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name


def _split_host(value: str) -> Optional[Tuple[str, Optional[str]]]:
    """``Host`` as (name, port), or None when it is not one (RFC 9110 7.2: uri-host [":" port])."""
    if not value or any(char in value for char in " \t/\\@?#,"):
        return None
    if value.startswith("["):  # an IPv6 literal
        end = value.find("]")
        if end == -1:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and _is_port(rest[1:])):
            return None
        return name, rest[1:] or None
    name, _, port = value.partition(":")
    if port and not _is_port(port):
        return None
    return name, port or None


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5


def _is_loopback_address(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
