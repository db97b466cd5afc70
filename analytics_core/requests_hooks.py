"""Whether a test has patched ``requests``, and reading what a patched ``requests`` returned.

Batches normally go over the keep-alive connection of :mod:`analytics_core.keepalive`, which
``requests`` never sees. A test suite that patches ``requests`` expects to intercept them: with
``responses`` or ``requests-mock``, with ``mock.patch.object(requests.Session, "post")`` (what
analytics-python's own tests do), ``mock.patch("requests.post")``, a replaced adapter or session
class, or VCR.py's recorded cassettes (which patch urllib3's and http.client's connection
classes). While any of these is in place, the transport posts through ``requests`` instead, so
nothing a test meant to catch goes out over the network.

Checked on every POST (a microsecond or two): a patch may start or end at any time.
"""

import http.client
import json
from typing import Any, Callable, List, Optional, Tuple

import requests
import requests.adapters
import requests.api
import requests.sessions
import urllib3.connectionpool

from .keepalive import Response, ResponseHeaders

# (owner, attribute) pairs a test replaces to intercept requests' traffic.
_HOOK_POINTS: Tuple[Tuple[Any, str], ...] = (
    (requests.Session, "request"),
    (requests.Session, "send"),
    (requests.Session, "post"),
    (requests.Session, "get_adapter"),  # requests-mock
    (requests.adapters.HTTPAdapter, "send"),  # responses
    (requests, "post"),
    (requests, "request"),
    (requests, "Session"),
    (requests, "session"),
    (requests.api, "post"),
    (requests.api, "request"),
    (requests.sessions, "Session"),
    (requests.adapters, "HTTPAdapter"),
    # VCR.py records and replays at the connection classes.
    (urllib3.connectionpool.HTTPConnectionPool, "ConnectionCls"),
    (urllib3.connectionpool.HTTPSConnectionPool, "ConnectionCls"),
    (http.client, "HTTPConnection"),
    (http.client, "HTTPSConnection"),
)

_OWN_MODULES = ("requests", "urllib3", "http")


def _is_own(value: Any) -> bool:
    """Whether ``value`` comes from the library that defines the hook point.

    The test is the defining module, not identity with what was there at import: a test's
    double (a ``Mock``, a function of the test module, responses', requests-mock's or VCR.py's
    code) names another module, while the instrumentation of APM agents (OpenTelemetry,
    ddtrace) wraps with ``functools.wraps`` or ``wrapt`` and keeps the original's, so that an
    instrumented production process keeps the fast connection.
    """
    module = getattr(value, "__module__", None)
    if not isinstance(module, str):
        return False
    return module.split(".", 1)[0] in _OWN_MODULES


_last_own: List[Any] = [None] * len(_HOOK_POINTS)


def requests_patched() -> bool:
    """Whether a test replaced anything of ``requests`` (or the connection classes under it)."""
    for index, (owner, name) in enumerate(_HOOK_POINTS):
        value = getattr(owner, name, None)
        if value is _last_own[index]:
            continue
        if not _is_own(value):
            return True
        _last_own[index] = value  # the common case costs an identity test from now on
    return False


def poster() -> Optional[Callable[..., Any]]:
    """``requests.post`` when a test replaced it (``mock.patch("requests.post")``): a batch
    then goes through it, so that the test sees it; else None (post with a session)."""
    post = requests.post
    return None if _is_own(post) else post


def _json_of(answer: Any) -> bytes:
    """The body of a double that only has ``json()`` (``Mock(json=lambda: {...})``)."""
    try:
        payload = answer.json()
        if isinstance(payload, dict):
            return json.dumps(payload).encode()
    except Exception:  # no json(), or one that raises: no body
        pass
    return b""


def answer_of_double(answer: Any) -> Response:
    """What a patched ``requests`` returned (a ``Mock``, a stub object), read as an answer.

    A mock's attributes are mocks too: a ``status_code`` that is not an int means the test did
    not say, and is taken as 200, the answer a test double stands for, so that ``flush()``
    returns at once instead of retrying for minutes. A status the test did set is honoured (a
    stubbed 500 is retried, a 400 reported), with its reason and JSON body where they are text.
    """
    status = getattr(answer, "status_code", None)
    if not isinstance(status, int) or isinstance(status, bool):
        status = 200
    reason = getattr(answer, "reason", None)
    content = getattr(answer, "content", None)
    if not isinstance(content, bytes):
        text = getattr(answer, "text", None)
        content = text.encode("utf-8", "replace") if isinstance(text, str) else _json_of(answer)
    headers = ResponseHeaders()
    given = getattr(answer, "headers", None)
    if isinstance(given, dict) or hasattr(type(given), "items"):
        try:
            for key, value in given.items():
                if isinstance(key, str) and isinstance(value, str):
                    headers[key.lower()] = value
        except Exception:  # a double whose items() is itself a mock, or raises
            pass
    return Response(status, reason if isinstance(reason, str) else "", headers, content)
