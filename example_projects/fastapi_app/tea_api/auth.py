"""A signed session cookie and the Starlette authentication backend that reads it.

Deliberately tiny (a demo, not a session framework): the cookie holds the user's id and an
HMAC of it, so a visitor cannot claim to be someone else. AuthenticationMiddleware puts the user
in ``scope["user"]``, where analytics_asgi finds the user id of every event.
"""

import hashlib
import hmac
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.requests import HTTPConnection

from . import config

COOKIE = "tea_session"

Credentials = Tuple[AuthCredentials, BaseUser]


@dataclass(frozen=True)
class Account:
    """A customer of the shop."""

    id: str
    username: str
    email: str
    password: str


ACCOUNTS: Dict[str, Account] = {
    "alice": Account("user-1001", "alice", "alice@example.com", "green-tea"),
    "bob": Account("user-1002", "bob", "bob@example.com", "oolong"),
}


class Customer(BaseUser):
    """The logged-in customer; ``identity`` is the id analytics_asgi puts in ``userId``."""

    def __init__(self, account: Account) -> None:
        self.account = account

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.account.username

    @property
    def identity(self) -> str:
        return self.account.id


def check_password(username: str, password: str) -> Optional[Account]:
    """The account if the password is right, else None."""
    account = ACCOUNTS.get(username)
    if account is None or not hmac.compare_digest(account.password, password):
        return None
    return account


def _signature(user_id: str) -> str:
    return hmac.new(config.SECRET.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def session_cookie(account: Account) -> str:
    """The cookie value that logs ``account`` in."""
    return f"{account.id}.{_signature(account.id)}"


class SessionCookieBackend(AuthenticationBackend):
    """Authenticates a request by its signed session cookie."""

    async def authenticate(self, conn: HTTPConnection) -> Optional[Credentials]:
        user_id, _, signature = conn.cookies.get(COOKIE, "").rpartition(".")
        if not user_id or not hmac.compare_digest(signature, _signature(user_id)):
            return None
        account = next((a for a in ACCOUNTS.values() if a.id == user_id), None)
        if account is None:
            return None
        return AuthCredentials(["authenticated"]), Customer(account)
