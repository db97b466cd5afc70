"""analytics_asgi: the authenticated user's id, from Starlette's AuthenticationMiddleware or the
app's own ``user_id_from_scope``.

SegmentMiddleware is usually added last, so it is the outermost middleware and starts before
AuthenticationMiddleware has put ``scope["user"]`` there; the user id must still be the one the
inner middleware found by the time the app tracks.
"""

import logging
from typing import Optional

import pytest
from analytics_asgi import SegmentMiddleware, user_id_from_scope_user
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
    UnauthenticatedUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route

import analytics_core
from analytics_core.context import current_request_context

from .asgi_apps.support import Clients, TestClient, visitor_headers

KEY = "asgi-users-key"


@pytest.fixture
def clients(collector):
    with Clients(collector.url) as made:
        yield made


class IdentityUser(BaseUser):
    def __init__(self, identity: str) -> None:
        self._identity = identity

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def identity(self) -> str:
        return self._identity


class OrmUser:
    """A model-like user object with an integer primary key, as many apps keep in scope."""

    is_authenticated = True

    def __init__(self, pk: int) -> None:
        self.id = pk


class TokenBackend(AuthenticationBackend):
    """``Authorization: Bearer <kind>:<value>`` logs in the user the test asks for."""

    async def authenticate(self, conn):
        header = conn.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        kind, _, value = header[len("Bearer ") :].partition(":")
        users = {"identity": IdentityUser, "orm": lambda v: OrmUser(int(v)), "simple": SimpleUser}
        return AuthCredentials(["authenticated"]), users[kind](value)


async def order(request):
    analytics_core.track(event="Order Completed")
    return JSONResponse({"user_id": current_request_context().user_id})


async def explicit(request):
    analytics_core.track(user_id="given-user", event="Explicit")
    return JSONResponse({})


async def login(request):
    # An app that logs the user in during this request says who the next events are about.
    current_request_context().user_id = "just-logged-in"
    analytics_core.track(event="Logged In")
    return JSONResponse({})


def app_with_auth(segment_outermost: bool = True, **options) -> Starlette:
    app = Starlette(
        routes=[Route("/order", order), Route("/explicit", explicit), Route("/login", login)]
    )
    # add_middleware puts each new middleware outside the ones added before it.
    if segment_outermost:
        app.add_middleware(AuthenticationMiddleware, backend=TokenBackend())
        app.add_middleware(SegmentMiddleware, **options)
    else:
        app.add_middleware(SegmentMiddleware, **options)
        app.add_middleware(AuthenticationMiddleware, backend=TokenBackend())
    return app


def bearer(token: str, anonymous_id: str = "anon-u") -> dict:
    return visitor_headers(anonymous_id, Authorization=f"Bearer {token}")


@pytest.mark.parametrize("segment_outermost", [True, False])
def test_the_authenticated_users_id_whichever_middleware_is_outside(
    collector, clients, segment_outermost
):
    client = clients.make(KEY)
    app = app_with_auth(segment_outermost, client=client)
    with TestClient(app) as http:
        assert http.get("/order", headers=bearer("identity:user-42")).json() == {
            "user_id": "user-42"
        }
        assert http.get("/order", headers=bearer("orm:7")).json() == {"user_id": "7"}
        # Not logged in: no user id, the anonymous id alone.
        assert http.get("/order", headers=visitor_headers("anon-v")).json() == {"user_id": None}

    events = collector.wait_for(3, write_key=KEY)
    assert [(e.get("userId"), e["anonymousId"]) for e in events] == [
        ("user-42", "anon-u"),
        ("7", "anon-u"),
        (None, "anon-v"),
    ]


def test_a_simple_users_identity_or_the_apps_own_resolver(collector, clients):
    # Starlette's SimpleUser has its username as identity; an app can choose something else.
    client = clients.make(KEY)
    with TestClient(app_with_auth(client=client)) as http:
        assert http.get("/order", headers=bearer("simple:ada")).json() == {"user_id": "ada"}
    named = app_with_auth(
        client=client, user_id_from_scope=lambda scope: f"name:{scope['user'].display_name}"
    )
    with TestClient(named) as http:
        assert http.get("/order", headers=bearer("simple:ada")).json() == {"user_id": "name:ada"}
    # A resolver that finds nobody leaves the anonymous id alone.
    nobody = app_with_auth(client=client, user_id_from_scope=lambda scope: None)
    with TestClient(nobody) as http:
        assert http.get("/order", headers=bearer("simple:ada")).json() == {"user_id": None}

    events = collector.wait_for(3, write_key=KEY)
    assert [e.get("userId") for e in events] == ["ada", "name:ada", None]


def test_explicit_user_id_wins_over_the_scope_user(collector, clients):
    client = clients.make(KEY)
    with TestClient(app_with_auth(client=client)) as http:
        http.get("/explicit", headers=bearer("identity:user-42"))
        http.get("/login", headers=bearer("identity:user-42"))

    events = collector.wait_for(2, write_key=KEY)
    assert [(e["event"], e["userId"]) for e in events] == [
        ("Explicit", "given-user"),
        ("Logged In", "just-logged-in"),
    ]
    # Key by key: the explicit user id keeps the request's anonymous id (the stitch Segment
    # needs to join the visitor's anonymous history to the user).
    assert events[0]["anonymousId"] == "anon-u"


def test_a_resolver_that_raises_is_logged_and_gives_no_user(collector, clients, caplog):
    def broken(scope) -> Optional[str]:
        raise KeyError("tenant")

    client = clients.make(KEY)
    with TestClient(app_with_auth(client=client, user_id_from_scope=broken)) as http:
        with caplog.at_level(logging.ERROR, logger="segment"):
            response = http.get("/order", headers=bearer("identity:user-42"))
        assert response.status_code == 200
    assert "user_id_from_scope raised" in caplog.text

    (event,) = collector.wait_for(1, write_key=KEY)
    assert "userId" not in event
    assert event["anonymousId"] == "anon-u"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, None),
        (IdentityUser("u-1"), "u-1"),
        (OrmUser(0), "0"),  # 0 is a valid primary key
        (SimpleUser("ada"), "ada"),
        (UnauthenticatedUser(), None),
        (type("Unauthenticated", (), {"is_authenticated": False, "id": 5})(), None),
        (type("NoFlag", (), {"pk": 9})(), "9"),  # no is_authenticated: its id is enough
        (type("Flags", (), {"id": True})(), None),  # a boolean is no id
        (type("Blank", (), {"identity": "  ", "id": "x"})(), "x"),
    ],
)
def test_the_default_resolver(user, expected):
    scope = {"type": "http"} if user is None else {"type": "http", "user": user}
    assert user_id_from_scope_user(scope) == expected
