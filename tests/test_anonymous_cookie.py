"""The ajs_anonymous_id cookie as the integrations write it, read back as browsers and
analytics.js would."""

import email.utils
import json
import time
import uuid
from http.cookies import SimpleCookie
from urllib.parse import unquote

import pytest

from analytics_core.web import anonymous_id_from_cookie
from analytics_core.web.anonymous_cookie import (
    COOKIE_MAX_AGE,
    check_cookie_domain,
    cookie_header,
    cookie_value,
    sets_anonymous_id_cookie,
)


def parsed(header: str):
    jar = SimpleCookie()
    jar.load(header)
    return jar["ajs_anonymous_id"]


def test_the_cookie_is_what_analytics_js_writes():
    anonymous_id = str(uuid.uuid4())
    header = cookie_header(anonymous_id, secure=False)
    morsel = parsed(header)
    # analytics.js keeps the id JSON-encoded, URL-encoded by its cookie library.
    assert morsel.value == f"%22{anonymous_id}%22"
    assert json.loads(unquote(morsel.value)) == anonymous_id
    assert morsel["path"] == "/"
    assert morsel["max-age"] == str(COOKIE_MAX_AGE) == "31536000"
    assert morsel["samesite"] == "Lax"
    assert not morsel["httponly"]  # analytics.js in the page must read it
    assert not morsel["secure"]
    assert not morsel["domain"]
    expires = email.utils.parsedate_to_datetime(morsel["expires"]).timestamp()
    assert abs(expires - (time.time() + COOKIE_MAX_AGE)) < 60


def test_the_expiry_date_follows_the_clock_to_the_second(monkeypatch):
    # The date is written once a second and reused within it; a cookie minted in the next
    # second, or after a long quiet spell, expires a year after its own minting.
    def expires_at(now):
        monkeypatch.setattr(time, "time", lambda: now)
        return email.utils.parsedate_to_datetime(
            parsed(cookie_header("id", secure=False))["expires"]
        )

    start = 1_800_000_000.25
    first = expires_at(start).timestamp()
    assert first == int(start) + COOKIE_MAX_AGE
    assert expires_at(start + 0.5).timestamp() == first
    assert expires_at(start + 1).timestamp() == first + 1
    assert expires_at(start + 86_400).timestamp() == first + 86_400


def test_secure_on_https_and_a_domain_when_configured():
    morsel = parsed(cookie_header("id-1", secure=True, domain=".example.com"))
    assert morsel["secure"]
    assert morsel["domain"] == ".example.com"


def test_what_is_written_is_read_back_as_the_same_id():
    anonymous_id = str(uuid.uuid4())
    assert anonymous_id_from_cookie(cookie_value(anonymous_id)) == anonymous_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("%22abc-123%22", "abc-123"),  # analytics.js
        ('"abc-123"', "abc-123"),
        ("abc-123", "abc-123"),  # a plain value, as some versions and other tools write it
        ("%7B%22a%22%3A1%7D", None),  # a JSON object
        ("%5B1%5D", None),
        ('"\\"abc\\""', None),  # doubly encoded
        ('"', None),
        ("%22%22", None),
        ("%E0%A4%A", None),
        ("%22\\u0000%22", None),
        ("x" * 1000, None),
        # What scripts write for "no id": one shared id for every such visitor otherwise.
        ("null", None),
        ("%22null%22", None),
        ("undefined", None),
        ("Undefined", None),
        ("None", None),
        ("NaN", None),
        ("nullable-id", "nullable-id"),
    ],
)
def test_reading_the_cookie(raw, expected):
    assert anonymous_id_from_cookie(raw) == expected


@pytest.mark.parametrize("domain", [".example.com", "example.com", "shop.example.co.uk", None])
def test_cookie_domains_accepted(domain):
    assert check_cookie_domain(domain, "X") == domain


@pytest.mark.parametrize("domain", ["", "a b", "example.com; Secure", "http://x", 7, "."])
def test_cookie_domains_refused_by_name(domain):
    with pytest.raises(ValueError, match="ANONYMOUS_ID_COOKIE_DOMAIN"):
        check_cookie_domain(domain, "ANONYMOUS_ID_COOKIE_DOMAIN")


def test_an_apps_own_cookie_is_recognised():
    assert sets_anonymous_id_cookie("ajs_anonymous_id=%22x%22; Path=/")
    assert sets_anonymous_id_cookie(" ajs_anonymous_id=x")
    assert not sets_anonymous_id_cookie("ajs_user_id=%22x%22; Path=/")
    assert not sets_anonymous_id_cookie("session=ajs_anonymous_id")
