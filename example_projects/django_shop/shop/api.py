"""The shop's JSON API, for scripts and apps: ``POST /api/reorder/`` orders a product again.

It authenticates by a token header, ``Authorization: Token <token>``, not by the login session:
``request.user`` is anonymous here, and the customer is ``request.customer``, which the
``ANALYTICS["USER_ID"]`` setting (``shop/analytics.py``) hands to analytics_django.

The tokens are signed customer ids (``django.core.signing``), so the example needs no token
table; a real shop stores them, to be able to revoke one.
"""

import json
from functools import wraps
from typing import Any, Callable, Optional

from django.contrib.auth import get_user_model
from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .views import CATALOGUE, record_order

TOKEN_SALT = "shop.api.token"


def token_for(username: str) -> str:
    """The API token of customer ``username`` (see the README for the command that prints it)."""
    customer = get_user_model().objects.get_by_natural_key(username)
    return signing.dumps(customer.pk, salt=TOKEN_SALT)


def customer_from_token(request: HttpRequest) -> Optional[Any]:
    """The active customer whose token the request carries, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Token" or not token:
        return None
    try:
        pk = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        return None
    return get_user_model().objects.filter(pk=pk, is_active=True).first()


def token_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 401 without a valid token; else set ``request.customer`` and run ``view``."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        customer = customer_from_token(request)
        if customer is None:
            return JsonResponse({"error": "send 'Authorization: Token <token>'"}, status=401)
        request.customer = customer  # what shop.analytics.customer_id reports as the user id
        return view(request, *args, **kwargs)

    return wrapper


@csrf_exempt  # no cookie authenticates this view, so another site cannot forge a request
@require_POST
@token_required
def reorder(request: HttpRequest) -> HttpResponse:
    """Order a product again: ``{"sku": "TEA-01", "quantity": 2}``; tracks "Order Completed"."""
    try:
        body = json.loads(request.body)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("sku") not in CATALOGUE:
        return JsonResponse({"error": f"expected {{'sku': one of {list(CATALOGUE)}}}"}, status=400)
    order = record_order(body["sku"], body.get("quantity", 1))
    return JsonResponse(order, status=201)
