"""HTTP transport: POST one batch body to ``{host}/v1/batch``, with gzip, auth and retries.

The policy above it (batching, when to send) lives in :mod:`analytics_core.pipeline`; this module
only turns bytes into a delivered request or an exception.

Each uploader thread posts through a session of its own. When no proxy applies to the URL, that
is a :class:`~analytics_core.keepalive.KeepAliveSession`: one kept-alive HTTP/1.1 connection
(about 50 µs of CPU per POST where ``requests`` spends about 1.2 ms). When a proxy applies (the
``proxies`` option or the environment), or while a test library hooks into ``requests``
(responses, requests-mock), a ``requests.Session`` posts as before. Network failures are
``requests`` exceptions on both paths, so ``on_error`` handlers see the same types.

Both paths read at most :data:`~analytics_core.keepalive.MAX_ANSWER_BYTES` of an answer, and
neither lets the write key out in an exception: requests' exceptions keep the prepared request
(the ``Authorization`` header, the body with ``writeKey``), so they are raised again without it.
"""

from __future__ import annotations  # the annotations name requests' types, imported late

import base64
import datetime as _dt
import logging
import sys
import threading
import time
import weakref
import zlib
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple, Union

from .errors import APIError
from .version import VERSION

if TYPE_CHECKING:  # pragma: no cover
    import requests

    from .keepalive import KeepAliveSession, PreparedPost

logger = logging.getLogger("segment")

_http_loaded = False


def load_http() -> None:
    """Import what sending needs (requests, urllib3, the keep-alive session) on first use.

    ``import analytics_core`` and ``Client(...)`` stay light: requests and urllib3 are most of
    what a fresh process would import, and a background client first sends from its uploader
    thread, which pays the import off the caller's path. Cheap after the first call.
    """
    global _http_loaded, requests, KeepAliveSession, PreparedPost, ResponseTooLarge
    global origin_and_target, answer_of_double, poster, requests_patched
    if _http_loaded:
        return
    import requests  # noqa: F811
    import requests.adapters
    import requests.utils

    from .keepalive import (  # noqa: F811
        KeepAliveSession,
        PreparedPost,
        ResponseTooLarge,
        origin_and_target,
    )
    from .requests_hooks import answer_of_double, poster, requests_patched

    _http_loaded = True


DEFAULT_HOST = "https://api.segment.io"
MAX_ANSWER_BYTES = 65536
"""The most of an answer's body that is read: the tracking API answers a few dozen bytes."""
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


DEFAULT_MAX_TOTAL_BACKOFF = 43200.0
"""analytics-python's bound (seconds) on retrying one batch, from its first failure."""
DEFAULT_MAX_RATE_LIMIT = 1800.0
"""analytics-python's bound (seconds) on waiting out 429s for one batch."""


class RetryPolicy:
    """Exponential backoff with full jitter: try ``max_retries + 1`` times in all, and retry
    no later than ``max_total_backoff`` seconds after the first failure, nor after
    ``max_rate_limit`` seconds of 429 answers in a row (analytics-python 2.4's
    ``max_total_backoff_duration`` and ``max_rate_limit_duration``)."""

    def __init__(
        self,
        max_retries: int = 10,
        base: float = 0.5,
        cap: float = 30.0,
        max_total_backoff: float = DEFAULT_MAX_TOTAL_BACKOFF,
        max_rate_limit: float = DEFAULT_MAX_RATE_LIMIT,
    ) -> None:
        self.max_retries = max_retries
        self.base = base
        self.cap = cap
        self.max_total_backoff = max_total_backoff
        self.max_rate_limit = max_rate_limit

    def allows(
        self, now: float, wait: float, first_failure: float, rate_limited_since: Optional[float]
    ) -> bool:
        """Whether a retry ``wait`` seconds from ``now`` stays within both time budgets."""
        if now + wait - first_failure > self.max_total_backoff:
            return False
        return rate_limited_since is None or now + wait - rate_limited_since <= self.max_rate_limit

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        import random  # only a retry needs it

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
            import email.utils  # only an HTTP-date Retry-After needs it

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


def _api_error(response: Any, secrets: Iterable[str] = ()) -> APIError:
    code, message = "request-failed", response.reason or ""
    try:
        payload = response.json()
        if isinstance(payload, dict):
            code = str(payload.get("code") or code)
            message = str(payload.get("message") or message)
    except ValueError:
        text = response.text[:200]
        message = text or message
    # A proxy's error page may echo the request back: never its credentials.
    return APIError(response.status_code, _redact(code, secrets), _redact(message, secrets))


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def read_answer(response: requests.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """Read the body of a response requested with ``stream=True``, at most ``limit`` bytes.

    Over that, raise :class:`~analytics_core.keepalive.ResponseTooLarge` and close the
    connection; else the body is kept as ``response.content`` (read fully, the connection goes
    back to the pool), so ``text`` and ``json()`` work as usual.
    """
    load_http()
    status = response.status_code
    declared = response.headers.get("Content-Length", "")
    # Said up front (compressed or not, a body that long is not the API's answer): read none.
    too_large = declared.isdigit() and int(declared) > limit
    parts = []
    size = 0
    try:
        if not too_large:
            for chunk in response.iter_content(16384):
                size += len(chunk)
                if size > limit:
                    too_large = True
                    break
                parts.append(chunk)
    except BaseException:
        response.close()
        raise
    if too_large:
        response.close()
        raise ResponseTooLarge(
            f"the answer (HTTP {status}) is over {limit} bytes; the tracking API answers a few "
            "bytes (is the host right?)",
            status=status,
        )
    content = response._content = b"".join(parts)
    return content


def settled_answer(response: Any, limit: int = MAX_ANSWER_BYTES) -> Any:
    """What ``requests`` answered, read: a ``requests.Response`` (asked with ``stream=True``)
    has its body read as :func:`read_answer` reads it; anything else came from a test's patched
    ``requests`` (a ``Mock``, a stub object) and is read as such
    (:func:`~analytics_core.requests_hooks.answer_of_double`). The batch POST and the OAuth
    token request both go through here."""
    load_http()
    if isinstance(response, requests.Response):
        read_answer(response, limit)
        return response
    return answer_of_double(response)


def scrubbed(error: BaseException, secrets: Iterable[str] = ()) -> BaseException:
    """``error`` raised again without what requests attached to it: a new exception of the same
    type with the same text (``secrets`` redacted), no ``request``, ``response`` or cause.

    requests keeps the prepared request on its exceptions, and urllib3 its own exception (with
    the pool and, down its chain, the frames that held the body) as the first argument.
    """
    load_http()
    text = _redact(str(error), secrets)
    try:
        clean = type(error)(text)
    except Exception:  # a type whose constructor wants more: the closest plain one
        clean = requests.exceptions.ConnectionError(text)
    if isinstance(error, ResponseTooLarge):
        clean.status = error.status  # type: ignore[attr-defined]
    return clean


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
        encoded = base64.b64encode(f"{write_key or ''}:".encode()).decode()
        self._basic = "Basic " + encoded
        # Kept out of every exception and error text (see scrubbed()).
        self._secrets = tuple(secret for secret in (write_key, encoded) if secret)
        self._proxies = proxies
        self.max_answer = MAX_ANSWER_BYTES
        """The most of an answer's body that is read (see :func:`read_answer`)."""
        self._init_sessions()

    def _init_sessions(self) -> None:
        # One session per uploader thread: neither kind may be shared between threads.
        self._local = threading.local()
        # Every thread's keep-alive session, for abort(); weak, so a thread's end frees its own.
        self._sessions: weakref.WeakSet[KeepAliveSession] = weakref.WeakSet()
        self._sessions_lock = threading.Lock()
        self.stop_event = threading.Event()
        """Set to cut retry waits short (shutdown); the batch is then reported, not dropped."""

    def __repr__(self) -> str:  # never show the auth header
        return f"Transport(url={self.url!r}, gzip={self.gzip})"

    def _session(self) -> Union[requests.Session, KeepAliveSession]:
        """This thread's session: the keep-alive one unless a proxy applies to the URL or a
        test library hooks into requests, else a ``requests.Session``."""
        load_http()
        local = self._local
        direct = getattr(local, "direct", False)
        if direct is False or (direct is not None and direct._aborted):
            direct = local.direct = self._new_direct_session()
        if direct is not None and not requests_patched():
            return direct
        session = getattr(local, "session", None)
        if session is None or type(session) is not requests.Session:
            # (a test may have replaced requests.Session since this thread made its session)
            session = local.session = self._new_session()
        return session

    def _settings(self) -> Tuple[Dict[str, str], Union[bool, str]]:
        """(proxies, verify) for the URL, from the options and the environment, once a thread.

        requests looks up proxy settings in the environment on every request (about 0.5 ms);
        resolving them once keeps what the environment said when the thread started sending.
        """
        settings = getattr(self._local, "settings", None)
        if settings is None:
            merged = requests.sessions.Session().merge_environment_settings(
                self.url, self._proxies or {}, None, None, None
            )
            settings = (merged.get("proxies") or {}, merged.get("verify", True))
            self._local.settings = settings
        return settings

    def _new_direct_session(self) -> Optional[KeepAliveSession]:
        """A keep-alive session, or None when the URL needs requests (a proxy, credentials in
        the URL, a scheme other than http and https)."""
        if origin_and_target(self.url) is None:
            return None
        proxies, verify = self._settings()
        if requests.utils.select_proxy(self.url, proxies):
            return None
        session = KeepAliveSession(self.url, verify)
        session.max_answer = self.max_answer
        with self._sessions_lock:
            self._sessions.add(session)
        return session

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
        descriptor leaves the parent's connection open. The OAuth token manager gets a fresh
        lock (a parent's thread may have held it at the fork) and a session of its own.
        """
        self._init_sessions()
        reset_token_provider = getattr(self._token_provider, "reset_after_fork", None)
        if reset_token_provider is not None:
            reset_token_provider()

    def close_session(self) -> None:
        """Close this thread's sessions (an uploader thread that ends frees its sockets)."""
        local = self._local
        direct = getattr(local, "direct", None)
        if direct is not None:
            direct.close()
        session = getattr(local, "session", None)
        if session is not None:
            session.close()
        local.__dict__.clear()

    def abort(self) -> None:
        """From another thread, at the end of a shutdown: cut retry waits short, end the
        requests in progress on keep-alive connections, and make their threads' next request
        open new ones. (A ``requests`` session's request in progress runs to its timeout.)"""
        self.stop_event.set()
        with self._sessions_lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.abort()

    def rearm(self) -> None:
        """A fresh stop flag for what is sent after a shutdown. Threads still inside ``send``
        keep the flag that was set, so they give up instead of retrying."""
        self.stop_event = threading.Event()

    def _headers(self) -> Dict[str, str]:
        if self._token_provider is not None:
            return {"Authorization": "Bearer " + self._token_provider.get_token()}
        return {"Authorization": self._basic}

    def _timeout_now(self) -> Any:
        """``timeout``, shortened to what is left before the deadline of this thread's send."""
        deadline = getattr(self._local, "deadline", None)
        if deadline is None or not isinstance(self.timeout, (int, float)):
            return self.timeout
        return max(0.05, min(self.timeout, deadline - time.monotonic()))

    def post_once(self, body: bytes) -> Any:
        """One POST of a batch body; no retries.

        Returns a ``requests.Response`` or a :class:`Response`; both have ``status_code``,
        ``reason``, ``headers``, ``text`` and ``json()``.
        """
        session = self._session()
        timeout = self._timeout_now()
        if isinstance(session, KeepAliveSession):
            return session.send(self._prepare(body), timeout=timeout)
        headers, data = self._headers_and_data(body)
        error: Optional[BaseException] = None
        try:
            post = poster() or session.post
            response = settled_answer(
                post(self.url, data=data, headers=headers, timeout=timeout, stream=True),
                self.max_answer,
            )
        except requests.RequestException as exc:
            error = scrubbed(exc, self._secrets + (headers.get("Authorization", ""),))
        if error is not None:
            raise error  # out of the except block, so the original is not its __context__
        return response

    def _headers_and_data(self, body: bytes) -> Tuple[Dict[str, str], bytes]:
        headers = self._headers()
        retry_count = getattr(self._local, "retry_count", 0)
        if retry_count:
            # Which try this is, as analytics-python tells the tracking API since 2.3.
            headers["X-Retry-Count"] = str(retry_count)
        if self.gzip:
            body = _gzip(body)
            headers["Content-Encoding"] = "gzip"
        return headers, body

    def _prepare(self, body: bytes) -> PreparedPost:
        load_http()
        headers, data = self._headers_and_data(body)
        return PreparedPost(self.url, dict(_DIRECT_HEADERS, **headers), data)

    def send(
        self,
        body: bytes,
        on_retry: Optional[Callable[[int, BaseException], None]] = None,
        deadline: Optional[float] = None,
    ) -> None:
        """Deliver ``body``, retrying network errors, 5xx and 429; raise the last error.

        ``deadline`` (a ``time.monotonic()`` value) bounds the whole attempt, as at shutdown:
        no wait goes past it, and each request's timeout is shortened to what is left.
        """
        local = self._local
        local.deadline = deadline
        try:
            self._retry(body, self._attempt(body), on_retry, deadline)
        finally:
            local.deadline = None
            local.retry_count = 0

    def _retry(
        self,
        body: bytes,
        first: Tuple[Optional[BaseException], Optional[float]],
        on_retry: Optional[Callable[[int, BaseException], None]],
        deadline: Optional[float],
    ) -> None:
        """Go on from the outcome of the first try: wait and try again while the policy allows,
        and raise the last error when it does not."""
        error, wait = first
        attempt = 0
        may_refresh = True
        stop = self.stop_event  # the one a shutdown sets, even if rearm() replaced it since
        first_failure = time.monotonic()
        rate_limited_since: Optional[float] = None
        while error is not None:
            if isinstance(error, APIError) and error.status in (401, 403):
                may_refresh = False  # one fresh token per batch; a second refusal is final
            attempt += 1
            if wait is None or attempt > self.retry.max_retries:
                raise error
            if wait < 0:
                wait = self.retry.delay(attempt)
            now = time.monotonic()
            if isinstance(error, APIError) and error.status == 429:
                rate_limited_since = now if rate_limited_since is None else rate_limited_since
            else:
                rate_limited_since = None
            if not self.retry.allows(now, wait, first_failure, rate_limited_since):
                raise error
            if deadline is not None and now + wait > deadline:
                raise error
            if on_retry is not None:
                on_retry(attempt, error)
            logger.debug("analytics: retry %d in %.2fs after %s", attempt, wait, error)
            if stop.wait(wait):  # a shutdown gave up on this batch: it is reported
                raise error
            self._local.retry_count = attempt
            error, wait = self._attempt(body, may_refresh)

    def _attempt(
        self, body: bytes, may_refresh: bool = True
    ) -> tuple[Optional[BaseException], Optional[float]]:
        """One try: (None, None) on success, else (error, seconds to wait, -1 or None = final)."""
        try:
            response = self.post_once(body)
        except (requests.RequestException, APIError) as exc:
            return self._judge_error(exc)
        return self._judge(response, may_refresh)

    @staticmethod
    def _judge_error(
        error: BaseException,
    ) -> tuple[Optional[BaseException], Optional[float]]:
        # A network error is retried with backoff; an APIError here means the OAuth token
        # could not be had, which the token manager already retried.
        return error, (None if isinstance(error, APIError) else -1.0)

    def _judge(
        self, response: Any, may_refresh: bool = True
    ) -> tuple[Optional[BaseException], Optional[float]]:
        status = response.status_code
        if 200 <= status < 300:
            return None, None
        error = _api_error(response, self._secrets)
        if status in (401, 403) and self._token_provider is not None and may_refresh:
            self._token_provider.invalidate()  # an expired or revoked token: fetch a new one
            return error, 0.0
        if not _is_retryable(status):
            return error, None
        advised = parse_retry_after(response.headers.get("Retry-After"))
        return error, (-1.0 if advised is None else advised)
