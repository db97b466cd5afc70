"""Who the request is about: the default ``user_id_from_scope``."""

import logging
from typing import Any, Callable, Optional

from .asgi_types import Scope

__all__ = ["UserIdFromScope", "normalize_user_id", "user_id_from_scope_user"]

logger = logging.getLogger("segment")

UserIdFromScope = Callable[[Scope], Optional[Any]]
"""Given the request's ASGI scope, the authenticated user's id (or None)."""

# Where the common user objects keep their id: Starlette's BaseUser.identity, then the usual
# ORM primary keys (SQLAlchemy / Tortoise / Pydantic models: id; Django-style models: pk).
_ID_ATTRIBUTES = ("identity", "id", "pk")


def normalize_user_id(value: Any) -> Optional[str]:
    """``value`` as a Segment user id: a non-empty string, or None.

    Numbers and UUIDs become their text; booleans and empty strings are not ids.
    """
    if value is None or isinstance(value, bool):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def user_id_from_scope_user(scope: Scope) -> Optional[str]:
    """The id of ``scope["user"]`` as Starlette's ``AuthenticationMiddleware`` leaves it.

    None when there is no user, or when it says it is not authenticated (Starlette's
    ``UnauthenticatedUser``); otherwise its ``identity``, ``id`` or ``pk``, the first one that
    is set (Starlette's ``SimpleUser`` gives its username as its identity). For any other
    shape, pass your own ``user_id_from_scope``.
    """
    user = scope.get("user")
    if user is None:
        return None
    try:
        if not getattr(user, "is_authenticated", True):
            return None
    except Exception:  # a user object whose property raises is nobody we can name
        return None
    for name in _ID_ATTRIBUTES:
        try:
            # BaseUser.identity raises NotImplementedError unless the app's user class defines it.
            value = getattr(user, name)
        except Exception:
            continue
        user_id = normalize_user_id(value)
        if user_id is not None:
            return user_id
    if _is_starlette_simple_user(user):
        # Starlette's SimpleUser has no identity before Starlette 1.7 (its identity is then
        # NotImplementedError): the username, which is what it gives as its identity since.
        return normalize_user_id(getattr(user, "username", None))
    return None


def _is_starlette_simple_user(user: Any) -> bool:
    """Whether ``user`` is Starlette's own ``SimpleUser`` (a subclass may mean otherwise)."""
    kind = type(user)
    return kind.__name__ == "SimpleUser" and kind.__module__ == "starlette.authentication"
