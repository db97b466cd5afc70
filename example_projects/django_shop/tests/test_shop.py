"""The shop's own tests: its analytics, checked with analytics-core's ``analytics_events``
fixture (nothing is sent). Run ``pytest`` in example_projects/django_shop."""

from urllib.parse import unquote

import pytest
from shop.api import token_for


def anonymous_id_of(cookie) -> str:
    """The id in an ``ajs_anonymous_id`` cookie (JSON-quoted, URL-encoded, as analytics.js)."""
    return unquote(cookie.value).strip('"')


@pytest.mark.django_db
def test_a_first_visit_gets_an_anonymous_id_which_the_login_ties_to_the_user(
    client, django_user_model, analytics_events
):
    user = django_user_model.objects.create_user("ada", "ada@example.com", "difference-engine")
    # No ajs_anonymous_id cookie (no analytics.js ran yet): the page view mints an id and the
    # response hands it to the browser; the test client sends it back from then on.
    home = client.get("/")
    assert home.status_code == 200
    cookie = home.cookies["ajs_anonymous_id"]
    assert (cookie["path"], cookie["samesite"], cookie["httponly"]) == ("/", "Lax", "")
    visitor = anonymous_id_of(cookie)
    page = analytics_events.assert_called("page", anonymous_id=visitor, name="/")
    assert "userId" not in page

    response = client.post("/login/", {"username": "ada", "password": "difference-engine"})
    assert response.status_code == 302
    assert "ajs_anonymous_id" not in response.cookies  # the browser has it: not set again
    response = client.post("/order/", {"sku": "TEA-01", "quantity": "2"})
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 200

    # The identify carries both ids: Segment joins the anonymous visit to the user.
    analytics_events.assert_identified(
        str(user.pk), traits={"email": "ada@example.com"}, anonymous_id=visitor
    )
    order = analytics_events.assert_tracked(
        "Order Completed",
        user_id=str(user.pk),
        anonymous_id=visitor,
        properties={"revenue": 15.0, "currency": "EUR"},
    )
    assert order["context"]["page"]["path"] == "/order/"
    # Pages are named after their route, not their URL: one name for every order.
    analytics_events.assert_called(
        "page", name="/orders/<str:order_id>/", user_id=str(user.pk), anonymous_id=visitor
    )


@pytest.mark.django_db
def test_the_api_token_gives_the_user_id_through_the_user_id_setting(
    client, django_user_model, analytics_events
):
    user = django_user_model.objects.create_user("grace", "grace@example.com", "cobol")
    response = client.post(
        "/api/reorder/",
        {"sku": "POT-03", "quantity": 3},
        content_type="application/json",
        headers={"Authorization": f"Token {token_for('grace')}"},
    )
    assert response.status_code == 201, response.content
    order = analytics_events.assert_tracked(
        "Order Completed", user_id=str(user.pk), properties={"revenue": pytest.approx(119.7)}
    )
    # The user id was enough: no anonymous id was needed, so none was made up, nor a cookie set.
    assert "anonymousId" not in order
    assert "ajs_anonymous_id" not in response.cookies


@pytest.mark.django_db
def test_orders_without_a_login_or_a_valid_token_are_refused_and_not_tracked(
    client, analytics_events
):
    assert client.post("/order/", {"sku": "TEA-01"}).status_code == 302  # to the login page
    response = client.post(
        "/api/reorder/",
        {"sku": "TEA-01"},
        content_type="application/json",
        headers={"Authorization": "Token forged"},
    )
    assert response.status_code == 401
    analytics_events.assert_not_tracked("Order Completed")
    assert "ajs_anonymous_id" not in response.cookies  # no call needed an id: no cookie
