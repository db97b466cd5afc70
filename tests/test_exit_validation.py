"""Non-finite numbers of seconds are refused, with a ValidationError naming the option.

Before, ``timeout=float("inf")`` or NaN and ``shutdown_timeout=nan`` (and ``on_full_timeout``,
``upload_interval``) were accepted: NaN passes every ``value < 0`` check. With an infinite or
NaN ``timeout`` every batch failed (a socket refuses it); with a NaN ``shutdown_timeout`` the
exit never finished. The Django, Flask and ASGI settings checks use the client's own check.
"""

import math

import pytest
from analytics_asgi import SegmentMiddleware
from analytics_django.settings import config_errors
from analytics_flask import Analytics, ConfigError
from django.core.checks import run_checks
from django.test import override_settings
from flask import Flask

import analytics_core
from analytics_core import Client, ValidationError
from analytics_core.client import MAX_SECONDS, is_seconds

SECONDS_OPTIONS = ["timeout", "shutdown_timeout", "on_full_timeout", "upload_interval"]
NON_FINITE = [math.inf, -math.inf, math.nan]
TOO_LONG = [MAX_SECONDS * 2, 1e30, 10**30]


@pytest.mark.parametrize("option", SECONDS_OPTIONS)
@pytest.mark.parametrize("value", NON_FINITE + TOO_LONG, ids=repr)
def test_client_refuses_it_naming_the_option(option, value):
    with pytest.raises(ValidationError, match=f"^{option} must be a number >= 0 \\(finite"):
        Client("key", **{option: value})


@pytest.mark.parametrize("option", SECONDS_OPTIONS)
@pytest.mark.parametrize("value", [0, 0.5, 3, 86400.0, MAX_SECONDS])
def test_finite_seconds_are_still_taken(option, value):
    client = Client("key", send=False, **{option: value})
    taken = {
        "timeout": client.transport.timeout,
        "shutdown_timeout": client.shutdown_timeout,
        "on_full_timeout": client.on_full_timeout,
        "upload_interval": client.pipeline.upload_interval,
    }
    assert taken[option] == value


def test_the_module_level_settings_are_checked_too():
    analytics_core.write_key = "key"
    analytics_core.timeout = math.inf
    with pytest.raises(ValidationError, match="^timeout must be"):
        analytics_core.track("u", "E")


@pytest.mark.parametrize("method", ["flush", "join", "shutdown"])
def test_a_nan_timeout_for_a_wait_is_refused(method):
    client = Client("key", send=False)
    with pytest.raises(ValidationError, match="timeout must be a number of seconds or None"):
        getattr(client, method)(math.nan)
    assert getattr(client, method)(0.1) is True


def test_is_seconds():
    assert is_seconds(0) and is_seconds(2.5) and is_seconds(MAX_SECONDS)
    for value in [*NON_FINITE, *TOO_LONG, -1, True, "1", None]:
        assert not is_seconds(value), value


# -- the integrations' settings ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["TIMEOUT", "SHUTDOWN_TIMEOUT", "ON_FULL_TIMEOUT", "UPLOAD_INTERVAL"]
)
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_django_settings_schema(key, value):
    ((name, expected, got),) = config_errors({key: value})
    assert name == key
    assert expected == "a finite number of seconds >= 0"
    assert got is value


@override_settings(ANALYTICS={"SEND": False, "SHUTDOWN_TIMEOUT": math.nan, "TIMEOUT": math.inf})
def test_django_system_check_names_them():
    messages = [message.msg for message in run_checks() if message.id == "analytics_django.E003"]
    assert len(messages) == 2, messages
    assert any("ANALYTICS['SHUTDOWN_TIMEOUT'] must be a finite number" in msg for msg in messages)
    assert any("ANALYTICS['TIMEOUT'] must be a finite number" in msg for msg in messages)


@pytest.mark.parametrize(
    "key",
    [
        "ANALYTICS_TIMEOUT",
        "ANALYTICS_SHUTDOWN_TIMEOUT",
        "ANALYTICS_ON_FULL_TIMEOUT",
        "ANALYTICS_UPLOAD_INTERVAL",
    ],
)
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_flask_config(key, value):
    app = Flask("non_finite")
    app.config.update({"ANALYTICS_WRITE_KEY": "k", key: value})
    with pytest.raises(ConfigError, match=f"{key}.*finite number of seconds"):
        Analytics(app)


@pytest.mark.parametrize("option", SECONDS_OPTIONS)
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_asgi_middleware_options(option, value):
    async def app(scope, receive, send):  # pragma: no cover - never called
        pass

    # Not raised when Starlette builds the middleware (inside the server's first call), but
    # kept for the lifespan's startup, which fails with it: see test_asgi_options.py.
    error = SegmentMiddleware(app, write_key="k", **{option: value}).setup_error
    assert isinstance(error, ValidationError)
    assert str(error).startswith(f"SegmentMiddleware: {option} must be a number")
