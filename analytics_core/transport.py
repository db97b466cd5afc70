"""HTTP transport: POST one batch body to ``{host}/v1/batch``, with gzip, auth and retries.

The policy above it (batching, when to send) lives in :mod:`analytics_core.pipeline`; this module
only turns bytes into a delivered request or an exception.

Each uploader thread posts through a session of its own. When no proxy applies to the URL, that
is a :class:`KeepAliveSession`: one kept-alive HTTP/1.1 connection on the stdlib's ``socket`` and
``ssl``, about 50 µs of CPU per POST where ``requests`` (urllib3 and http.client underneath)
spends about 1.2 ms. When a proxy applies (the ``proxies`` option or the environment), or while
a test library hooks into ``requests`` (responses, requests-mock), a ``requests.Session`` posts
as before. Network failures are ``requests`` exceptions on both paths, so ``on_error`` handlers
see the same types.
"""

import base64
import contextlib
import datetime as _dt
import email.utils
import functools
import json
import logging
import os
import random
import re
import socket
import ssl
import sys
import threading
import time
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.utils

from .errors import APIError
from .version import VERSION

logger = logging.getLogger("segment")

DEFAULT_HOST = "https://api.segment.io"
RETRY_AFTER_CAP = 300.0
"""A Retry-After beyond this many seconds is shortened: the queue cannot wait for hours."""

_USER_AGENT = f"analytics-core/{VERSION}"
# Sent by the keep-alive session before the auth headers. Asking for identity keeps answers
# uncompressed: they are a few bytes of JSON, not worth a decompressor.
_DIRECT_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": _USER_AGENT,
    "Accept-Encoding": "identity",
}


class RetryPolicy:
    """Exponential backoff with full jitter: try ``max_retries + 1`` times in all."""

    def __init__(self, max_retries: int = 10, base: float = 0.5, cap: float = 30.0) -> None:
        self.max_retries = max_retries
        self.base = base
        self.cap = cap

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


def batch_url(host: Optional[str]) -> str:
    """``{host}/v1/batch`` for a host given with or without a trailing slash or path prefix."""
    base = (host or DEFAULT_HOST).rstrip("/")
    if "://" not in base:
        base = "https://" + base
    return base + "/v1/batch"


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, RETRY_AFTER_CAP))


def _is_retryable(status: int) -> bool:
    return status >= 500 or status == 429


def _api_error(response: Any) -> APIError:
    code, message = "request-failed", response.reason or ""
    try:
        payload = response.json()
        if isinstance(payload, dict):
            code = str(payload.get("code") or code)
            message = str(payload.get("message") or message)
    except ValueError:
        text = response.text[:200]
        message = text or message
    return APIError(response.status_code, code, message)


def _gzip(body: bytes) -> bytes:
    """``body`` gzipped at level 1: half of level 6's CPU on a batch of JSON (0.4 against
    0.8 ms for 50 KB here) for a body about a tenth larger (4.6 against 4.2 KB). The uploader's
    CPU is taken from the application's threads; a few hundred bytes on the wire are not."""
    if _ONE_CALL_GZIP:
        # One call, so the GIL is let go once: each time it is, getting it back can wait a
        # switch interval while an application thread runs.
        return zlib.compress(body, 1, 31)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


_ONE_CALL_GZIP = sys.version_info >= (3, 11)  # zlib.compress() takes wbits from 3.11 on

# Where test libraries hook into requests: responses patches HTTPAdapter.send, requests-mock
# Session.get_adapter. While one is active, posts go through requests so that it sees them.
_HOOK_POINTS = (
    (requests.adapters.HTTPAdapter, "send"),
    (requests.Session, "send"),
    (requests.Session, "get_adapter"),
)


def _requests_hooked() -> bool:
    """Whether something replaced requests' own sending code (checked on every POST)."""
    for owner, name in _HOOK_POINTS:
        if not getattr(getattr(owner, name), "__module__", "").startswith("requests."):
            return True
    return False


class Transport:
    """Sends batch bodies to the tracking API over one keep-alive connection per thread."""

    def __init__(
        self,
        write_key: Optional[str],
        host: Optional[str] = None,
        *,
        gzip: bool = False,
        timeout: float = 15,
        retry: Optional[RetryPolicy] = None,
        proxies: Optional[Dict[str, str]] = None,
        token_provider: Any = None,
    ) -> None:
        self.url = batch_url(host)
        self.gzip = gzip
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._token_provider = token_provider
        self._basic = "Basic " + base64.b64encode(f"{write_key or ''}:".encode()).decode()
        self._proxies = proxies
        # One session per uploader thread: neither kind may be shared between threads.
        self._local = threading.local()
        self.stop_event = threading.Event()
        """Set to cut retry waits short (shutdown); the batch is then reported, not dropped."""

    def __repr__(self) -> str:  # never show the auth header
        return f"Transport(url={self.url!r}, gzip={self.gzip})"

    def _session(self) -> "Union[requests.Session, KeepAliveSession]":
        """This thread's session: the keep-alive one unless a proxy applies to the URL or a
        test library hooks into requests, else a ``requests.Session``."""
        local = self._local
        direct = getattr(local, "direct", False)
        if direct is False:
            direct = local.direct = self._new_direct_session()
        if direct is not None and not _requests_hooked():
            return direct
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = self._new_session()
        return session

    def _settings(self) -> "Tuple[Dict[str, str], Union[bool, str]]":
        """(proxies, verify) for the URL, from the options and the environment, once a thread.

        requests looks up proxy settings in the environment on every request (about 0.5 ms);
        resolving them once keeps what the environment said when the thread started sending.
        """
        settings = getattr(self._local, "settings", None)
        if settings is None:
            merged = requests.Session().merge_environment_settings(
                self.url, self._proxies or {}, None, None, None
            )
            settings = (merged.get("proxies") or {}, merged.get("verify", True))
            self._local.settings = settings
        return settings

    def _new_direct_session(self) -> "Optional[KeepAliveSession]":
        """A keep-alive session, or None when the URL needs requests (a proxy, credentials in
        the URL, a scheme other than http and https)."""
        if _origin_and_target(self.url) is None:
            return None
        proxies, verify = self._settings()
        if requests.utils.select_proxy(self.url, proxies):
            return None
        return KeepAliveSession(self.url, verify)

    def _new_session(self) -> requests.Session:
        proxies, verify = self._settings()
        session = requests.Session()
        session.trust_env = False  # everything the environment says is in proxies and verify
        session.proxies = proxies
        session.verify = verify
        session.headers.update({"Content-Type": "application/json", "User-Agent": _USER_AGENT})
        return session

    def reset(self) -> None:
        """Forget sessions and the stop flag (used in a forked child: sockets are the parent's).

        The parent's connections are dropped, never closed with a shutdown: closing a copied
        descriptor leaves the parent's connection open.
        """
        self._local = threading.local()
        self.stop_event = threading.Event()

    def _headers(self) -> Dict[str, str]:
        if self._token_provider is not None:
            return {"Authorization": "Bearer " + self._token_provider.get_token()}
        return {"Authorization": self._basic}

    def post_once(self, body: bytes) -> Any:
        """One POST of a batch body; no retries.

        Returns a ``requests.Response`` or a :class:`Response`; both have ``status_code``,
        ``reason``, ``headers``, ``text`` and ``json()``.
        """
        session = self._session()
        if isinstance(session, KeepAliveSession):
            return session.send(self._prepare(body), timeout=self.timeout)
        headers, data = self._headers_and_data(body)
        return session.post(self.url, data=data, headers=headers, timeout=self.timeout)

    def _headers_and_data(self, body: bytes) -> "Tuple[Dict[str, str], bytes]":
        headers = self._headers()
        if self.gzip:
            body = _gzip(body)
            headers["Content-Encoding"] = "gzip"
        return headers, body

    def _prepare(self, body: bytes) -> "PreparedPost":
        headers, data = self._headers_and_data(body)
        return PreparedPost(self.url, dict(_DIRECT_HEADERS, **headers), data)

    def send(
        self,
        body: bytes,
        on_retry: Optional[Callable[[int, BaseException], None]] = None,
        deadline: Optional[float] = None,
    ) -> None:
        """Deliver ``body``, retrying network errors, 5xx and 429; raise the last error.

        ``deadline`` (a ``time.monotonic()`` value) bounds the whole attempt, as at shutdown.
        """
        self._retry(body, self._attempt(body), on_retry, deadline)

    def send_many(
        self,
        bodies: Sequence[bytes],
        on_retry: Optional[Callable[[int, BaseException], None]] = None,
        deadline: Optional[float] = None,
    ) -> List[Optional[BaseException]]:
        """Deliver several bodies; return one entry per body, in order: None when it was
        delivered, else the error :meth:`send` would have raised for it.

        The first try of every body is written, each on a kept-alive connection of its own,
        before any answer is read. The collector then works on them back to back, and this
        thread comes back from the network about once for all of them instead of twice per
        body; each return can cost a GIL switch interval (5 ms) while an application thread
        keeps the CPU busy. Bodies whose first try failed are then retried one at a time, with
        :meth:`send`'s policy. Without a keep-alive session (a proxy, a hooked requests) the
        bodies are sent one after the other. ``on_retry`` and ``deadline`` are :meth:`send`'s.
        """
        sessions = self._sessions(len(bodies)) if len(bodies) > 1 else None
        firsts: List[Tuple[Optional[BaseException], Optional[float]]]
        if sessions is None:
            firsts = [self._attempt(body) for body in bodies]
        else:
            # Write every request, then collect every answer, in the same order.
            pending: List[Any] = []
            for session, body in zip(sessions, bodies):
                try:
                    pending.append(session.begin(self._prepare(body), timeout=self.timeout))
                except (requests.RequestException, APIError) as exc:
                    pending.append(exc)
            firsts = []
            for session, item in zip(sessions, pending):
                if isinstance(item, BaseException):
                    firsts.append(self._judge_error(item))
                    continue
                try:
                    firsts.append(self._judge(session.finish(item)))
                except requests.RequestException as exc:
                    firsts.append(self._judge_error(exc))
        results: List[Optional[BaseException]] = []
        for body, first in zip(bodies, firsts):
            try:
                self._retry(body, first, on_retry, deadline)
            except Exception as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    def _sessions(self, count: int) -> "Optional[List[KeepAliveSession]]":
        """``count`` keep-alive sessions of this thread (created as needed), or None when this
        thread posts through requests."""
        first = self._session()
        if not isinstance(first, KeepAliveSession):
            return None
        extra = getattr(self._local, "extra", None)
        if extra is None:
            extra = self._local.extra = []
        while len(extra) < count - 1:
            extra.append(KeepAliveSession(self.url, first.verify))
        return [first] + extra[: count - 1]

    def _retry(
        self,
        body: bytes,
        first: "Tuple[Optional[BaseException], Optional[float]]",
        on_retry: Optional[Callable[[int, BaseException], None]],
        deadline: Optional[float],
    ) -> None:
        """Go on from the outcome of the first try: wait and try again while the policy allows,
        and raise the last error when it does not."""
        error, wait = first
        attempt = 0
        may_refresh = True
        while error is not None:
            if isinstance(error, APIError) and error.status in (401, 403):
                may_refresh = False  # one fresh token per batch; a second refusal is final
            attempt += 1
            if wait is None or attempt > self.retry.max_retries:
                raise error
            if wait < 0:
                wait = self.retry.delay(attempt)
            if deadline is not None and time.monotonic() + wait > deadline:
                raise error
            if on_retry is not None:
                on_retry(attempt, error)
            logger.debug("analytics: retry %d in %.2fs after %s", attempt, wait, error)
            if self.stop_event.wait(wait) and deadline is None:
                raise error
            error, wait = self._attempt(body, may_refresh)

    def _attempt(
        self, body: bytes, may_refresh: bool = True
    ) -> "tuple[Optional[BaseException], Optional[float]]":
        """One try: (None, None) on success, else (error, seconds to wait, -1 or None = final)."""
        try:
            response = self.post_once(body)
        except (requests.RequestException, APIError) as exc:
            return self._judge_error(exc)
        return self._judge(response, may_refresh)

    @staticmethod
    def _judge_error(
        error: BaseException,
    ) -> "tuple[Optional[BaseException], Optional[float]]":
        # A network error is retried with backoff; an APIError here means the OAuth token
        # could not be had, which the token manager already retried.
        return error, (None if isinstance(error, APIError) else -1.0)

    def _judge(
        self, response: Any, may_refresh: bool = True
    ) -> "tuple[Optional[BaseException], Optional[float]]":
        status = response.status_code
        if 200 <= status < 300:
            return None, None
        error = _api_error(response)
        if status in (401, 403) and self._token_provider is not None and may_refresh:
            self._token_provider.invalidate()  # an expired or revoked token: fetch a new one
            return error, 0.0
        if not _is_retryable(status):
            return error, None
        advised = parse_retry_after(response.headers.get("Retry-After"))
        return error, (-1.0 if advised is None else advised)


# -- the keep-alive HTTP/1.1 session ---------------------------------------------------------

_RECV_SIZE = 65536
_MAX_HEAD = 65536  # http.client's limit for one line; a whole head longer than this is hostile
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class _ConnectionClosed(ConnectionError):
    """The server closed the connection (a read returned no bytes)."""


class _ProtocolError(ConnectionError):
    """The answer did not follow HTTP/1.1; the connection cannot be used again."""


class _StaleConnection(Exception):
    """A reused connection failed before any byte of the answer came back."""


# What a server's close of an idle kept-alive connection looks like to the next request.
_CLOSED_ERRORS = (
    _ConnectionClosed,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class PreparedPost:
    """A request as a session sends it: the fields of ``requests.PreparedRequest`` used here."""

    __slots__ = ("method", "url", "headers", "body")

    def __init__(self, url: str, headers: Dict[str, str], body: bytes, method: str = "POST"):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body


class ResponseHeaders(dict):
    """Response header fields by lower-case name; look-ups ignore case, and repeated fields
    are joined with ", " (as requests shows them)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Response:
    """A complete answer: the part of ``requests.Response`` the transport reads."""

    __slots__ = ("status_code", "reason", "headers", "content")

    def __init__(self, status_code: int, reason: str, headers: ResponseHeaders, content: bytes):
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The body as text: the Content-Type's charset, else requests' defaults (ISO-8859-1
        for ``text/*``, UTF-8 otherwise)."""
        content_type = self.headers.get("content-type", "")
        kind, _, params = content_type.partition(";")
        charset = "iso-8859-1" if kind.strip().lower().startswith("text/") else "utf-8"
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip("\"'")
        try:
            return self.content.decode(charset, "replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body decoded as JSON; raises ``ValueError`` when it is not JSON."""
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


@functools.lru_cache(maxsize=32)
def _origin_and_target(url: str) -> "Optional[Tuple[Tuple[str, str, int], str, str]]":
    """``((scheme, host, port), Host header, request target)`` for an http(s) URL, or None when
    the keep-alive session cannot send to it (other schemes, credentials in the URL, no host)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    try:
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname.encode("idna").decode("ascii")  # as requests sends a Unicode host
    except (ValueError, UnicodeError):
        return None
    host_header = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        host_header += f":{port}"
    target = requests.utils.requote_uri(parts.path or "/")
    if parts.query:
        target += "?" + parts.query
    return (scheme, host, port), host_header, target


def _timeouts(timeout: Any) -> "Tuple[Optional[float], Optional[float]]":
    """(connect, read) seconds from a number, None, or a requests-style pair."""
    if isinstance(timeout, tuple):
        return timeout[0], timeout[1]
    return timeout, timeout


def _ssl_context(verify: Union[bool, str]) -> ssl.SSLContext:
    """A TLS context trusting what requests would trust for ``verify``.

    ``verify`` is requests' setting for the URL: a CA bundle (file or directory) named by
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, or True. For True, OpenSSL's default locations are
    used when SSL_CERT_FILE or SSL_CERT_DIR points them somewhere, else certifi's bundle, which
    is what requests uses. False (never set by the transport) turns verification off.
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)


def _network_error(exc: BaseException, where: str, connecting: bool) -> requests.RequestException:
    """The requests exception requests would raise for ``exc`` (the original is its cause)."""
    text = f"{where}: {exc or type(exc).__name__}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        if connecting:
            return requests.exceptions.ConnectTimeout(text)
        return requests.exceptions.ReadTimeout(text)
    if isinstance(exc, ssl.SSLError):
        return requests.exceptions.SSLError(text)
    return requests.exceptions.ConnectionError(text)


class _Pending:
    """A request written by :meth:`KeepAliveSession.begin`, kept until its answer is read (and
    to write it again on a new connection if the old one turns out to have been closed)."""

    __slots__ = ("method", "data", "where", "connect_timeout", "read_timeout", "reused")

    def __init__(self, method: str, data: bytes, where: str, timeout: Any) -> None:
        self.method = method
        self.data = data
        self.where = where
        self.connect_timeout, self.read_timeout = _timeouts(timeout)
        self.reused = False  # written on a connection an earlier request had used


class KeepAliveSession:
    """One kept-alive HTTP/1.1 connection to one origin, used by one thread at a time.

    It does what a tracking API needs and no more. A request's head and body leave in one write,
    so Nagle's algorithm and delayed ACKs never hold the body back. The answer is read in as few
    system calls as it arrives in: each hands the GIL away, and getting it back can take a
    whole switch interval (5 ms) while the application's threads run. Answers are framed by
    Content-Length, chunked coding or the end of the connection; 1xx answers are skipped. When
    the server closed the connection while it was idle, the request goes again, once, on a new
    connection: it never reached the server, so this is not a retry.
    """

    def __init__(self, url: str, verify: Union[bool, str] = True) -> None:
        target = _origin_and_target(url)
        if target is None:
            raise ValueError("the keep-alive session sends to http and https URLs only")
        self.origin = target[0]
        self.verify = verify
        self.connections = 0
        """Connections opened so far (a reconnect after the server closed one counts)."""
        self._host_header = target[1]
        self._sock: Optional[socket.socket] = None
        self._timeout: Optional[float] = None
        self._buffer = bytearray()
        self._context: Optional[ssl.SSLContext] = None

    def __repr__(self) -> str:
        scheme, host, port = self.origin
        state = "connected" if self._sock is not None else "idle"
        return f"<KeepAliveSession {scheme}://{host}:{port} {state}>"

    def send(self, request: PreparedPost, timeout: Any = None, **kwargs: Any) -> Response:
        """Send ``request`` and read the whole answer; raise a ``requests`` exception when the
        network fails. ``requests.Session.send``'s other arguments are accepted and ignored."""
        return self.finish(self.begin(request, timeout))

    def begin(self, request: PreparedPost, timeout: Any = None) -> "_Pending":
        """Write ``request`` (connecting first when needed); :meth:`finish` reads the answer."""
        found = _origin_and_target(request.url)
        if found is None or found[0] != self.origin:
            raise ValueError(f"this session sends to {self.origin}, not to {request.url!r}")
        pending = _Pending(
            request.method,
            self._serialize(request, found[2]),
            f"{request.method} {self.origin[0]}://{self._host_header}{found[2]}",
            timeout,
        )
        with self._errors(pending.where):
            if self._sock is None:
                self._connect(pending)
            else:
                pending.reused = True
            self._write(pending)
        return pending

    def finish(self, pending: "_Pending") -> Response:
        """Read the answer to the request :meth:`begin` wrote."""
        with self._errors(pending.where):
            try:
                return self._read_response(pending.method, pending.reused)
            except _StaleConnection:
                # The server had closed the idle connection before this request reached it,
                # so sending it again on a new connection cannot make a duplicate.
                self.close()
                self._connect(pending)
                self._write(pending)
                return self._read_response(pending.method, False)

    @contextlib.contextmanager
    def _errors(self, where: str) -> Iterator[None]:
        """Close the connection on any failure, and raise network failures as requests'."""
        try:
            yield
        except requests.RequestException:
            self.close()
            raise
        except OSError as exc:  # socket, TLS and HTTP framing errors alike
            self.close()
            raise _network_error(exc, where, connecting=False) from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- the wire ------------------------------------------------------------------------------

    def _serialize(self, request: PreparedPost, target: str) -> bytes:
        body = request.body or b""
        lines = [f"{request.method} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for name, value in request.headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                # A token from an OAuth server must never be able to add header lines.
                raise requests.exceptions.InvalidHeader(f"invalid value for header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        try:
            return "".join(lines).encode("latin-1") + body
        except UnicodeEncodeError as exc:
            raise requests.exceptions.InvalidHeader(f"a header is not latin-1: {exc}") from exc

    def _connect(self, pending: "_Pending") -> None:
        scheme, host, port = self.origin
        try:
            sock = socket.create_connection((host, port), pending.connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if scheme == "https":
                    if self._context is None:
                        self._context = _ssl_context(self.verify)
                    sock = self._context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            raise _network_error(exc, pending.where, connecting=True) from exc
        self._sock = sock
        self._timeout = pending.connect_timeout
        self.connections += 1

    def _write(self, pending: "_Pending") -> None:
        sock = self._sock
        assert sock is not None
        if pending.read_timeout != self._timeout:  # a system call: only when it changes
            sock.settimeout(pending.read_timeout)
            self._timeout = pending.read_timeout
        # The server may close the connection while the request goes out, having answered
        # first (a 413 or a 401 before reading the body): the answer is read all the same, as
        # urllib3 does. No answer at all means an idle connection was closed (the request goes
        # once more) or, on a new connection, a network error.
        with contextlib.suppress(*_CLOSED_ERRORS):
            sock.sendall(pending.data)

    def _read_response(self, method: str, may_be_stale: bool) -> Response:
        try:
            version, status, reason, headers = self._read_head()
        except _CLOSED_ERRORS as exc:
            if may_be_stale and not self._buffer:  # not one byte of an answer came back
                raise _StaleConnection() from exc
            raise
        while 100 <= status < 200 and status != 101:  # interim answers: the real one follows
            version, status, reason, headers = self._read_head()
        if status == 408 and may_be_stale:
            # Some servers say "408 Request Timeout" as they close an idle kept-alive
            # connection; read on reuse, that is the idle close, not an answer to this request.
            raise _StaleConnection()
        if status == 101:
            raise _ProtocolError("the server switched protocols without being asked")
        until_close = False
        if method == "HEAD" or status in (204, 304):
            content = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            content = self._read_chunked()
        elif "content-length" in headers:
            content = self._read_exact(_content_length(headers["content-length"]))
        else:
            content, until_close = self._read_to_close(), True
        tokens = {token.strip() for token in headers.get("connection", "").lower().split(",")}
        if (
            until_close
            or "close" in tokens
            or (version == "HTTP/1.0" and "keep-alive" not in tokens)
            or self._buffer  # bytes beyond the answer: its framing cannot be trusted
        ):
            self.close()
        return Response(status, reason, headers, content)

    def _receive(self) -> None:
        chunk = self._sock.recv(_RECV_SIZE)  # type: ignore[union-attr]
        if not chunk:
            raise _ConnectionClosed("the server closed the connection")
        self._buffer += chunk

    def _read_head(self) -> "Tuple[str, int, str, ResponseHeaders]":
        while True:
            found = _HEAD_END.search(self._buffer)
            if found is not None:
                break
            if len(self._buffer) > _MAX_HEAD:
                raise _ProtocolError("the answer's head is too long")
            self._receive()
        head = bytes(self._buffer[: found.start()])
        del self._buffer[: found.end()]
        lines = head.decode("iso-8859-1").split("\n")
        version, _, rest = lines[0].rstrip("\r").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
            raise _ProtocolError(f"not an HTTP status line: {lines[0][:80]!r}")
        headers = ResponseHeaders()
        last = None
        for line in lines[1:]:
            line = line.rstrip("\r")
            if line[:1] in (" ", "\t") and last is not None:  # an obsolete folded line
                dict.__setitem__(headers, last, f"{headers[last]} {line.strip()}")
                continue
            name, colon, value = line.partition(":")
            if not colon:
                continue  # not a field; http.client skips such lines too
            last = name.strip().lower()
            value = value.strip()
            previous = dict.get(headers, last)
            dict.__setitem__(headers, last, value if previous is None else f"{previous}, {value}")
        return version, int(code), reason.strip(), headers

    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._receive()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _read_line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                return self._read_exact(end + 1)
            if len(self._buffer) > _MAX_HEAD:
                raise _ProtocolError("a line of the answer is too long")
            self._receive()

    def _read_chunked(self) -> bytes:
        parts: List[bytes] = []
        while True:
            line = self._read_line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0:
                raise _ProtocolError(f"bad chunk size line {line[:40]!r}")
            if size == 0:
                break
            parts.append(self._read_exact(size))
            self._read_line()  # the line end after the chunk's data
        while self._read_line().strip():  # trailer fields, up to an empty line
            pass
        return b"".join(parts)

    def _read_to_close(self) -> bytes:
        try:
            while True:
                self._receive()
        except _ConnectionClosed:
            pass
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _content_length(value: str) -> int:
    """The body length from a Content-Length field (repeats must agree, as RFC 9110 asks)."""
    lengths = {part.strip() for part in value.split(",")}
    if len(lengths) != 1:
        raise _ProtocolError(f"conflicting Content-Length {value!r}")
    (text,) = lengths
    if not text.isdigit():
        raise _ProtocolError(f"bad Content-Length {value!r}")
    return int(text)
