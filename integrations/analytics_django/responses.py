"""What the middleware does to a finished response: the anonymous-id cookie, and whether the
request's events are delivered before it goes out."""

import logging

from django.http import HttpRequest, HttpResponseBase

from analytics_core.web import ANONYMOUS_ID_COOKIE
from analytics_core.web.anonymous_cookie import COOKIE_MAX_AGE, cookie_value

from .options import RequestOptions
from .request_context import DjangoRequestContext

__all__ = ["flush_wanted", "set_anonymous_id_cookie"]

logger = logging.getLogger("segment")

# runserver serves through wsgiref, which names itself so; production servers do not.
_DEV_SERVER = "WSGIServer/"


def set_anonymous_id_cookie(
    request: HttpRequest,
    response: HttpResponseBase,
    context: DjangoRequestContext,
    options: RequestOptions,
) -> None:
    """Hand the anonymous id a call of this request minted to the browser, as analytics.js's
    cookie (see :mod:`analytics_core.web.anonymous_cookie`), unless the cookie is turned off or the
    app set that cookie itself."""
    anonymous_id = context.minted_anonymous_id
    if anonymous_id is None or not options.cookie or ANONYMOUS_ID_COOKIE in response.cookies:
        return
    try:
        response.set_cookie(
            ANONYMOUS_ID_COOKIE,
            cookie_value(anonymous_id),
            max_age=COOKIE_MAX_AGE,
            path="/",
            domain=options.cookie_domain,
            secure=request.is_secure(),
            httponly=False,  # analytics.js in the page reads it
            samesite="Lax",
        )
    except Exception:  # the response goes out without the cookie rather than not at all
        logger.exception("analytics_django: could not set the ajs_anonymous_id cookie")


def flush_wanted(request: HttpRequest, options: RequestOptions) -> bool:
    """Whether to deliver the request's events before its response: ``FLUSH_EACH_REQUEST``,
    by default only under ``runserver``. Stopped with SIGTERM (an IDE's stop button,
    ``timeout``), its autoreloader SIGKILLs the process that serves, whose queue would be lost."""
    if options.flush_each_request is not None:
        return options.flush_each_request
    software = request.META.get("SERVER_SOFTWARE")
    return isinstance(software, str) and software.startswith(_DEV_SERVER)
