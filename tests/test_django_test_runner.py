"""Management commands of a project made from scratch, with the README's set-up.

The project is what a user has after ``django-admin startproject`` and the README's set-up, with
the production-style settings a CI job would have: a write key and a HOST from the environment
(here the real local collector).

- ``manage.py test``: Django's own test runner never sends. The project's tests request a view
  that tracks, assert on ``analytics_django.outbox`` / ``captured_events()``, and one test
  really sends with ``analytics_core.testing.allow_sending()``. The run must pass, and the
  collector must receive that one message and nothing else.
- ``manage.py check`` and ``migrate`` with ``PERSIST`` set: they exit without a word from us.
"""

import subprocess
import sys
import textwrap

import pytest

from analytics_core.collector.access import write_key_fingerprint as fingerprint
from tests.support.servers import python_env

pytestmark = pytest.mark.slow

WRITE_KEY = "production-key-in-ci"

# The README's set-up: the app in INSTALLED_APPS and the ANALYTICS dict (its HOST the collector).
SETTINGS = """

# analytics-core, as the README says.
INSTALLED_APPS += ["analytics_django"]
ANALYTICS = {
    "WRITE_KEY": os.environ.get("SEGMENT_WRITE_KEY"),
    "HOST": os.environ.get("SEGMENT_HOST"),
}
"""

VIEWS = """
from django.http import HttpResponse

import analytics_core as analytics


def checkout(request):
    # The README's view: no ids (the test client has neither a login nor a cookie).
    analytics.track(event="Order Completed", properties={"order_id": request.GET["order"]})
    return HttpResponse("ok")
"""

URLS = """
from mysite import views

urlpatterns += [path("checkout/", views.checkout)]
"""

TESTS = """
import analytics_django
from analytics_django.testing import captured_events
from django.test import TestCase

from analytics_core.testing import allow_sending


class CheckoutTests(TestCase):
    def test_checkout_is_tracked(self):
        response = self.client.get("/checkout/?order=o-17")
        self.assertEqual(response.status_code, 200)
        [message] = analytics_django.outbox
        self.assertEqual(message["event"], "Order Completed")
        self.assertEqual(message["properties"], {"order_id": "o-17"})
        self.assertEqual(message["context"]["page"]["path"], "/checkout/")
        self.assertEqual(
            response.cookies["ajs_anonymous_id"].value, '%22' + message["anonymousId"] + '%22'
        )
        captured_events().assert_tracked("Order Completed", properties={"order_id": "o-17"})

    def test_really_sent_when_the_test_allows_it(self):
        with allow_sending():
            self.client.get("/checkout/?order=o-allowed")
        self.assertEqual(analytics_django.outbox, [])

    def test_the_outbox_is_emptied_for_each_test(self):
        # Runs after test_checkout_is_tracked (unittest sorts by name), as mail.outbox is.
        self.assertEqual(analytics_django.outbox, [])
        self.client.get("/checkout/?order=o-18")
        captured_events().assert_tracked("Order Completed", count=1)
"""


def run(command, cwd, env):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


def test_manage_py_test_keeps_messages_in_the_outbox_and_sends_only_what_is_allowed(
    tmp_path, collector
):
    env = python_env({"SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_HOST": collector.url})
    # pytest-django exported this suite's settings module; manage.py only sets it by default.
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run([sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)], tmp_path, env)
    package = tmp_path / "mysite"
    with open(package / "settings.py", "a") as settings:
        settings.write("\nimport os\n" + SETTINGS)
    (package / "views.py").write_text(textwrap.dedent(VIEWS))
    with open(package / "urls.py", "a") as urls:
        urls.write(textwrap.dedent(URLS))
    (package / "tests.py").write_text(textwrap.dedent(TESTS))

    result = run([sys.executable, "manage.py", "test", "-v", "2"], tmp_path, env)
    assert "Ran 3 tests" in result.stderr, result.stderr
    assert "\nOK\n" in result.stderr, result.stderr

    # The process has exited: whatever it sent has arrived.
    events = collector.events(limit=0, order="asc")
    assert [event["properties"] for event in events] == [{"order_id": "o-allowed"}], events
    [event] = events
    assert event["event"] == "Order Completed"
    assert event["_write_key_fingerprint"] == fingerprint(WRITE_KEY)
    assert event["context"]["page"]["path"] == "/checkout/"


def test_management_commands_with_a_spool_exit_without_a_traceback(tmp_path, collector):
    # The client was closed at exit, then its __del__ closed the spool again during the
    # interpreter's teardown, when the spool module's globals were None: "could not close the
    # spool" and an AttributeError's traceback, on every check, migrate and worker stop.
    env = python_env({"SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_HOST": collector.url})
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run([sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)], tmp_path, env)
    spool = tmp_path / "analytics-spool.db"
    with open(tmp_path / "mysite" / "settings.py", "a") as settings:
        settings.write("\nimport os\n" + SETTINGS + f'ANALYTICS["PERSIST"] = {str(spool)!r}\n')
    (tmp_path / "mysite" / "views.py").write_text(textwrap.dedent(VIEWS))  # check imports it
    with open(tmp_path / "mysite" / "urls.py", "a") as urls:
        urls.write(textwrap.dedent(URLS))
    for command in (["check"], ["migrate", "--no-input"]):
        result = run([sys.executable, "manage.py", *command], tmp_path, env)
        assert "Traceback" not in result.stderr, result.stderr
        assert "analytics" not in result.stderr, result.stderr
    assert spool.exists()  # the spool was opened, and closed
    assert list(spool.parent.glob("analytics-spool.db-owners/*")) == []
