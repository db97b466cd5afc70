"""The tea shop's FastAPI app. Run it with ``uvicorn tea_api.app:app`` (see the README).

The analytics set-up is the one ``app.add_middleware(SegmentMiddleware, ...)`` line below. The
endpoints then call ``analytics.track(...)`` with no user id and no context: the middleware puts
the request's (IP, user agent, page, the browser's anonymous id, the logged-in user) in place,
and delivers the queue when uvicorn shuts the app down.

Two kinds of clients: the HTML shop logs in with a session cookie (``/login``), and the API
(``/api/...``) takes an OAuth2 bearer token from ``/token``, checked by a FastAPI dependency,
``get_current_user``, the pattern of FastAPI's security tutorial.
"""

import uuid
from decimal import Decimal
from typing import Annotated, Any, Dict

from analytics_asgi import SegmentMiddleware
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from starlette.middleware.authentication import AuthenticationMiddleware

import analytics_core as analytics

from . import config
from .auth import COOKIE, Account, SessionCookieBackend, account_for, check_password, signed_id
from .pages import HOME

CATALOGUE = {
    "TEA-01": {"name": "Sencha green tea", "price": Decimal("7.50")},
    "MUG-02": {"name": "Stoneware mug", "price": Decimal("12.00")},
    "POT-03": {"name": "Cast-iron teapot", "price": Decimal("39.90")},
}
CURRENCY = "EUR"

app = FastAPI(title="Tea shop")
app.add_middleware(AuthenticationMiddleware, backend=SessionCookieBackend())
# Added last, so it is the outermost middleware: it sees every request, and the user the
# authentication middleware finds is read when an event is built.
app.add_middleware(
    SegmentMiddleware,
    write_key=config.WRITE_KEY,
    host=config.HOST,
    trusted_proxies=config.TRUSTED_PROXIES,
    pageviews=True,  # a `page` event for every HTML page served
    # On by default: a visitor without the cookie gets one the first time a call needs an id.
    # False keeps that id to the request (for a site that asks consent before such cookies).
    anonymous_id_cookie=True,
    debug=config.DEBUG,
)

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> Account:
    """The API's authentication: the account the bearer token belongs to."""
    account = account_for(token)
    if account is None:
        raise HTTPException(
            status_code=401, detail="invalid token", headers={"WWW-Authenticate": "Bearer"}
        )
    # The middleware cannot see who a dependency authenticated: tell it, so that every event
    # of this request (the endpoint's, and those of the code it calls) carries the user id.
    analytics.set_user_id(account.id)
    return account


class Login(BaseModel):
    username: str
    password: str


class Order(BaseModel):
    sku: str
    quantity: int = Field(1, ge=1, le=99)


@app.get("/", response_class=HTMLResponse, name="home")
async def home() -> str:
    """The catalogue; its page view is recorded by ``pageviews=True``."""
    return HOME


@app.post("/login")
async def login(form: Login) -> JSONResponse:
    """Log in: identify the customer and track "Signed In"."""
    account = check_password(form.username, form.password)
    if account is None:
        raise HTTPException(status_code=401, detail="wrong username or password")
    # The user id is passed: the session cookie set below logs in the next requests only. The
    # identify also carries the browser's anonymous id, which ties the visit so far to the
    # user, and makes the user the request's for the calls after it (the track below).
    analytics.identify(account.id, {"username": account.username, "email": account.email})
    analytics.track(event="Signed In")
    response = JSONResponse({"user": account.username})
    response.set_cookie(COOKIE, signed_id(account), httponly=True, samesite="lax")
    return response


@app.post("/logout")
async def logout() -> JSONResponse:
    """Log out: forget the session cookie."""
    response = JSONResponse({"user": None})
    response.delete_cookie(COOKIE)
    return response


@app.post("/orders")
async def place_order(order: Order, request: Request) -> Dict[str, Any]:
    """Place an order from the HTML shop (the session cookie's customer)."""
    if not request.user.is_authenticated:
        raise HTTPException(status_code=401, detail="log in first")
    return record_order(order)


@app.post("/token")
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Dict[str, str]:
    """The API's bearer token, for the OAuth2 password form (username and password), as
    FastAPI's documentation has it."""
    account = check_password(form.username, form.password)
    if account is None:
        raise HTTPException(status_code=401, detail="wrong username or password")
    return {"access_token": signed_id(account), "token_type": "bearer"}


@app.post("/api/orders")
async def api_order(
    order: Order, account: Annotated[Account, Depends(get_current_user)]
) -> Dict[str, Any]:
    """Place an order from a script or an app (the bearer token's customer)."""
    return {"customer": account.username, **record_order(order)}


def record_order(order: Order) -> Dict[str, Any]:
    """Track "Order Completed" (Segment's e-commerce spec); the order's summary."""
    product = CATALOGUE.get(order.sku)
    if product is None:
        raise HTTPException(status_code=404, detail="no such product")
    order_id = uuid.uuid4().hex[:12]
    total = product["price"] * order.quantity
    analytics.track(
        event="Order Completed",
        properties={
            "order_id": order_id,
            "revenue": total,  # Decimal: analytics_core sends it as a number
            "currency": CURRENCY,
            "products": [
                {
                    "product_id": order.sku,
                    "sku": order.sku,
                    "name": product["name"],
                    "price": product["price"],
                    "quantity": order.quantity,
                }
            ],
        },
    )
    return {"order_id": order_id, "total": str(total), "currency": CURRENCY}


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    """For load balancers (not HTML: no page view)."""
    return "ok"
