"""OAuthTokenManager against a mocked token endpoint, with real RSA keys and real JWT checks."""

import builtins
import logging
import threading
import time
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses

from analytics_core.errors import OAuthError
from analytics_core.oauth import ASSERTION_TYPE, OAuthTokenManager
from tests.support.keys import rsa_key_pair

AUTH_SERVER = "https://oauth.test"
TOKEN_URL = AUTH_SERVER + "/token"


@pytest.fixture(scope="module")
def rsa_keys():
    """A real 2048-bit key pair: (private PEM text, public key object)."""
    return rsa_key_pair()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_manager(rsa_keys, clock, sleeps):
    def make(**overrides):
        options = dict(
            auth_server=AUTH_SERVER + "/",  # the trailing slash must not reach aud or the URL
            backoff_base=0,
            clock=clock,
            sleep=sleeps.append,
        )
        options.update(overrides)
        return OAuthTokenManager("client-123", rsa_keys[0], "key-abc", **options)

    return make


def token_reply(token="tok-1", expires_in=3600):
    return responses.Response(
        responses.POST, TOKEN_URL, json={"access_token": token, "expires_in": expires_in}
    )


def sent_form(call):
    return {name: values[0] for name, values in parse_qs(call.request.body).items()}


def decode_assertion(call, public_key):
    form = sent_form(call)
    claims = jwt.decode(
        form["client_assertion"], public_key, algorithms=["RS256"], audience=AUTH_SERVER
    )
    header = jwt.get_unverified_header(form["client_assertion"])
    return form, claims, header


@responses.activate
def test_token_is_fetched_with_a_valid_assertion_and_cached(make_manager, rsa_keys):
    responses.add(token_reply("tok-1"))
    manager = make_manager(scope="tracking_api:write")

    assert manager.get_token() == "tok-1"
    assert manager.get_token() == "tok-1"

    assert len(responses.calls) == 1
    call = responses.calls[0]
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form, claims, header = decode_assertion(call, rsa_keys[1])
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert form["scope"] == "tracking_api:write"
    assert header["kid"] == "key-abc"
    assert header["alg"] == "RS256"
    assert claims["iss"] == claims["sub"] == "client-123"
    assert claims["aud"] == AUTH_SERVER
    assert claims["exp"] == claims["iat"] + 60
    assert abs(claims["iat"] - time.time()) < 10
    assert len(claims["jti"]) == 32


@responses.activate
def test_token_is_refreshed_near_expiry_with_a_new_jti(make_manager, clock, rsa_keys):
    responses.add(token_reply("tok-1", expires_in=3600))
    responses.add(token_reply("tok-2", expires_in=3600))
    manager = make_manager()

    assert manager.get_token() == "tok-1"
    clock.now += 3600 - 31  # still outside the 30 s refresh margin
    assert manager.get_token() == "tok-1"
    clock.now += 2  # now inside it
    assert manager.get_token() == "tok-2"

    assert len(responses.calls) == 2
    jtis = {decode_assertion(call, rsa_keys[1])[1]["jti"] for call in responses.calls}
    assert len(jtis) == 2


@responses.activate
def test_short_lived_token_refreshes_at_ten_percent(make_manager, clock):
    responses.add(token_reply("tok-1", expires_in=100))
    responses.add(token_reply("tok-2", expires_in=100))
    manager = make_manager()

    assert manager.get_token() == "tok-1"
    clock.now += 89
    assert manager.get_token() == "tok-1"
    clock.now += 2
    assert manager.get_token() == "tok-2"


@responses.activate
def test_invalidate_forces_a_refetch(make_manager):
    responses.add(token_reply("tok-1"))
    responses.add(token_reply("tok-2"))
    manager = make_manager()

    assert manager.get_token() == "tok-1"
    manager.invalidate()
    assert manager.get_token() == "tok-2"
    assert len(responses.calls) == 2


@responses.activate
def test_server_error_is_retried(make_manager, sleeps):
    responses.add(responses.POST, TOKEN_URL, status=500, json={"error": "server_error"})
    responses.add(token_reply("tok-1"))
    manager = make_manager()

    assert manager.get_token() == "tok-1"
    assert len(responses.calls) == 2
    assert sleeps == [0]


@responses.activate
def test_backoff_grows_exponentially(make_manager, sleeps):
    for _ in range(3):
        responses.add(responses.POST, TOKEN_URL, status=503)
    responses.add(token_reply("tok-1"))
    manager = make_manager(backoff_base=0.5)

    assert manager.get_token() == "tok-1"
    assert sleeps == [0.5, 1.0, 2.0]


@responses.activate
def test_rate_limit_honours_retry_after(make_manager, sleeps):
    responses.add(responses.POST, TOKEN_URL, status=429, headers={"Retry-After": "7"})
    responses.add(responses.POST, TOKEN_URL, status=429, headers={"Retry-After": "3600"})
    responses.add(token_reply("tok-1"))
    manager = make_manager()

    assert manager.get_token() == "tok-1"
    assert sleeps == [7.0, 60.0]  # the second one capped


@responses.activate
def test_client_error_raises_without_retry(make_manager, sleeps):
    responses.add(
        responses.POST,
        TOKEN_URL,
        status=400,
        json={"error": "invalid_client", "error_description": "unknown key id"},
    )
    manager = make_manager()

    with pytest.raises(OAuthError) as info:
        manager.get_token()
    assert info.value.status == 400
    assert info.value.code == "invalid_client"
    assert info.value.message == "unknown key id"
    assert len(responses.calls) == 1
    assert sleeps == []


@responses.activate
def test_network_error_is_retried_then_raises(make_manager, sleeps):
    responses.add(responses.POST, TOKEN_URL, body=requests.ConnectionError("connection refused"))
    manager = make_manager(max_retries=2)

    with pytest.raises(OAuthError) as info:
        manager.get_token()
    assert info.value.status is None
    assert info.value.code == "network-error"
    assert "connection refused" in info.value.message
    assert info.value.__cause__ is None  # the requests error holds the assertion in .request
    assert len(responses.calls) == 3
    assert len(sleeps) == 2


@responses.activate
def test_exhausted_server_errors_raise_the_last_error(make_manager):
    responses.add(responses.POST, TOKEN_URL, status=502, body="bad gateway")
    manager = make_manager(max_retries=1)

    with pytest.raises(OAuthError) as info:
        manager.get_token()
    assert (info.value.status, info.value.code) == (502, "oauth-failed")
    assert len(responses.calls) == 2


@responses.activate
def test_response_without_token_raises(make_manager):
    responses.add(responses.POST, TOKEN_URL, json={"token_type": "bearer"})
    manager = make_manager()

    with pytest.raises(OAuthError) as info:
        manager.get_token()
    assert info.value.code == "invalid-response"


@responses.activate
def test_concurrent_callers_share_one_fetch(make_manager):
    entered = threading.Event()

    def slow_reply(request):
        entered.set()
        time.sleep(0.2)  # keep the fetch in flight while the other threads arrive
        return 200, {}, '{"access_token": "tok-1", "expires_in": 3600}'

    responses.add_callback(responses.POST, TOKEN_URL, callback=slow_reply)
    manager = make_manager()
    barrier = threading.Barrier(8)
    results = []

    def worker():
        barrier.wait()
        results.append(manager.get_token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert entered.is_set()
    assert results == ["tok-1"] * 8
    assert len(responses.calls) == 1


@responses.activate
def test_secrets_never_logged_or_shown(make_manager, rsa_keys, caplog):
    pem = rsa_keys[0]
    key_body = "".join(line for line in pem.splitlines() if "-----" not in line)
    responses.add(responses.POST, TOKEN_URL, status=500)
    responses.add(responses.POST, TOKEN_URL, body=requests.ConnectionError("reset"))
    responses.add(responses.POST, TOKEN_URL, status=401, json={"error": "invalid_client"})
    manager = make_manager()

    with caplog.at_level(logging.DEBUG, logger="segment"), pytest.raises(OAuthError) as info:
        manager.get_token()

    assertions = [sent_form(call)["client_assertion"] for call in responses.calls]
    assert len(assertions) == 3
    visible = [caplog.text, str(info.value), repr(info.value), repr(manager), str(manager)]
    assert caplog.records  # something was logged at all, so the check below means something
    for text in visible:
        assert key_body[:64] not in text
        assert "PRIVATE KEY" not in text
        for assertion in assertions:
            assert assertion not in text
    assert repr(manager) == (
        f"OAuthTokenManager(client_id='client-123', auth_server='{AUTH_SERVER}')"
    )


@responses.activate
def test_assertion_echoed_by_server_is_redacted(make_manager):
    def echo(request):
        assertion = parse_qs(request.body)["client_assertion"][0]
        return 400, {}, '{"error": "invalid_grant", "error_description": "bad ' + assertion + '"}'

    responses.add_callback(responses.POST, TOKEN_URL, callback=echo)
    manager = make_manager()

    with pytest.raises(OAuthError) as info:
        manager.get_token()
    assert info.value.message == "bad [redacted]"


def test_bad_key_error_does_not_quote_the_key():
    not_a_key = (
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----"
    )
    manager = OAuthTokenManager("client-123", not_a_key, "key-abc", auth_server=AUTH_SERVER)

    with pytest.raises(OAuthError) as info:
        manager.get_token()
    assert info.value.code == "invalid-key"
    assert "c2VjcmV0" not in str(info.value)
    assert info.value.__cause__ is None


def test_missing_pyjwt_gives_an_install_hint(monkeypatch, rsa_keys):
    real_import = builtins.__import__

    def no_jwt(name, *args, **kwargs):
        if name == "jwt" or name.startswith("jwt."):
            raise ImportError("No module named 'jwt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jwt)
    with pytest.raises(ImportError, match=r'pip install "analytics-core\[oauth\]"'):
        OAuthTokenManager("client-123", rsa_keys[0], "key-abc")
