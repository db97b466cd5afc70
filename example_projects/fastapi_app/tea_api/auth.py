"""The shop's two ways to log in, both resting on one signed value.

Deliberately tiny (a demo, not a session framework): a customer's id and an HMAC of it, so a
visitor cannot claim to be someone else. The HTML shop keeps it in a session cookie, read by
Starlette's AuthenticationMiddleware, which puts the user in ``scope["user"]`` (where
analytics_asgi finds the user id by itself); the API takes it as an OAuth2 bearer token
(``get_current_user`` in app.py, which tells analytics_asgi who the user is).
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
    # Bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 401).
    if account is None or not hmac.compare_digest(account.password.encode(), password.encode()):
        return None
    return account


def _signature(user_id: str) -> str:
    return hmac.new(config.SECRET.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def signed_id(account: Account) -> str:
    """The value that logs ``account`` in: the session cookie's, and the API's bearer token."""
    return f"{account.id}.{_signature(account.id)}"


def account_for(signed: str) -> Optional[Account]:
    """The account a :func:`signed_id` value belongs to; None if it is not one."""
    user_id, _, signature = signed.rpartition(".")
    if not user_id or not hmac.compare_digest(signature.encode(), _signature(user_id).encode()):
        return None
    return next((a for a in ACCOUNTS.values() if a.id == user_id), None)


class SessionCookieBackend(AuthenticationBackend):
    """Authenticates a request by its signed session cookie."""

    async def authenticate(self, conn: HTTPConnection) -> Optional[Credentials]:
        account = account_for(conn.cookies.get(COOKIE, ""))
        if account is None:
            return None
        return AuthCredentials(["authenticated"]), Customer(account)
