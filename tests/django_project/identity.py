"""``ANALYTICS["USER_ID"]`` resolvers, named by their dotted paths in the tests: the shapes a
project with authentication of its own would write."""

from typing import Optional

from django.http import HttpRequest


def member_id(request: HttpRequest) -> Optional[str]:
    """A custom login that keeps the member's id in the session (views.member_login)."""
    return request.session.get("member_id")


def member_from_header(request: HttpRequest) -> Optional[str]:
    """An API gateway that authenticated the caller and says who it is in a header."""
    return request.headers.get("X-Member-Id")


def username(request: HttpRequest) -> Optional[str]:
    """The username rather than the primary key."""
    user = request.user
    return user.get_username() if user.is_authenticated else None


def broken(request: HttpRequest) -> Optional[str]:
    """A resolver with a bug."""
    raise KeyError("member_id")


def member_from_database(request: HttpRequest) -> Optional[str]:
    """A resolver that queries the database (an API token looked up in a table): in an async
    view it must not be called in the event loop, where Django forbids synchronous queries."""
    from django.contrib.auth import get_user_model

    name = request.headers.get("X-Member-Name")
    if not name:
        return None
    pk = get_user_model().objects.filter(username=name).values_list("pk", flat=True).first()
    return None if pk is None else f"db-{pk}"


NOT_CALLABLE = "a string where a function was meant"
