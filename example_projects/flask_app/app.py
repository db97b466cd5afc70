"""A small Flask shop with Segment analytics; ``Analytics(app)`` is the whole set-up.

Run it from this directory with ``flask run`` (see README.md). Every page view, every sign-in and
every order is sent, with the visitor's ids, ip, user agent and page filled in.

Sign-in is Flask's own session, as in Flask's tutorial (flaskr): ``session["user_id"]``. The
extension cannot guess that key, so ``ANALYTICS_USER_ID`` tells it where the user id is.
"""

import os
import uuid

from analytics_flask import Analytics
from flask import Flask, abort, redirect, render_template_string, request, session, url_for

import analytics_core as analytics


def signed_in_user_id(request):
    """``ANALYTICS_USER_ID``: the user id of ``request``'s events (None: not signed in).

    Called while the request is handled, so Flask's ``session`` is that request's."""
    return session.get("user_id")


app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-secret"),
    ANALYTICS_WRITE_KEY=os.environ.get("ANALYTICS_WRITE_KEY", "flask-example-key"),
    # The local collector, `python -m analytics_core.collector`; its page lists what arrived.
    ANALYTICS_HOST=os.environ.get("ANALYTICS_HOST", "http://127.0.0.1:8086"),
    ANALYTICS_PAGEVIEWS=True,  # a page call for every HTML page served
    ANALYTICS_USER_ID=signed_in_user_id,
    # On by default: a visitor without the cookie gets one the first time a call needs an id.
    # False keeps that id to the request (for a site that asks consent before such cookies).
    ANALYTICS_ANONYMOUS_ID_COOKIE=True,
)
Analytics(app)

# A real shop has a database. The id is the user's for life: it is the Segment userId.
USERS = {
    "ada": {"id": "user-1", "email": "ada@example.com", "name": "Ada Lovelace"},
    "grace": {"id": "user-2", "email": "grace@example.com", "name": "Grace Hopper"},
}


def signed_in_user():
    """The signed-in user, or None."""
    user_id = session.get("user_id")
    return next((user for user in USERS.values() if user["id"] == user_id), None)


PAGE = """<!doctype html>
<title>Flask shop</title>
<h1>Flask shop</h1>
{% if user %}
  <p>Signed in as {{ user.name }}.</p>
  <form method="post" action="{{ url_for('order') }}">
    <input name="product" value="Rubber duck"> <input name="price" value="9.5">
    <button>Buy</button>
  </form>
  <form method="post" action="{{ url_for('logout') }}"><button>Sign out</button></form>
{% else %}
  <form method="post" action="{{ url_for('login') }}">
    <input name="username" placeholder="ada or grace"> <button>Sign in</button>
  </form>
{% endif %}
{% if order %}<p>Thank you for order {{ order }}.</p>{% endif %}
"""


@app.get("/")
def home():
    """The shop's only page."""
    return render_template_string(PAGE, user=signed_in_user(), order=request.args.get("order"))


@app.post("/login")
def login():
    """Sign in by user name (no passwords in this demo)."""
    user = USERS.get(request.form.get("username", ""))
    if user is None:
        return render_template_string(PAGE, user=None, order=None), 401
    session.clear()
    session["user_id"] = user["id"]
    # The identify has the user id and the anonymous id of the visit so far (the browser's
    # ajs_anonymous_id cookie): that pair is how Segment joins the visit to the user.
    analytics.identify(user["id"], {"email": user["email"], "name": user["name"]})
    return redirect(url_for("home"))


@app.post("/logout")
def logout():
    """Sign out."""
    session.clear()
    return redirect(url_for("home"))


@app.post("/orders")
def order():
    """Place an order and track it."""
    if signed_in_user() is None:
        abort(401)
    order_id = uuid.uuid4().hex[:8]
    # Segment's API, no user id and no context: the extension knows who and where.
    analytics.track(
        event="Order Completed",
        properties={
            "order_id": order_id,
            "products": [{"name": request.form.get("product", "Rubber duck")}],
            "total": float(request.form.get("price", "9.5")),
            "currency": "EUR",
        },
    )
    return redirect(url_for("home", order=order_id))
