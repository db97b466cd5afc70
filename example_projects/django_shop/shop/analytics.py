"""Who the shop's analytics events are about: ``ANALYTICS["USER_ID"]`` in settings.py names
:func:`customer_id`."""

from typing import Optional

from django.http import HttpRequest


def customer_id(request: HttpRequest) -> Optional[int]:
    """The user id of this request's events: the customer the API token authenticated
    (``shop/api.py``), else the logged-in user's primary key, else None (anonymous).

    analytics_django reads ``request.user`` by itself; the setting is needed because the API's
    token is an authentication Django's auth knows nothing about. With the setting in place,
    this function is asked for every request, so it keeps the logged-in user case too.
    """
    customer = getattr(request, "customer", None)
    if customer is not None:
        return customer.pk
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.pk
    return None
