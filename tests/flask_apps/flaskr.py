"""A blog written for these tests in the shape of Flask's tutorial app (flaskr), which was where
the first visitor got an HTTP 500: an application factory, ``auth`` and ``blog`` blueprints, and
a login of its own in the session (``session["user_id"]``, the user put in ``g.user`` before
each request), no Flask-Login. Analytics is added the README's way: one module-level
``Analytics()``, ``init_app`` in the factory, calls with no ids in the views.

Written here, not copied: the real flaskr lives in Flask's source distribution, and the
third-party trial ran it as it is. Its store is a dict: these tests are about the requests.
"""

import itertools
from typing import Any, Dict, Optional

from analytics_flask import Analytics
from flask import Blueprint, Flask, abort, current_app, g, redirect, request, session, url_for

import analytics_core

analytics = Analytics()

auth = Blueprint("auth", __name__, url_prefix="/auth")
blog = Blueprint("blog", __name__)

_FORM = "<!doctype html><title>{title}</title><form method=post></form>"


def user_id_from_session(request: Any) -> Optional[int]:
    """``ANALYTICS_USER_ID`` as a dotted path: the app keeps the user's id in the session."""
    return session.get("user_id")


def user_id_from_g(request: Any) -> Optional[str]:
    """``ANALYTICS_USER_ID`` reading the user the app put in ``g`` (its username)."""
    user = g.get("user")
    return None if user is None else user["username"]


def create_app(**config: Any) -> Flask:
    """The factory; ``config`` is the test's (``ANALYTICS_*`` keys among them)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="dev", ANALYTICS_WRITE_KEY="flaskr-key")
    app.config.update(config)
    app.extensions["flaskr_db"] = {"users": {}, "posts": {}, "ids": itertools.count(1)}
    analytics.init_app(app)
    app.register_blueprint(auth)
    app.register_blueprint(blog)
    return app


def _store() -> Dict[str, Any]:
    return current_app.extensions["flaskr_db"]


def _user_named(username: str) -> Optional[Dict[str, Any]]:
    return next((u for u in _store()["users"].values() if u["username"] == username), None)


@auth.before_app_request
def _remember_who_is_logged_in() -> None:
    # Before every request of the app: the user of the session, or nobody.
    g.user = _store()["users"].get(session.get("user_id"))


@blog.before_request
def _writing_needs_a_login() -> Any:
    if request.endpoint != "blog.index" and g.user is None:
        return redirect(url_for("auth.login"))
    return None


@auth.route("/register", methods=("GET", "POST"))
def register() -> Any:
    if request.method == "GET":
        return _FORM.format(title="Register")
    username = request.form["username"]
    if _user_named(username) is None:
        user_id = next(_store()["ids"])
        _store()["users"][user_id] = {"id": user_id, "username": username}
        # The account exists by now: before issue 11 this call answered a first visitor with
        # a 500, after the account was created.
        analytics_core.track(event="Signed Up", properties={"username": username})
    return redirect(url_for("auth.login"))


@auth.route("/login", methods=("GET", "POST"))
def login() -> Any:
    if request.method == "GET":
        return _FORM.format(title="Log In")
    user = _user_named(request.form["username"])
    if user is None:
        abort(401)
    session.clear()
    session["user_id"] = user["id"]
    # g.user was read before the login: in this request it still says nobody.
    analytics_core.track(event="Logged In")
    return redirect(url_for("blog.index"))


@auth.route("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("blog.index"))


@blog.route("/")
def index() -> str:
    titles = "".join(f"<h2>{post['title']}</h2>" for post in _store()["posts"].values())
    return f"<!doctype html><title>Posts</title>{titles}"


@blog.route("/create", methods=("GET", "POST"))
def create() -> Any:
    if request.method == "GET":
        return _FORM.format(title="New Post")
    post_id = next(_store()["ids"])
    _store()["posts"][post_id] = {"id": post_id, "title": request.form["title"]}
    analytics.track(event="Post Created", properties={"post_id": post_id})
    return redirect(url_for("blog.index"))


@blog.route("/<int:id>/update", methods=("GET", "POST"))
def update(id: int) -> Any:
    post = _store()["posts"].get(id)
    if post is None:
        abort(404)
    if request.method == "GET":
        return _FORM.format(title="Edit Post")
    post["title"] = request.form["title"]
    # Naming the user explicitly, as a view may: the visitor's anonymous id stays on it.
    analytics_core.track(
        user_id=str(g.user["id"]), event="Post Updated", properties={"post_id": id}
    )
    return redirect(url_for("blog.index"))
