"""The shop's own tests: its analytics, checked with analytics-core's ``analytics_events``
fixture (nothing is sent). Run ``pytest`` in example_projects/django_shop."""

import pytest


@pytest.mark.django_db
def test_login_then_order_is_identified_and_tracked(client, django_user_model, analytics_events):
    user = django_user_model.objects.create_user("ada", "ada@example.com", "difference-engine")
    client.cookies["ajs_anonymous_id"] = "%22visitor-3%22"  # as analytics.js writes it
    assert client.get("/").status_code == 200
    response = client.post("/login/", {"username": "ada", "password": "difference-engine"})
    assert response.status_code == 302
    response = client.post("/order/", {"sku": "TEA-01", "quantity": "2"})
    assert response.status_code == 302

    analytics_events.assert_called("page", anonymous_id="visitor-3")
    analytics_events.assert_identified(str(user.pk))
    order = analytics_events.assert_tracked(
        "Order Completed",
        user_id=str(user.pk),
        properties={"revenue": 15.0, "currency": "EUR"},
    )
    assert order["context"]["page"]["path"] == "/order/"


@pytest.mark.django_db
def test_an_anonymous_order_is_refused_and_not_tracked(client, analytics_events):
    response = client.post("/order/", {"sku": "TEA-01"})
    assert response.status_code == 302  # to the login page
    analytics_events.assert_not_tracked("Order Completed")
