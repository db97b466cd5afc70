"""An API with the authentication FastAPI's documentation teaches (OAuth2 password flow, bearer
JWTs), written for these tests: the pattern the integration cannot read by itself, because the
user is found by a dependency and never put in ``scope["user"]``.

``POST /token`` takes the OAuth2 password form (``OAuth2PasswordRequestForm``) and answers a
signed JWT (PyJWT, HS256); a ``current_user`` dependency on ``OAuth2PasswordBearer`` decodes it
for ``GET /users/me/`` and ``GET /users/me/items/``. The analytics a Segment user adds: ``/token``
identifies the user and tracks "Signed In"; the items endpoint tracks "Items Listed", and
"Items Exported" from a background task. With ``name_the_user=True`` the dependency also calls
``analytics_core.set_user_id(...)``, as the README advises; without it, nothing names the user.
"""

import hashlib
import hmac
import time
from typing import Annotated, Any, Dict, List, Optional

import jwt
from analytics_asgi import SegmentMiddleware
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm

import analytics_core

__all__ = ["PASSWORD", "make_app"]

PASSWORD = "correct horse"
_SIGNING_KEY = "tests-only-jwt-signing-key-of-32-bytes-or-more"
_TOKEN_LIFETIME = 30 * 60


def _digest(password: str) -> bytes:
    return hashlib.sha256(b"oauth2-test:" + password.encode()).digest()


# One account; the tests log in as it.
_ACCOUNTS: Dict[str, Dict[str, Any]] = {
    "johndoe": {
        "email": "johndoe@example.com",
        "name": "John Doe",
        "password": _digest(PASSWORD),
        "active": True,
    }
}

_REFUSED = HTTPException(
    status_code=401, detail="Could not validate credentials", headers={"WWW-Authenticate": "Bearer"}
)


def _account(username: str, password: str) -> Optional[Dict[str, Any]]:
    account = _ACCOUNTS.get(username)
    if account is None or not hmac.compare_digest(account["password"], _digest(password)):
        return None
    return account


def _username_in(token: str) -> str:
    try:
        claims = jwt.decode(token, _SIGNING_KEY, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        raise _REFUSED from None
    username = claims.get("sub")
    if username not in _ACCOUNTS or not _ACCOUNTS[username]["active"]:
        raise _REFUSED
    return username


def make_app(name_the_user: bool = True, **middleware_options: Any) -> FastAPI:
    """The API, with ``SegmentMiddleware(**middleware_options)``."""
    bearer = OAuth2PasswordBearer(tokenUrl="token")
    app = FastAPI()

    async def current_user(token: Annotated[str, Depends(bearer)]) -> str:
        username = _username_in(token)
        if name_the_user:
            # Only this dependency knows who the caller is: tell the integration.
            analytics_core.set_user_id(username)
        return username

    @app.post("/token")
    async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Dict[str, str]:
        account = _account(form.username, form.password)
        if account is None:
            raise HTTPException(
                status_code=401,
                detail="Incorrect username or password",
                headers={"WWW-Authenticate": "Bearer"},
            )
        analytics_core.identify(
            user_id=form.username, traits={"email": account["email"], "name": account["name"]}
        )
        analytics_core.track(event="Signed In")
        claims = {"sub": form.username, "exp": int(time.time()) + _TOKEN_LIFETIME}
        return {
            "access_token": jwt.encode(claims, _SIGNING_KEY, algorithm="HS256"),
            "token_type": "bearer",
        }

    @app.get("/users/me/")
    async def me(username: Annotated[str, Depends(current_user)]) -> Dict[str, Any]:
        account = _ACCOUNTS[username]
        return {"username": username, "email": account["email"], "full_name": account["name"]}

    @app.get("/users/me/items/")
    async def my_items(
        background: BackgroundTasks, username: Annotated[str, Depends(current_user)]
    ) -> List[Dict[str, str]]:
        items = [{"item_id": "Foo", "owner": username}]
        analytics_core.track(event="Items Listed", properties={"count": len(items)})
        # Runs after the response was sent, still inside the request's context.
        background.add_task(analytics_core.track, event="Items Exported")
        return items

    app.add_middleware(SegmentMiddleware, **middleware_options)
    return app
