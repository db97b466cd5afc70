"""OAuth 2.0 client credentials for the tracking API, with a signed JWT client assertion.

Segment's OAuth server authenticates clients with ``private_key_jwt`` (RFC 7523): instead of a
shared secret we send a short-lived JWT signed with the client's RSA private key, and receive a
bearer token for the tracking API. :class:`OAuthTokenManager` caches that token and fetches a new
one shortly before it expires or when the tracking API rejects it.

The private key and the signed assertion are secrets: neither ever goes into a log record, an
exception message or a repr.
"""

import logging
import threading
import time
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

import requests

from .errors import OAuthError
from .transport import settled_answer

logger = logging.getLogger("segment")

DEFAULT_AUTH_SERVER = "https://oauth2.segment.io"
DEFAULT_SCOPE = "tracking_api:write"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60
"""Seconds a client assertion stays valid: it is used once, straight away."""
RETRY_AFTER_CAP = 60.0
"""A longer Retry-After is shortened: callers are waiting on the token synchronously."""
REFRESH_MARGIN_CAP = 30.0
"""Refresh this many seconds before expiry at most (see :meth:`OAuthTokenManager.get_token`)."""
DEFAULT_EXPIRES_IN = 300.0
"""Lifetime assumed when the server omits ``expires_in``; short, since a 401 also refreshes."""

_INSTALL_HINT = 'OAuth needs PyJWT and cryptography: pip install "analytics-core[oauth]"'


def _load_jwt() -> Any:
    # Imported lazily so that the base package works without the optional [oauth] extra.
    try:
        import jwt
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return jwt


class OAuthTokenManager:
    """Obtains and caches an access token for the tracking API (thread-safe).

    ``client_key`` is the PEM-encoded RSA private key registered with Segment under ``key_id``.
    Failed token requests (network errors, 5xx, 429) are retried up to ``max_retries`` times, so
    at most ``max_retries + 1`` requests are made per fetch; any other 4xx fails at once.
    ``clock`` (seconds, monotonic) and ``sleep`` are injectable so tests need not wait.
    """

    def __init__(
        self,
        client_id: str,
        client_key: str,
        key_id: str,
        auth_server: str = DEFAULT_AUTH_SERVER,
        scope: str = DEFAULT_SCOPE,
        timeout: float = 15,
        max_retries: int = 3,
        proxies: Optional[Dict[str, str]] = None,
        session: Optional[requests.Session] = None,
        *,
        backoff_base: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Fail at construction, not on the first upload, if the [oauth] extra is missing.
        self._jwt = _load_jwt()
        self.client_id = client_id
        self._client_key = client_key
        self.key_id = key_id
        self.auth_server = auth_server.rstrip("/")
        self.token_url = self.auth_server + "/token"
        self.scope = scope
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.proxies = proxies
        self.backoff_base = backoff_base
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._clock = clock
        self._sleep = sleep
        # (token, refresh_at) replaced as one tuple so that readers never see half an update and
        # the fast path of get_token needs no lock.
        self._cached: Optional[Tuple[str, float]] = None
        self._fetch_lock = threading.Lock()

    def __repr__(self) -> str:
        # Deliberately omits the key, key id and any token.
        return f"OAuthTokenManager(client_id={self.client_id!r}, auth_server={self.auth_server!r})"

    def get_token(self) -> str:
        """Return a valid access token, fetching one when none is cached or it is nearly expired.

        A token is refreshed once less than ``min(10% of its lifetime, 30 s)`` remains: 30 s
        before expiry for the usual one-hour token, proportionally earlier for short-lived ones,
        so a request started with it does not reach the tracking API already expired.
        Concurrent callers share a single fetch. Raises :class:`OAuthError` on failure.
        """
        cached = self._cached
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        with self._fetch_lock:
            # Another thread may have fetched while we waited for the lock.
            cached = self._cached
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            token, expires_in = self._fetch()
            margin = min(expires_in * 0.1, REFRESH_MARGIN_CAP)
            self._cached = (token, self._clock() + expires_in - margin)
            return token

    def reset_after_fork(self) -> None:
        """In a forked child: a new lock and a session of its own.

        A parent's thread may have held the lock at the fork (fetching a token): the child
        inherits it held, with no thread to release it, and every upload would wait for it
        forever. The parent's pooled connections must not carry the child's requests either:
        they are dropped (not closed, which would not end the parent's copies anyway). A
        session passed in by the caller is the caller's to replace. The cached token is valid
        in both processes.
        """
        self._fetch_lock = threading.Lock()
        if self._owns_session:
            self._session = requests.Session()

    def invalidate(self) -> None:
        """Drop the cached token so the next :meth:`get_token` fetches a new one.

        Called when the tracking API answers 401/403: the token was revoked or expired early.
        """
        self._cached = None

    def _assertion(self) -> str:
        now = int(time.time())  # wall clock: the server checks iat/exp against real time
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.auth_server,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,  # fresh each time so the server can reject replays
        }
        try:
            token = self._jwt.encode(
                claims, self._client_key, algorithm="RS256", headers={"kid": self.key_id}
            )
        except Exception as exc:
            # Name the failure only: library messages could quote the key material.
            raise OAuthError(
                None,
                "invalid-key",
                f"could not sign the client assertion with oauth_client_key "
                f"({type(exc).__name__}); expected a PEM RSA private key",
            ) from None
        return token.decode() if isinstance(token, bytes) else token

    def _fetch(self) -> Tuple[str, float]:
        attempts = self.max_retries + 1
        error: Optional[OAuthError] = None
        for attempt in range(1, attempts + 1):
            assertion = self._assertion()  # a new jti per request, so a retry is not a replay
            logger.debug(
                "oauth: requesting a token from %s (attempt %d of %d)",
                self.token_url,
                attempt,
                attempts,
            )
            retry_after: Optional[float] = None
            try:
                response = self._session.post(
                    self.token_url,
                    data={
                        "grant_type": "client_credentials",
                        "client_assertion_type": ASSERTION_TYPE,
                        "client_assertion": assertion,
                        "scope": self.scope,
                    },
                    timeout=self.timeout,
                    proxies=self.proxies,
                    stream=True,
                )
                # A token answer is small: a huge one fails the try. A test's double (a patched
                # requests, as Segment's tests use) is read as such.
                response = settled_answer(response)
            except requests.RequestException as exc:
                # The exception keeps the prepared request (and so the assertion) in .request:
                # copy only its text, and do not chain it onto the error we raise.
                error = OAuthError(
                    None, "network-error", _redact(f"{type(exc).__name__}: {exc}", assertion)
                )
            else:
                status = response.status_code
                if status == 200:
                    return self._parse_success(response)
                error = _response_error(response, assertion)
                if status != 429 and status < 500:
                    logger.warning("oauth: token request failed: %s", error)
                    raise error
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            if attempt == attempts:
                break
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            logger.warning("oauth: token request failed: %s; retrying in %.2fs", error, delay)
            self._sleep(delay)
        assert error is not None  # the loop ran at least once and did not return
        logger.warning("oauth: giving up on the token after %d attempts: %s", attempts, error)
        raise error

    def _backoff(self, attempt: int) -> float:
        # Short exponential backoff: the caller (an upload) is blocked meanwhile.
        return min(RETRY_AFTER_CAP, self.backoff_base * (2 ** (attempt - 1)))

    def _parse_success(self, response: requests.Response) -> Tuple[str, float]:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            error = OAuthError(200, "invalid-response", "the token response had no access_token")
            logger.warning("oauth: %s", error)
            raise error
        try:
            expires_in = float(payload.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        if not expires_in > 0:  # also rejects NaN
            expires_in = DEFAULT_EXPIRES_IN
        logger.debug("oauth: obtained a token valid for %.0fs", expires_in)
        return token, expires_in


def _response_error(response: requests.Response, assertion: str) -> OAuthError:
    # OAuth errors are {"error": "invalid_client", "error_description": "..."} (RFC 6749 5.2).
    code, message = "oauth-failed", response.reason or ""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        code = str(payload.get("error") or code)
        message = str(payload.get("error_description") or payload.get("message") or message)
    elif response.text:
        message = response.text[:200]
    # A server echoing our request back must not leak the assertion through the error.
    return OAuthError(response.status_code, _redact(code, assertion), _redact(message, assertion))


def _redact(text: str, assertion: str) -> str:
    return text.replace(assertion, "[redacted]") if assertion else text


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
    # Only delta-seconds: that is what the token endpoint sends; anything else means backoff.
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, RETRY_AFTER_CAP))
