"""HTTP transport: POST one batch body to ``{host}/v1/batch``, with gzip, auth and retries.

The policy above it (batching, when to send) lives in :mod:`analytics_core.pipeline`; this module
only turns bytes into a delivered request or an exception.
"""

import base64
import datetime as _dt
import email.utils
import logging
import random
import threading
import time
import zlib
from typing import Any, Callable, Dict, Optional

import requests

from .errors import APIError
from .version import VERSION

logger = logging.getLogger("segment")

DEFAULT_HOST = "https://api.segment.io"
RETRY_AFTER_CAP = 300.0
"""A Retry-After beyond this many seconds is shortened: the queue cannot wait for hours."""


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


def _api_error(response: requests.Response) -> APIError:
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


class Transport:
    """Sends batch bodies to the tracking API over one keep-alive session."""

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
        self._local = (
            threading.local()
        )  # one session per uploader thread: Session is not thread-safe
        self.stop_event = threading.Event()
        """Set to cut retry waits short (shutdown); the batch is then reported, not dropped."""

    def __repr__(self) -> str:  # never show the auth header
        return f"Transport(url={self.url!r}, gzip={self.gzip})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._new_session()
            self._local.session = session
        return session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        # requests looks up proxy settings in the environment on every request (about 0.5 ms);
        # resolve them once here instead, keeping what the environment says.
        settings = session.merge_environment_settings(
            self.url, self._proxies or {}, None, None, None
        )
        session.trust_env = False
        session.proxies = settings.get("proxies") or {}
        session.verify = settings.get("verify", True)
        session.headers.update(
            {"Content-Type": "application/json", "User-Agent": f"analytics-core/{VERSION}"}
        )
        return session

    def reset(self) -> None:
        """Forget sessions and the stop flag (used in a forked child: sockets are the parent's)."""
        self._local = threading.local()
        self.stop_event = threading.Event()

    def _headers(self) -> Dict[str, str]:
        if self._token_provider is not None:
            return {"Authorization": "Bearer " + self._token_provider.get_token()}
        return {"Authorization": self._basic}

    def post_once(self, body: bytes) -> requests.Response:
        """One POST of a batch body; no retries."""
        headers = self._headers()
        if self.gzip:
            # Level 6 costs a fraction of level 9's CPU for nearly the same size on JSON.
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
            body = compressor.compress(body) + compressor.flush()
            headers["Content-Encoding"] = "gzip"
        return self._session().post(self.url, data=body, headers=headers, timeout=self.timeout)

    def send(
        self,
        body: bytes,
        on_retry: Optional[Callable[[int, BaseException], None]] = None,
        deadline: Optional[float] = None,
    ) -> None:
        """Deliver ``body``, retrying network errors, 5xx and 429; raise the last error.

        ``deadline`` (a ``time.monotonic()`` value) bounds the whole attempt, as at shutdown.
        """
        attempt = 0
        may_refresh = True
        while True:
            error, wait = self._attempt(body, may_refresh)
            if error is None:
                return
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

    def _attempt(
        self, body: bytes, may_refresh: bool = True
    ) -> "tuple[Optional[BaseException], Optional[float]]":
        """One try: (None, None) on success, else (error, seconds to wait, -1 or None = final)."""
        try:
            response = self.post_once(body)
        except requests.RequestException as exc:
            return exc, -1.0
        except APIError as exc:  # the OAuth token could not be had (already retried there)
            return exc, None
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
