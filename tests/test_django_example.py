"""The example project (example_projects/django_shop) run for real against the collector.

``migrate`` and ``createsuperuser`` on a SQLite file in a temporary directory, then
``runserver --noreload``: a visit, a login, an order, SIGTERM. The collector must hold every
event with the user id and the request's context, and the server's output must show the
``segment`` logger routed by the documented LOGGING setting.
"""

import signal
import subprocess
import sys

import pytest

from tests.django_project.testing import browser_cookie
from tests.support.servers import ROOT, ServerProcess, free_port, python_env

pytestmark = pytest.mark.slow

SHOP = ROOT / "example_projects" / "django_shop"
USER_AGENT = "ShopBrowser/2.0"
ANONYMOUS_ID = "shop-visitor-1"


def manage(env, *arguments):
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=str(SHOP),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_shop_sends_page_identify_and_order_events(collector, tmp_path):
    env = python_env(
        {
            "DJANGO_SETTINGS_MODULE": "shop_site.settings",
            "SHOP_DB": str(tmp_path / "shop.sqlite3"),
            "ANALYTICS_HOST": collector.url,
            "ANALYTICS_WRITE_KEY": "shop-test-key",
            "ANALYTICS_LOG_LEVEL": "DEBUG",
            "DJANGO_SUPERUSER_PASSWORD": "green-tea",
        }
    )
    # The README's migrate + createsuperuser, run in one process (each Django start-up costs
    # about a second here); it prints the new user's primary key.
    user_id = manage(
        env,
        "shell",
        "-c",
        "from django.core.management import call_command as run; "
        "run('migrate', verbosity=0); "
        "run('createsuperuser', interactive=False, username='alice', email='a@shop.test'); "
        "from django.contrib.auth.models import User; "
        "print('user-pk', User.objects.get(username='alice').pk)",
    )
    user_id = user_id.split("user-pk ")[-1].strip()

    port = free_port()
    command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    with ServerProcess(command, port, env=env, cwd=str(SHOP), ready_path="/login/") as server:
        browser = server.session
        browser.headers["User-Agent"] = USER_AGENT
        # What analytics.js would have stored in the browser.
        browser.cookies.set("ajs_anonymous_id", browser_cookie(ANONYMOUS_ID), domain="127.0.0.1")
        collector.clear()  # the readiness probe's page view is not part of the visit

        assert browser.get(server.url + "/").status_code == 200
        assert browser.get(server.url + "/login/").status_code == 200
        login = browser.post(
            server.url + "/login/",
            data={
                "username": "alice",
                "password": "green-tea",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
        )
        assert login.status_code == 200 and login.url == server.url + "/", login.text
        order = browser.post(
            server.url + "/order/",
            data={
                "sku": "POT-03",
                "quantity": "2",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
        )
        assert order.status_code == 200 and "/orders/" in order.url, order.text

        server.stop(signal.SIGTERM)
        output = server.output()

    events = collector.events(limit=0, order="asc")
    summary = [(event["type"], event.get("name") or event.get("event")) for event in events]
    assert summary == [
        ("page", "home"),
        ("page", "login"),
        ("identify", None),
        ("page", "home"),
        ("track", "Order Completed"),
        ("page", "order-placed"),
    ], output[-3000:]
    assert {event["_write_key"] for event in events} == {"shop-test-key"}
    assert all(event["anonymousId"] == ANONYMOUS_ID for event in events)
    assert [event.get("userId") for event in events] == [None, None] + [user_id] * 4

    identify = events[2]
    assert identify["traits"] == {"username": "alice", "email": "a@shop.test"}
    assert identify["context"]["page"]["path"] == "/login/"

    completed = events[4]
    assert completed["properties"]["revenue"] == pytest.approx(79.8)
    assert completed["properties"]["currency"] == "EUR"
    assert completed["properties"]["products"][0]["sku"] == "POT-03"
    assert completed["properties"]["products"][0]["quantity"] == 2
    context = completed["context"]
    assert context["ip"] == "127.0.0.1"
    assert context["userAgent"] == USER_AGENT
    assert context["page"]["path"] == "/order/"
    assert context["page"]["url"] == f"{server.url}/order/"

    # The documented LOGGING routes the segment logger to the console: its DEBUG lines show.
    assert "analytics: delivered a batch" in output
