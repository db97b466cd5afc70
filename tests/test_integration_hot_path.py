"""The per-request path of the integrations, written for requests that send nothing.

Every request pays for what the integrations do before the app runs, so that path sets the
context through the ContextVar's own ``set``/``reset`` (``set_request_context`` and
``reset_request_context`` are those), builds the context with positional
arguments and, on ASGI, wraps ``send`` only for what is switched on. These tests hold that
path to the behaviour of the plain functions it replaced, with real framework requests.
"""

import asyncio
import contextvars

import pytest
from analytics_asgi import SegmentMiddleware
from analytics_asgi.scope_context import ScopeRequestContext, context_for_scope
from analytics_asgi.users import user_id_from_scope_user

import analytics_core
from analytics_core.context import (
    RequestContext,
    current_request_context,
    reset_request_context,
    set_request_context,
)

from .asgi_apps.support import call_http, http_scope

KEY = "hot-path-key"


def test_request_contexts_nest_and_reset_to_what_was_current():
    outer = RequestContext({"outer": True})
    token = set_request_context(outer)
    try:
        inner = RequestContext({"inner": True})
        inner_token = set_request_context(inner)
        assert current_request_context() is inner
        reset_request_context(inner_token)
        assert current_request_context() is outer
    finally:
        reset_request_context(token)
    assert current_request_context() is None


def test_a_token_of_another_context_raises_value_error():
    token = set_request_context(RequestContext())
    try:
        copy = contextvars.copy_context()
        with pytest.raises(ValueError):
            copy.run(reset_request_context, token)
    finally:
        reset_request_context(token)


def _scope_context(scope):
    return ScopeRequestContext(scope, None, 0, user_id_from_scope_user, "x-forwarded-for")


def test_a_context_built_positionally_starts_as_the_keyword_one_did():
    scope = http_scope(headers=[(b"user-agent", b"Firefox"), (b"cookie", b"ajs_anonymous_id=a1")])
    fast = _scope_context(scope)
    keyword = context_for_scope(
        scope, trusted_proxies=0, client=None, user_id_from_scope=user_id_from_scope_user
    )
    for context in (fast, keyword):
        assert context.client is None
        assert context.user_id is None
        assert context.minted_anonymous_id is None
    assert fast.anonymous_id == keyword.anonymous_id == "a1"
    assert fast.context == keyword.context
    assert fast.context["userAgent"] == "Firefox"
    # What the app assigns is kept, as before.
    fast.user_id = "u1"
    assert fast.user_id == "u1"


class _App:
    """A raw ASGI app: records the context, optionally tracks without ids, answers HTML."""

    def __init__(self, track: bool) -> None:
        self.track = track
        self.contexts = []

    async def __call__(self, scope, receive, send):
        self.contexts.append(current_request_context())
        if self.track:
            analytics_core.track(event="Seen")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": b"<!doctype html><title>t</title>"})


def _cookies(sent):
    return [value for name, value in sent[0].get("headers", []) if name == b"set-cookie"]


@pytest.mark.parametrize("pageviews", [False, True])
@pytest.mark.parametrize("cookie", [False, True])
def test_the_cookie_and_the_context_whatever_is_switched_on(pageviews, cookie):
    for track in (False, True):
        app = _App(track)
        middleware = SegmentMiddleware(
            app, write_key=KEY, send=False, pageviews=pageviews, anonymous_id_cookie=cookie
        )
        sent = asyncio.run(call_http(middleware, http_scope(headers=[(b"accept", b"text/html")])))
        assert [message["type"] for message in sent] == [
            "http.response.start",
            "http.response.body",
        ]
        assert isinstance(app.contexts[0], ScopeRequestContext)
        assert current_request_context() is None
        cookies = _cookies(sent)
        # An id is minted by the track() call, or by the page view of an HTML page.
        minted = track or pageviews
        if cookie and minted:
            (value,) = cookies
            assert value.startswith(b"ajs_anonymous_id=%22")
            assert app.contexts[0].minted_anonymous_id is not None
        else:
            assert cookies == []


def test_a_context_that_cannot_be_built_leaves_none_current(monkeypatch):
    from analytics_asgi import scope_context as module

    def broken(*args):
        raise RuntimeError("broken")

    monkeypatch.setattr(module, "ScopeRequestContext", broken)
    app = _App(track=False)
    sent = asyncio.run(call_http(SegmentMiddleware(app, write_key=KEY, send=False), http_scope()))
    assert sent[0]["status"] == 200
    assert app.contexts == [None]
