"""analytics_flask's configuration: app.config keys, defaults, overrides, errors, logging."""

import inspect
import logging
import time

import pytest
from analytics_flask import CONFIG_DEFAULTS, Analytics, ConfigError
from analytics_flask.state import state_of
from flask import Flask

import analytics_core
from analytics_core import Client, ValidationError
from analytics_core.collector.access import write_key_fingerprint as fingerprint

from .flask_apps.factory import AppFactory, add_track_route, ajs_cookie, flush

ERRORS = []


def record_error(error, items):
    """An ``ANALYTICS_ON_ERROR`` given as a dotted path."""
    ERRORS.append((error, items))


NOT_CALLABLE = 42


@pytest.fixture
def make_app(collector):
    factory = AppFactory(collector.url)
    yield factory
    factory.close()


def client_of(app: Flask) -> Client:
    return state_of(app).client


# -- defaults and values ------------------------------------------------------------------------


def test_the_client_defaults_are_the_clients_own():
    parameters = inspect.signature(Client.__init__).parameters
    for key, value in CONFIG_DEFAULTS.items():
        name = key[len("ANALYTICS_") :].lower()
        if name in parameters:
            assert value == parameters[name].default, key
    assert CONFIG_DEFAULTS["ANALYTICS_TRUSTED_PROXIES"] == 0
    assert CONFIG_DEFAULTS["ANALYTICS_PAGEVIEWS"] is False
    assert CONFIG_DEFAULTS["ANALYTICS_IDENTIFY_ON_LOGIN"] is False
    # Every Client option can be set from app.config.
    options = {name for name in parameters if name != "self"}
    assert options <= {key[len("ANALYTICS_") :].lower() for key in CONFIG_DEFAULTS}


def test_config_keys_reach_the_client(make_app):
    handler = logging.NullHandler()
    app = make_app(
        ANALYTICS_GZIP=True,
        ANALYTICS_UPLOAD_SIZE=7,
        ANALYTICS_UPLOAD_INTERVAL=0.25,
        ANALYTICS_MAX_QUEUE_SIZE=9,
        ANALYTICS_THREAD=2,
        ANALYTICS_SHUTDOWN_TIMEOUT=3,
        ANALYTICS_TIMEOUT=4,
        ANALYTICS_LOG_HANDLER=handler,
        ANALYTICS_ON_FULL="block",
        ANALYTICS_ON_FULL_TIMEOUT=2.5,
    )
    client = client_of(app)
    assert (client.on_full, client.on_full_timeout) == ("block", 2.5)
    assert client.gzip is True
    assert client.pipeline.upload_size == 7
    assert client.pipeline.upload_interval == 0.25
    assert client.pipeline.max_queue_size == 9
    assert client.pipeline.thread_count == 2
    assert client.shutdown_timeout == 3
    assert client.transport.timeout == 4
    assert handler in logging.getLogger("segment").handlers
    assert state_of(app).trusted_proxies == 0


def test_events_are_sent_gzipped_with_the_configured_key_to_the_configured_host(
    make_app, collector
):
    app = add_track_route(make_app(ANALYTICS_WRITE_KEY="gzip-key", ANALYTICS_GZIP=True))
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/track")
    flush(app)
    (event,) = collector.events(limit=0)
    assert event["_write_key_fingerprint"] == fingerprint("gzip-key")


def test_constructor_overrides_win_over_app_config(make_app, collector):
    app = make_app(
        analytics=Analytics(write_key="override-key", trusted_proxies=1),
        ANALYTICS_WRITE_KEY="config-key",
        ANALYTICS_TRUSTED_PROXIES=0,
    )
    assert client_of(app).write_key == "override-key"
    assert state_of(app).trusted_proxies == 1


def test_sync_mode_delivers_during_the_call(make_app, collector):
    app = add_track_route(make_app(ANALYTICS_SYNC_MODE=True, ANALYTICS_UPLOAD_INTERVAL=60))
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/track")
    assert len(collector.events(limit=0)) == 1


def test_send_false_sends_nothing(make_app, collector):
    app = add_track_route(make_app(ANALYTICS_SEND=False))
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    assert client.get("/track").json["ok"] is True
    flush(app)
    assert collector.events(limit=0) == []


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ANALYTICS_UPLOAD_SIZE", "10"),
        ("ANALYTICS_UPLOAD_SIZE", 0),
        ("ANALYTICS_SEND", "yes"),
        ("ANALYTICS_DEBUG", 1),
        ("ANALYTICS_TIMEOUT", True),
        ("ANALYTICS_UPLOAD_INTERVAL", -1),
        ("ANALYTICS_MAX_RETRIES", 1.5),
        ("ANALYTICS_TRUSTED_PROXIES", -1),
        ("ANALYTICS_TRUSTED_PROXIES", "1"),
        ("ANALYTICS_PAGEVIEWS", "true"),
        ("ANALYTICS_IDENTIFY_ON_LOGIN", None),
        ("ANALYTICS_FLUSH_EACH_REQUEST", "auto"),
        ("ANALYTICS_PROXIES", ["http://proxy"]),
        ("ANALYTICS_HOST", 8086),
        ("ANALYTICS_ON_ERROR", 42),
        ("ANALYTICS_LOG_HANDLER", "stderr"),
        ("ANALYTICS_OAUTH_SCOPE", ""),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_key(key, value):
    app = Flask("bad")
    app.config.update({"ANALYTICS_WRITE_KEY": "k", key: value})
    with pytest.raises(ConfigError, match=key) as caught:
        Analytics(app)
    assert isinstance(caught.value, ValidationError)
    assert isinstance(caught.value, ValueError)
    assert "analytics" not in app.extensions


def test_an_unknown_key_is_a_warning_with_a_suggestion_and_the_app_starts(caplog):
    # A typo, or the app's own setting that happens to share the prefix: either way the app
    # must start; the warning names the key and the closest known one.
    app = add_track_route(Flask("typo"))
    app.config.update(
        ANALYTICS_WRITEKEY="typo-key",
        ANALYTICS_GOOGLE_ID="G-12345",
        ANALYTICS_SEND=False,
    )
    with caplog.at_level(logging.WARNING, logger="segment"):
        Analytics(app)
    warnings = {
        record.getMessage()
        for record in caplog.records
        if record.name == "segment" and record.levelno == logging.WARNING
    }
    (typo,) = [text for text in warnings if "'ANALYTICS_WRITEKEY'" in text]
    assert "did you mean 'ANALYTICS_WRITE_KEY'" in typo
    assert "ignored" in typo
    assert any("'ANALYTICS_GOOGLE_ID'" in text for text in warnings)
    assert "typo-key" not in " ".join(warnings)  # a value is never echoed: it may be a secret
    # Ignored: the misspelt key did not become the write key.
    assert client_of(app).write_key is None
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    assert client.get("/track").json["ok"] is True


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ANALYTICS_USER_ID", 42),
        ("ANALYTICS_USER_ID", ""),
        ("ANALYTICS_ANONYMOUS_ID_COOKIE", "yes"),
        ("ANALYTICS_ANONYMOUS_ID_COOKIE_DOMAIN", "example.com; Secure"),
        ("ANALYTICS_FORWARDED_HEADER", "X Forwarded For"),
        ("ANALYTICS_FORWARDED_HEADER", None),
        ("ANALYTICS_PAGEVIEWS_EXCLUDE", "/static/"),
        ("ANALYTICS_PAGEVIEWS_EXCLUDE", ["static/"]),
        ("ANALYTICS_PAGEVIEWS_EXCLUDE", [r"^/admin"]),
    ],
)
def test_a_wrong_value_for_a_new_key_is_still_an_error(key, value):
    app = Flask("bad-new-key")
    app.config.update({"ANALYTICS_WRITE_KEY": "k", key: value})
    with pytest.raises(ConfigError, match=key):
        Analytics(app)
    assert "analytics" not in app.extensions


@pytest.mark.parametrize(
    ("path", "problem"),
    [("tests.no_such_module.resolver", "cannot import"), (f"{__name__}.NOT_CALLABLE", "callable")],
)
def test_a_user_id_resolver_that_cannot_be_imported_is_an_error(path, problem):
    app = Flask("user-id")
    app.config.update(ANALYTICS_WRITE_KEY="k", ANALYTICS_USER_ID=path)
    with pytest.raises(ConfigError, match=f"ANALYTICS_USER_ID.*{problem}"):
        Analytics(app)


def test_an_unknown_constructor_option_is_an_error():
    with pytest.raises(ConfigError, match="'trusted_proxy'.*did you mean"):
        Analytics(trusted_proxy=1)
    with pytest.raises(ConfigError, match="'WRITE_KEY'"):
        Analytics(WRITE_KEY="k")


def test_secrets_are_not_repeated_in_errors():
    app = Flask("secret")
    app.config["ANALYTICS_WRITE_KEY"] = b"very-secret-key"
    with pytest.raises(ConfigError, match="ANALYTICS_WRITE_KEY") as caught:
        Analytics(app)
    assert "very-secret" not in str(caught.value)
    assert "bytes" in str(caught.value)


def test_partial_oauth_settings_name_the_missing_keys():
    app = Flask("oauth")
    app.config.update(ANALYTICS_WRITE_KEY="k", ANALYTICS_OAUTH_CLIENT_ID="client")
    with pytest.raises(ConfigError, match="ANALYTICS_OAUTH_CLIENT_KEY.*ANALYTICS_OAUTH_KEY_ID"):
        Analytics(app)


def test_oauth_settings_reach_the_client():
    app = Flask("oauth-full")
    app.config.update(
        ANALYTICS_WRITE_KEY="k",
        ANALYTICS_OAUTH_CLIENT_ID="client-1",
        ANALYTICS_OAUTH_CLIENT_KEY="-----BEGIN PRIVATE KEY-----...",
        ANALYTICS_OAUTH_KEY_ID="key-1",
        ANALYTICS_OAUTH_AUTH_SERVER="https://oauth2.eu1.segmentapis.com/",
        ANALYTICS_OAUTH_SCOPE="tracking_api:write",
    )
    Analytics(app)
    tokens = client_of(app).transport._token_provider
    assert tokens.client_id == "client-1"
    assert tokens.key_id == "key-1"
    assert tokens.auth_server == "https://oauth2.eu1.segmentapis.com"
    assert tokens.scope == "tracking_api:write"


def test_init_app_twice_on_one_app_is_an_error(make_app):
    app = make_app()
    with pytest.raises(RuntimeError, match="already has an Analytics extension"):
        Analytics(app)


def test_on_error_as_a_dotted_path_is_imported_and_called(make_app, collector):
    ERRORS.clear()
    app = add_track_route(make_app(ANALYTICS_ON_ERROR=f"{__name__}.record_error"))
    assert client_of(app).on_error is record_error
    collector.set_faults([{"status": 400, "times": 1}])  # a 4xx is not retried
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    client.get("/track")
    flush(app)
    ((error, items),) = ERRORS
    assert getattr(error, "status", None) == 400
    assert items[0]["event"] == "Test Event"


@pytest.mark.parametrize(
    ("path", "problem"),
    [("tests.no_such_module.handler", "cannot import"), (f"{__name__}.NOT_CALLABLE", "callable")],
)
def test_on_error_that_cannot_be_imported_is_an_error(path, problem):
    app = Flask("on-error")
    app.config.update(ANALYTICS_WRITE_KEY="k", ANALYTICS_ON_ERROR=path)
    with pytest.raises(ConfigError, match=f"ANALYTICS_ON_ERROR.*{problem}"):
        Analytics(app)


def test_a_missing_write_key_warns_and_sends_nothing(collector, caplog):
    app = add_track_route(Flask("no-key"))
    app.config["ANALYTICS_HOST"] = collector.url
    with caplog.at_level(logging.WARNING, logger="segment"):
        Analytics(app)
    (record,) = [r for r in caplog.records if "ANALYTICS_WRITE_KEY" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "'no-key'" in record.getMessage()
    assert client_of(app).send is False
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))
    assert client.get("/track").json["ok"] is True
    flush(app)
    assert collector.events(limit=0) == []


def test_no_warning_when_sending_is_off(caplog):
    app = Flask("off")
    app.config["ANALYTICS_SEND"] = False
    with caplog.at_level(logging.WARNING, logger="segment"):
        Analytics(app)
    assert not caplog.records


# -- the extension object -----------------------------------------------------------------------


def test_the_extension_outside_an_app_context(make_app):
    analytics = Analytics()
    with pytest.raises(RuntimeError, match="no application context"):
        analytics.track("u1", "Nowhere")
    app = make_app(analytics=analytics)
    with app.app_context():
        assert analytics.client is client_of(app)
    plain = Flask("plain")
    with plain.app_context(), pytest.raises(RuntimeError, match="init_app"):
        analytics.client  # noqa: B018 - the property is what is tested


def test_the_app_given_to_the_constructor_is_used_outside_a_context(collector):
    default = analytics_core.default_client
    app = Flask("direct")
    app.config.update(ANALYTICS_WRITE_KEY="direct-key", ANALYTICS_HOST=collector.url)
    analytics = Analytics(app)
    try:
        ok, message = analytics.track("u1", "Outside")
        assert ok and message["userId"] == "u1"
        assert analytics.identify("u1", {"plan": "pro"})[0]
        assert analytics.page("u1", "Docs", "Intro")[0]
        assert analytics.screen("u1", "App", "Home")[0]
        assert analytics.group("u1", "g1")[0]
        assert analytics.alias("old", "u1")[0]
        assert analytics.flush(timeout=5)
        events = collector.events(limit=0, order="asc")
        assert [event["type"] for event in events] == [
            "track",
            "identify",
            "page",
            "screen",
            "group",
            "alias",
        ]
        assert {event["_write_key_fingerprint"] for event in events} == {fingerprint("direct-key")}
    finally:
        assert analytics.shutdown(timeout=2)
    assert analytics_core.default_client is default


# -- logging ------------------------------------------------------------------------------------


def test_debug_turns_on_debug_logging_on_the_segment_logger(make_app, collector, caplog):
    app = add_track_route(make_app(ANALYTICS_DEBUG=True))
    logger = logging.getLogger("segment")
    assert logger.level == logging.DEBUG
    assert logger.handlers  # a handler was added, so the output is visible without set-up
    client = app.test_client()
    client.set_cookie("ajs_anonymous_id", ajs_cookie("a1"))

    def delivery_logged():
        return any(
            record.levelno == logging.DEBUG and "delivered a batch" in record.getMessage()
            for record in caplog.records
        )

    with caplog.at_level(logging.DEBUG, logger="segment"):
        client.get("/track")
        flush(app)
        # The uploader logs the delivery just after it reports it to flush(): wait for it.
        deadline = time.monotonic() + 5
        while not delivery_logged() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert delivery_logged()


def test_without_debug_the_segment_logger_is_left_alone(make_app):
    logger = logging.getLogger("segment")
    level = logger.level
    make_app()
    assert logger.level == level
