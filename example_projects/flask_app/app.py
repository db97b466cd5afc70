"""A small Flask shop with Segment analytics; ``Analytics(app)`` is the whole set-up.

Run it from this directory with ``flask run`` (see README.md). Every page view, every sign-in and
every order is sent, with the visitor's ip, user agent, page and user id filled in.
"""

import os
import uuid

from analytics_flask import Analytics
from flask import Flask, redirect, render_template_string, request, url_for
from flask_login import LoginManager, UserMixin, login_required, login_user, logout_user

import analytics_core as analytics

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-secret"),
    ANALYTICS_WRITE_KEY=os.environ.get("ANALYTICS_WRITE_KEY", "flask-example-key"),
    # The local collector, `python -m analytics_core.collector`; its page lists what arrived.
    ANALYTICS_HOST=os.environ.get("ANALYTICS_HOST", "http://127.0.0.1:8086"),
    ANALYTICS_PAGEVIEWS=True,  # a page call for every HTML page served
    ANALYTICS_IDENTIFY_ON_LOGIN=True,  # an identify call when Flask-Login signs a user in
)
login_manager = LoginManager(app)
Analytics(app)


class User(UserMixin):
    """A customer; ``email`` and ``name`` become the traits of the identify call."""

    def __init__(self, user_id: str, email: str, name: str) -> None:
        self.id = user_id
        self.email = email
        self.name = name


# A real shop has a database.
USERS = {
    "ada": User("user-1", "ada@example.com", "Ada Lovelace"),
    "grace": User("user-2", "grace@example.com", "Grace Hopper"),
}


@login_manager.user_loader
def load_user(user_id: str):
    """Flask-Login's user loader."""
    return next((user for user in USERS.values() if user.id == user_id), None)


PAGE = """<!doctype html>
<title>Flask shop</title>
<h1>Flask shop</h1>
{% if current_user.is_authenticated %}
  <p>Signed in as {{ current_user.name }}.</p>
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
    return render_template_string(PAGE, order=request.args.get("order"))


@app.post("/login")
def login():
    """Sign in by user name (no passwords in this demo)."""
    user = USERS.get(request.form.get("username", ""))
    if user is None:
        return render_template_string(PAGE, order=None), 401
    login_user(user)
    return redirect(url_for("home"))


@app.post("/logout")
def logout():
    """Sign out."""
    logout_user()
    return redirect(url_for("home"))


@app.post("/orders")
@login_required
def order():
    """Place an order and track it."""
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
