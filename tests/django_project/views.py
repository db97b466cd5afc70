"""Views of the Django test project: they call analytics_core with no ids, as users' views do.

``/track/`` and ``/atrack/`` (sync and async) track one event; the query string may give
``event``, ``n`` (a property), ``user_id`` and ``context`` (JSON) to pass explicitly.
"""

import json
import os
from typing import Any, Dict

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

import analytics_core as analytics

PAGE = "<!doctype html><title>Test page</title><p>Hello</p>"


def _track_arguments(request: HttpRequest, mode: str) -> Dict[str, Any]:
    query = request.GET
    arguments: Dict[str, Any] = {
        "event": query.get("event", "Test Event"),
        "properties": {"n": int(query.get("n", 0)), "mode": mode, "pid": os.getpid()},
    }
    if "user_id" in query:
        arguments["user_id"] = query["user_id"]
    if "context" in query:
        arguments["context"] = json.loads(query["context"])
    return arguments


def _answer(result: Any) -> JsonResponse:
    ok, message = result
    return JsonResponse({"ok": ok, "messageId": message["messageId"], "pid": os.getpid()})


def track(request: HttpRequest) -> JsonResponse:
    """Track one event (sync view)."""
    return _answer(analytics.track(**_track_arguments(request, "sync")))


async def atrack(request: HttpRequest) -> JsonResponse:
    """Track one event (async view)."""
    return _answer(analytics.track(**_track_arguments(request, "async")))


def boom(request: HttpRequest) -> HttpResponse:
    """Track, then fail."""
    analytics.track(**_track_arguments(request, "sync"))
    raise RuntimeError("boom")


async def aboom(request: HttpRequest) -> HttpResponse:
    """Track, then fail (async view)."""
    analytics.track(**_track_arguments(request, "async"))
    raise RuntimeError("aboom")


def home(request: HttpRequest) -> HttpResponse:
    """An HTML page (for PAGEVIEWS)."""
    return HttpResponse(PAGE)


async def ahome(request: HttpRequest) -> HttpResponse:
    """An HTML page from an async view."""
    return HttpResponse(PAGE)


def plain(request: HttpRequest) -> JsonResponse:
    """Not HTML: no page view."""
    return JsonResponse({"html": False})


def missing(request: HttpRequest) -> HttpResponse:
    """HTML, but not a success: no page view."""
    return HttpResponse(PAGE, status=404)


def login_view(request: HttpRequest) -> JsonResponse:
    """Log in with POSTed username and password, then track "Signed In" (no ids)."""
    user = authenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is None:
        return JsonResponse({"ok": False}, status=403)
    login(request, user)
    return _answer(analytics.track(event="Signed In"))


async def alogin_view(request: HttpRequest) -> JsonResponse:
    """The async twin of ``login_view``."""
    from django.contrib.auth import aauthenticate, alogin

    user = await aauthenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is None:
        return JsonResponse({"ok": False}, status=403)
    await alogin(request, user)
    return _answer(analytics.track(event="Signed In"))


def pid(request: HttpRequest) -> HttpResponse:
    """The id of the process that answered (tracks nothing)."""
    return HttpResponse(str(os.getpid()), content_type="text/plain")


# -- identity (tests/test_django_identity.py) ---------------------------------------------------


def track_twice(request: HttpRequest) -> JsonResponse:
    """Two calls with no ids in one request: they must share one anonymous id."""
    first = analytics.track(event="First Of Two")
    second = analytics.track(event="Second Of Two")
    return JsonResponse({"ok": first[0] and second[0]})


def identify_then_track(request: HttpRequest) -> JsonResponse:
    """``identify(user_id=...)`` with no login the integration can read, then a call with no ids."""
    analytics.identify(user_id=request.GET["user_id"], traits={"plan": "pro"})
    return _answer(analytics.track(event="After Identify"))


def set_user_then_track(request: HttpRequest) -> JsonResponse:
    """``analytics_core.set_user_id(...)`` (``?user_id=`` absent: None), then a call with no ids."""
    assigned = analytics.set_user_id(request.GET.get("user_id"))
    ok, message = analytics.track(event="After Set User")
    return JsonResponse({"assigned": assigned, "ok": ok, "messageId": message["messageId"]})


def own_cookie(request: HttpRequest) -> HttpResponse:
    """Tracks with no ids (an id is minted) and sets ajs_anonymous_id itself: the app's wins."""
    analytics.track(event="Own Cookie")
    response = HttpResponse("ok", content_type="text/plain")
    response.set_cookie("ajs_anonymous_id", "%22app-own-id%22", max_age=60)
    return response


def tracked_properties(request: HttpRequest) -> JsonResponse:
    """Properties straight from the request body, as a careless view would pass them."""
    ok, _ = analytics.track(event="Posted", properties=json.loads(request.body))
    return JsonResponse({"ok": ok})


async def atracked_properties(request: HttpRequest) -> JsonResponse:
    """The async twin of ``tracked_properties``."""
    ok, _ = analytics.track(event="Posted", properties=json.loads(request.body))
    return JsonResponse({"ok": ok})


def member_login(request: HttpRequest) -> HttpResponse:
    """A custom login the integration cannot read: a member id in the session."""
    request.session["member_id"] = request.GET["member"]
    return HttpResponse("ok", content_type="text/plain")


def login_tracked(request: HttpRequest) -> JsonResponse:
    """Track before and after logging in (a visitor with no cookie: the first call mints)."""
    analytics.track(event="Login Submitted")
    user = authenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is None:
        return JsonResponse({"ok": False}, status=403)
    login(request, user)
    return _answer(analytics.track(event="Signed In"))


# -- page views (tests/test_django_pageviews.py, through site_urls.py) -------------------------


def document(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """A whole HTML document, whatever the route."""
    return HttpResponse(PAGE)


def fragment(request: HttpRequest) -> HttpResponse:
    """An HTML fragment (what htmx swaps in): not a page."""
    return HttpResponse("<h1>Just a heading</h1><p>no document around it</p>")


def plain_ok(request: HttpRequest) -> HttpResponse:
    """A health-check style answer: Django's default content type is text/html, yet no page."""
    return HttpResponse("ok")


def no_content(request: HttpRequest) -> HttpResponse:
    """204: never a page."""
    return HttpResponse(status=204)


def escaped_title(request: HttpRequest) -> HttpResponse:
    """A title with entities and line breaks, as templates produce them."""
    return HttpResponse("<!DOCTYPE html>\n<html><head><title>\n  Fish &amp; Chips\n</title>")


def streamed(request: HttpRequest) -> StreamingHttpResponse:
    """A streamed document: its body is not at hand, and it counts."""
    return StreamingHttpResponse(iter([b"<!doctype html>", b"<title>Streamed</title>"]))


async def astreamed(request: HttpRequest) -> StreamingHttpResponse:
    """A streamed document from an async view, with an async iterator."""

    async def chunks():
        yield b"<!doctype html>"
        yield b"<title>Streamed</title>"

    return StreamingHttpResponse(chunks())
