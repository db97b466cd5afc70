"""The tea shop's FastAPI app. Run it with ``uvicorn tea_api.app:app`` (see the README).

The analytics set-up is the one ``app.add_middleware(SegmentMiddleware, ...)`` line below. The
endpoints then call ``analytics.track(...)`` with no user id and no context: the middleware put
the request's (IP, user agent, page, the ``ajs_anonymous_id`` cookie, the logged-in user) in
place, and delivers the queue when uvicorn shuts the app down.
"""

import uuid
from decimal import Decimal

from analytics_asgi import SegmentMiddleware
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.middleware.authentication import AuthenticationMiddleware

import analytics_core as analytics

from . import config
from .auth import COOKIE, Customer, SessionCookieBackend, check_password, session_cookie
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
    debug=config.DEBUG,
)


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
async def login(form: Login, request: Request) -> JSONResponse:
    """Log in: identify the customer and track "Signed In"."""
    account = check_password(form.username, form.password)
    if account is None:
        raise HTTPException(status_code=401, detail="wrong username or password")
    # The customer is logged in from now on, in this request too: the events below get the
    # user id and still the browser's anonymous id, which ties the visit so far to the user.
    request.scope["user"] = Customer(account)
    analytics.identify(traits={"username": account.username, "email": account.email})
    analytics.track(event="Signed In")
    response = JSONResponse({"user": account.username})
    response.set_cookie(COOKIE, session_cookie(account), httponly=True, samesite="lax")
    return response


@app.post("/logout")
async def logout() -> JSONResponse:
    """Log out: forget the session cookie."""
    response = JSONResponse({"user": None})
    response.delete_cookie(COOKIE)
    return response


@app.post("/orders")
async def place_order(order: Order, request: Request) -> dict:
    """Place an order and track "Order Completed" (Segment's e-commerce spec)."""
    if not request.user.is_authenticated:
        raise HTTPException(status_code=401, detail="log in first")
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
