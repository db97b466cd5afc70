"""The ``ajs_anonymous_id`` cookie, written the way analytics.js writes it.

When a request needed an anonymous id and had none (no cookie, no user), the integration mints
one and hands it to the browser in this cookie, so the visitor's next request, and analytics.js
in the page, continue the same anonymous identity:

- the value is the id JSON-quoted and URL-encoded (``%22<id>%22``), as analytics.js stores it;
- ``Path=/``, one year (``Max-Age`` and ``Expires``), ``SameSite=Lax``;
- not ``HttpOnly``: analytics.js in the page must be able to read it;
- ``Secure`` when the request came over https;
- no ``Domain`` unless configured (then subdomains share it, as analytics.js's top-level
  domain cookie does).
"""

import re
import time
from email.utils import formatdate
from typing import Any, Optional, Tuple

from . import ANONYMOUS_ID_COOKIE

__all__ = [
    "COOKIE_MAX_AGE",
    "check_cookie_domain",
    "cookie_header",
    "cookie_value",
    "sets_anonymous_id_cookie",
]

COOKIE_MAX_AGE = 365 * 24 * 60 * 60
"""One year, in seconds, as analytics.js keeps it."""

_DOMAIN = re.compile(
    r"^\.?[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]{1,63})*$"
)


def cookie_value(anonymous_id: str) -> str:
    """The cookie's value: ``anonymous_id`` JSON-quoted, the quotes URL-encoded.

    Minted ids are UUIDs, which need no further encoding."""
    return f"%22{anonymous_id}%22"


def check_cookie_domain(domain: Any, setting: str) -> Optional[str]:
    """``domain`` if it is None or a plain domain name; a ``ValueError`` naming ``setting``."""
    if domain is None:
        return None
    if not isinstance(domain, str) or not _DOMAIN.match(domain):
        raise ValueError(f"{setting} must be a domain name such as '.example.com', got {domain!r}")
    return domain


_expires: Tuple[int, str] = (-1, "")
"""The last ``Expires`` date written, and the second it was written for."""


def _expires_text() -> str:
    # formatdate() runs a dozen Python-level steps (about 5 µs); a busy site mints many
    # cookies within one second, all with the same date.
    global _expires
    second = int(time.time())
    cached = _expires  # one read of a tuple: safe without a lock
    if cached[0] != second:
        cached = (second, formatdate(second + COOKIE_MAX_AGE, usegmt=True))
        _expires = cached
    return cached[1]


def cookie_header(anonymous_id: str, *, secure: bool, domain: Optional[str] = None) -> str:
    """A whole ``Set-Cookie`` header value for frameworks without a cookie API (ASGI)."""
    expires = _expires_text()
    parts = [
        f"{ANONYMOUS_ID_COOKIE}={cookie_value(anonymous_id)}",
        f"Expires={expires}",
        f"Max-Age={COOKIE_MAX_AGE}",
        "Path=/",
        "SameSite=Lax",
    ]
    if domain:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def sets_anonymous_id_cookie(set_cookie_value: str) -> bool:
    """Whether one ``Set-Cookie`` value sets ``ajs_anonymous_id`` (the app's own, which wins)."""
    name = set_cookie_value.split("=", 1)[0].strip()
    return name == ANONYMOUS_ID_COOKIE
