"""Views of the Django test project: they call analytics_core with no ids, as users' views do.

``/track/`` and ``/atrack/`` (sync and async) track one event; the query string may give
``event``, ``n`` (a property), ``user_id`` and ``context`` (JSON) to pass explicitly.
"""

import json
import os
from typing import Any, Dict

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, JsonResponse

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
