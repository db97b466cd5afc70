"""settings.ANALYTICS: defaults, override_settings, misconfiguration, middleware installation,
system checks and logging."""

import inspect
import json
import logging
import logging.config
import subprocess
import sys

import pytest
from analytics_django import configure as configure_module
from analytics_django.configure import MIDDLEWARE_PATH, configure, install_middleware, last_error
from analytics_django.settings import CLIENT_OPTIONS, CONFIG_DEFAULTS, get_config
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

import analytics_core
from analytics_core import Client
from analytics_core.collector.access import write_key_fingerprint as fingerprint
from tests.django_project.testing import WRITE_KEY, collector_settings, delivered
from tests.support.servers import ROOT, python_env

ERRORS = []


def record_error(error, items):
    """An ON_ERROR handler named by its dotted path in a test below."""
    ERRORS.append((error, items))


@pytest.fixture(autouse=True)
def _installed_client():
    configure()  # the shared conftest resets analytics_core.default_client after every test


def analytics_check_ids():
    return sorted(
        message.id for message in run_checks() if message.id.startswith("analytics_django.")
    )


def only_check(check_id):
    messages = [message for message in run_checks() if message.id == check_id]
    assert len(messages) == 1, [str(message) for message in run_checks()]
    return messages[0]


# -- the merged config -------------------------------------------------------------------------


def test_client_defaults_come_from_the_client_itself():
    parameters = inspect.signature(Client.__init__).parameters
    assert CONFIG_DEFAULTS["UPLOAD_SIZE"] == parameters["upload_size"].default
    assert CONFIG_DEFAULTS["SHUTDOWN_TIMEOUT"] == parameters["shutdown_timeout"].default
    assert CONFIG_DEFAULTS["SEND"] is True
    assert CONFIG_DEFAULTS["TRUSTED_PROXIES"] == 0
    assert CONFIG_DEFAULTS["PAGEVIEWS"] is False
    assert CONFIG_DEFAULTS["IDENTIFY_ON_LOGIN"] is False
    assert CONFIG_DEFAULTS["AUTO_MIDDLEWARE"] is True
    # Every Client option can be set from settings.ANALYTICS (logging goes through LOGGING).
    assert set(parameters) - {"self", "log_handler"} <= set(CLIENT_OPTIONS.values())


def test_the_project_dict_is_merged_over_the_defaults():
    with override_settings(ANALYTICS={"SEND": False, "UPLOAD_SIZE": 7}):
        config = get_config()
        assert config["UPLOAD_SIZE"] == 7
        assert config["SEND"] is False
        assert config["MAX_QUEUE_SIZE"] == CONFIG_DEFAULTS["MAX_QUEUE_SIZE"]
        with pytest.raises(TypeError):
            config["SEND"] = True  # read-only: the cached dict is shared


def test_ready_installed_the_apps_client_as_the_default_client():
    client = analytics_core.default_client
    assert isinstance(client, Client)
    assert client.send is False  # the test project's ANALYTICS = {"SEND": False}


def test_override_settings_rebuilds_the_client(collector):
    before = analytics_core.default_client
    with override_settings(ANALYTICS=collector_settings(collector, GZIP=True)):
        client = analytics_core.default_client
        assert client is not before
        assert client.send is True and client.gzip is True
        analytics_core.track("u-override", "Overridden")
        [event] = delivered(collector)
        assert event["_write_key_fingerprint"] == fingerprint(WRITE_KEY)
    after = analytics_core.default_client
    assert after is not client and after.send is False
    # The replaced client was shut down: its uploader is stopped, nothing is left queued.
    assert client.stats()["queued"] == 0


def test_a_client_the_project_installed_itself_is_kept(collector):
    own = Client(send=False)
    analytics_core.default_client = own
    with override_settings(ANALYTICS=collector_settings(collector)):
        assert analytics_core.default_client is own


def test_on_error_may_be_a_dotted_path(collector):
    ERRORS.clear()
    collector.set_faults([{"status": 400, "times": 1}])
    settings = collector_settings(collector, ON_ERROR="tests.test_django_settings.record_error")
    with override_settings(ANALYTICS=settings):
        analytics_core.track("u-error", "Rejected")
        analytics_core.flush(timeout=10)
    assert len(ERRORS) == 1
    error, items = ERRORS[0]
    assert [item["event"] for item in items] == ["Rejected"]


@pytest.mark.parametrize(
    "analytics",
    [
        {"SEND": True},  # no write key
        {"WRITE_KEY": "k", "UPLOAD_SIZE": "100"},
        {"WRITE_KEY": "k", "ON_ERROR": "no.such.module.handler"},
        {"WRITE_KEY": "k", "OAUTH_CLIENT_ID": "only-one-of-three"},
        "not a dict",
    ],
)
def test_misconfiguration_never_raises_and_sends_nothing(analytics, caplog):
    with caplog.at_level(logging.ERROR, logger="segment"), override_settings(ANALYTICS=analytics):
        client = analytics_core.default_client
        assert client.send is False
        assert last_error()
        ok, _ = analytics_core.track("u", "Still Works")
        assert ok
    assert "misconfigured" in caplog.text
    assert last_error() is None  # the test project's own settings build fine again


# -- the middleware ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [list, tuple])
def test_install_middleware_puts_it_first(kind):
    with override_settings(MIDDLEWARE=kind(["a.Middleware", "b.Middleware"])):
        from django.conf import settings

        assert install_middleware() is True
        assert kind([MIDDLEWARE_PATH, "a.Middleware", "b.Middleware"]) == settings.MIDDLEWARE


def test_install_middleware_keeps_an_explicit_position():
    listed = ["a.Middleware", MIDDLEWARE_PATH, "b.Middleware"]
    with override_settings(MIDDLEWARE=listed):
        from django.conf import settings

        assert install_middleware() is False
        assert listed == settings.MIDDLEWARE


def test_install_middleware_respects_auto_middleware_off():
    with override_settings(MIDDLEWARE=["a.Middleware"], ANALYTICS={"AUTO_MIDDLEWARE": False}):
        from django.conf import settings

        assert install_middleware() is False
        assert settings.MIDDLEWARE == ["a.Middleware"]


SETUP_SCRIPT = """
import json, sys
import django
from django.conf import settings
from django.test import Client

variant = sys.argv[1]
middleware = ["django.contrib.sessions.middleware.SessionMiddleware"]
analytics = {"SEND": False}
if variant == "listed":
    middleware.append("analytics_django.middleware.AnalyticsMiddleware")
if variant == "off":
    analytics["AUTO_MIDDLEWARE"] = False
if variant == "misconfigured":
    analytics = {"SEND": True, "UPLOAD_SIZE": "many", "TYPO": 1}
settings.configure(
    INSTALLED_APPS=["django.contrib.sessions", "analytics_django"],
    MIDDLEWARE=middleware,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["testserver"],
    ANALYTICS=analytics,
)
django.setup()

from django.http import JsonResponse
from django.urls import path
from analytics_core.context import current_request_context

def view(request):
    context = current_request_context()
    return JsonResponse({"path": context.context["page"]["path"] if context else None})

urlpatterns = [path("here/", view)]
import analytics_core
from django.core.checks import run_checks

print(json.dumps({"middleware": list(settings.MIDDLEWARE),
                  "seen": Client().get("/here/").json()["path"],
                  "sends": analytics_core.default_client.send,
                  "checks": sorted(message.id for message in run_checks())}))
"""


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            "auto",
            [MIDDLEWARE_PATH, "django.contrib.sessions.middleware.SessionMiddleware"],
        ),
        (
            "listed",
            ["django.contrib.sessions.middleware.SessionMiddleware", MIDDLEWARE_PATH],
        ),
        ("off", ["django.contrib.sessions.middleware.SessionMiddleware"]),
        (
            "misconfigured",
            [MIDDLEWARE_PATH, "django.contrib.sessions.middleware.SessionMiddleware"],
        ),
    ],
)
def test_app_ready_in_a_fresh_process(variant, expected):
    # ready() runs once per process, so each variant starts Django from scratch.
    result = subprocess.run(
        [sys.executable, "-c", SETUP_SCRIPT, variant],
        capture_output=True,
        text=True,
        timeout=60,
        env=python_env(),
        cwd=str(ROOT),
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["middleware"] == expected
    assert outcome["seen"] == (None if variant == "off" else "/here/")
    if variant == "misconfigured":
        # Django started and serves; nothing is sent; manage.py check says why.
        assert outcome["sends"] is False
        assert outcome["checks"] == [
            "analytics_django.E001",
            "analytics_django.E002",
            "analytics_django.E003",
        ]
        assert "misconfigured" in result.stderr
    else:
        assert outcome["checks"] == []


# -- system checks -----------------------------------------------------------------------------


def test_the_test_project_passes_the_checks():
    assert analytics_check_ids() == []


@override_settings(ANALYTICS={"SEND": True})
def test_e001_send_without_a_write_key():
    message = only_check("analytics_django.E001")
    assert "WRITE_KEY" in message.msg
    assert "SEND" in message.hint


@override_settings(ANALYTICS={"SEND": False, "WRITEKEY": "k", "PAGEVIEW": True, "ZZZ": 1})
def test_e002_unknown_keys_with_the_closest_name():
    messages = {
        message.msg: message.hint
        for message in run_checks()
        if message.id == "analytics_django.E002"
    }
    assert len(messages) == 3
    assert "Did you mean 'WRITE_KEY'?" in messages["Unknown key 'WRITEKEY' in settings.ANALYTICS."]
    assert "Did you mean 'PAGEVIEWS'?" in messages["Unknown key 'PAGEVIEW' in settings.ANALYTICS."]
    assert "Did you mean" not in messages["Unknown key 'ZZZ' in settings.ANALYTICS."]


@override_settings(ANALYTICS={"SEND": "yes", "UPLOAD_SIZE": 0, "TRUSTED_PROXIES": True})
def test_e003_wrong_types_name_the_key_and_the_expected_type():
    messages = [message.msg for message in run_checks() if message.id == "analytics_django.E003"]
    assert len(messages) == 3
    assert any("ANALYTICS['SEND'] must be a bool" in msg for msg in messages)
    assert any("ANALYTICS['UPLOAD_SIZE'] must be an integer >= 1" in msg for msg in messages)
    assert any("ANALYTICS['TRUSTED_PROXIES'] must be an integer >= 0" in msg for msg in messages)


@override_settings(ANALYTICS=["WRITE_KEY", "k"])
def test_e003_analytics_must_be_a_dict():
    assert "settings.ANALYTICS must be a dict" in only_check("analytics_django.E003").msg


@override_settings(ANALYTICS={"SEND": False, "ON_ERROR": "tests.no_such_module.handler"})
def test_e004_on_error_path_that_does_not_import():
    message = only_check("analytics_django.E004")
    assert "tests.no_such_module.handler" in message.msg
    assert "dotted path" in message.hint


@override_settings(ANALYTICS={"WRITE_KEY": "k", "OAUTH_CLIENT_ID": "id-without-key"})
def test_e005_a_client_that_cannot_be_built():
    message = only_check("analytics_django.E005")
    assert "oauth_client_key" in message.msg


@override_settings(ANALYTICS={"SEND": True})
def test_manage_py_check_fails_with_the_check_id():
    with pytest.raises(SystemCheckError, match=r"analytics_django\.E001"):
        call_command("check")


# -- logging -----------------------------------------------------------------------------------


def test_debug_true_turns_on_debug_logging_on_the_segment_logger(collector, caplog):
    logging.getLogger("segment").setLevel(logging.WARNING)
    with override_settings(ANALYTICS=collector_settings(collector, DEBUG=True)):
        assert logging.getLogger("segment").level == logging.DEBUG
        with caplog.at_level(logging.DEBUG, logger="segment"):
            analytics_core.track("u-debug", "Debugged")
            delivered(collector)
    assert any("delivered a batch" in record.getMessage() for record in caplog.records)


DOCUMENTED_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"segment": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}


def test_the_documented_logging_snippet_routes_the_segment_logger(capsys):
    readme = (ROOT / "example_projects" / "django_shop" / "README.md").read_text()
    assert '"segment": {"handlers": ["console"], "level": "INFO", "propagate": False}' in readme
    segment = logging.getLogger("segment")
    saved_propagate = segment.propagate
    try:
        logging.config.dictConfig(DOCUMENTED_LOGGING)
        # A message over the 32 KB limit is refused with a warning on the segment logger.
        ok, _ = analytics_core.track("u-big", "Too Big", {"blob": "x" * 40000})
        assert ok is False
    finally:
        segment.propagate = saved_propagate
    captured = capsys.readouterr()
    assert "bytes encoded; the limit is" in captured.err


def test_module_state_is_not_touched_beyond_default_client():
    # The app sets analytics_core.default_client only; the module-level settings stay as they
    # were, for code that builds its own clients from them.
    assert analytics_core.write_key is None
    assert analytics_core.host is None
    assert configure_module.last_error() is None
