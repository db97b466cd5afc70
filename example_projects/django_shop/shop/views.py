"""The shop's views. Note what they do not do: pass a user id, an anonymous id or a context.

``analytics.track(...)`` inside a request gets those from the request (analytics_django's
middleware): the user id (``ANALYTICS["USER_ID"]``, see analytics.py), the browser's
``ajs_anonymous_id`` cookie (on a first visit without one, a new id, then set as that cookie),
its IP, user agent, locale and page.
"""

import uuid
from decimal import Decimal
from typing import Any, Dict

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

import analytics_core as analytics

CATALOGUE = {
    "TEA-01": {"name": "Sencha green tea", "price": Decimal("7.50")},
    "MUG-02": {"name": "Stoneware mug", "price": Decimal("12.00")},
    "POT-03": {"name": "Cast-iron teapot", "price": Decimal("39.90")},
}
CURRENCY = "EUR"


def home(request: HttpRequest) -> HttpResponse:
    """The catalogue (a page view is recorded by PAGEVIEWS, nothing to do here)."""
    return render(request, "shop/home.html", {"catalogue": CATALOGUE, "currency": CURRENCY})


def record_order(sku: str, quantity: Any) -> Dict[str, Any]:
    """Order ``quantity`` of product ``sku`` and track "Order Completed" (Segment's e-commerce
    spec); the order, in JSON-ready values. Used by the HTML shop and by the API (api.py)."""
    product = CATALOGUE[sku]
    try:
        quantity = max(1, min(int(quantity), 99))
    except (TypeError, ValueError):
        quantity = 1
    order_id = uuid.uuid4().hex[:12]
    total = product["price"] * quantity
    analytics.track(
        event="Order Completed",
        properties={
            "order_id": order_id,
            "total": total,  # Decimal: cleaned to a number by analytics_core
            "revenue": total,
            "currency": CURRENCY,
            "products": [
                {
                    "product_id": sku,
                    "sku": sku,
                    "name": product["name"],
                    "price": product["price"],
                    "quantity": quantity,
                }
            ],
        },
    )
    return {
        "id": order_id,
        "name": product["name"],
        "quantity": quantity,
        "total": str(total),
        "currency": CURRENCY,
    }


@login_required
@require_POST
def place_order(request: HttpRequest) -> HttpResponse:
    """Place an order for one product, from the catalogue page's form."""
    sku = request.POST.get("sku", "")
    if sku not in CATALOGUE:
        raise Http404("no such product")
    order = record_order(sku, request.POST.get("quantity", "1"))
    request.session["last_order"] = order
    return redirect("order-placed", order_id=order["id"])


@login_required
def order_placed(request: HttpRequest, order_id: str) -> HttpResponse:
    """The thank-you page of the last order."""
    order = request.session.get("last_order")
    if not order or order["id"] != order_id:
        raise Http404("no such order")
    return render(request, "shop/order_placed.html", {"order": order})
