"""The example project (example_projects/django_shop) run for real against the collector.

``migrate`` and ``createsuperuser`` on a SQLite file in a temporary directory, then
``runserver --noreload``: a first visit without any cookie, a login, an order, then an order
through the token API (the ``ANALYTICS["USER_ID"]`` setting), SIGTERM. The collector must hold
every event with the minted anonymous id, the user id and the request's context, and the
server's output must show the ``segment`` logger routed by the documented LOGGING setting.
"""

import signal
import subprocess
import sys
from urllib.parse import unquote

import pytest
import requests

from analytics_core.collector.access import write_key_fingerprint as fingerprint
from tests.support.servers import ROOT, ServerProcess, free_port, python_env

pytestmark = pytest.mark.slow

SHOP = ROOT / "example_projects" / "django_shop"
USER_AGENT = "ShopBrowser/2.0"
API_USER_AGENT = "shop-script/1.0"


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
    # The README's migrate + createsuperuser, and its API token command, run in one process
    # (each Django start-up costs about a second here); it prints the user's primary key and
    # token.
    printed = manage(
        env,
        "shell",
        "-c",
        "from django.core.management import call_command as run; "
        "run('migrate', verbosity=0); "
        "run('createsuperuser', interactive=False, username='alice', email='a@shop.test'); "
        "from django.contrib.auth.models import User; "
        "from shop.api import token_for; "
        "print('user-pk', User.objects.get(username='alice').pk, token_for('alice'))",
    )
    user_id, token = printed.split("user-pk ")[-1].split()

    port = free_port()
    command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    with ServerProcess(command, port, env=env, cwd=str(SHOP), ready_path="/login/") as server:
        browser = server.session
        browser.headers["User-Agent"] = USER_AGENT
        # The readiness probe's page view, and the cookie it got, are not part of the visit:
        # the visitor comes without any cookie (no analytics.js ran yet).
        collector.clear()
        browser.cookies.clear()

        home = browser.get(server.url + "/", timeout=10)
        assert home.status_code == 200
        # The page view needed an id: the shop minted one and hands it over as analytics.js's
        # cookie, which the browser sends back from now on.
        set_cookie = home.headers["Set-Cookie"]
        assert set_cookie.startswith("ajs_anonymous_id=%22"), set_cookie
        assert "Max-Age=31536000" in set_cookie and "Path=/" in set_cookie
        assert "SameSite=Lax" in set_cookie and "HttpOnly" not in set_cookie
        visitor = unquote(browser.cookies["ajs_anonymous_id"]).strip('"')

        login_page = browser.get(server.url + "/login/", timeout=10)
        assert login_page.status_code == 200
        assert "ajs_anonymous_id" not in login_page.headers.get("Set-Cookie", "")
        login = browser.post(
            server.url + "/login/",
            data={
                "username": "alice",
                "password": "green-tea",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            timeout=10,
        )
        assert login.status_code == 200 and login.url == server.url + "/", login.text
        order = browser.post(
            server.url + "/order/",
            data={
                "sku": "POT-03",
                "quantity": "2",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            timeout=10,
        )
        assert order.status_code == 200 and "/orders/" in order.url, order.text

        # A script using the token API: no session, no cookie; ANALYTICS["USER_ID"] knows it.
        with requests.Session() as script:
            script.trust_env = False
            reorder = script.post(
                server.url + "/api/reorder/",
                json={"sku": "TEA-01", "quantity": 3},
                headers={"Authorization": f"Token {token}", "User-Agent": API_USER_AGENT},
                timeout=10,
            )
        assert reorder.status_code == 201, reorder.text
        assert "Set-Cookie" not in reorder.headers  # the user id was enough: no cookie

        server.stop(signal.SIGTERM)
        output = server.output()

    events = collector.events(limit=0, order="asc")
    summary = [(event["type"], event.get("name") or event.get("event")) for event in events]
    # Pages are named after their URL pattern: every order's page has the same name.
    assert summary == [
        ("page", "/"),
        ("page", "/login/"),
        ("identify", None),
        ("page", "/"),
        ("track", "Order Completed"),
        ("page", "/orders/<str:order_id>/"),
        ("track", "Order Completed"),
    ], output[-3000:]
    assert {event["_write_key_fingerprint"] for event in events} == {fingerprint("shop-test-key")}
    browsing, api_order = events[:6], events[6]
    # The minted id is on every event of the visit, before and after the login; the identify
    # carries it with the user id, which is how Segment joins the two.
    assert [event["anonymousId"] for event in browsing] == [visitor] * 6
    assert [event.get("userId") for event in browsing] == [None, None] + [user_id] * 4

    first_page = events[0]
    assert first_page["properties"]["title"] == "Tea shop"
    assert first_page["properties"]["url"] == f"{server.url}/"

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

    # The API order: the user id from the token (shop.analytics.customer_id), and no
    # anonymous id, since none was needed.
    assert api_order["userId"] == user_id
    assert "anonymousId" not in api_order
    assert api_order["properties"]["revenue"] == pytest.approx(22.5)
    assert api_order["properties"]["products"][0]["quantity"] == 3
    assert api_order["context"]["userAgent"] == API_USER_AGENT
    assert api_order["context"]["page"]["path"] == "/api/reorder/"

    # The documented LOGGING routes the segment logger to the console: its DEBUG lines show.
    assert "analytics: delivered a batch" in output
