"""Exceptions raised or reported by analytics_core."""

from typing import Any, Optional


class ValidationError(ValueError, AssertionError):
    """A call was made with bad arguments; the message names the offending field.

    A ``ValueError``, and also an ``AssertionError``: analytics-python checks its arguments with
    ``assert``-style checks, so code written for it catches ``AssertionError``.
    """


class UnknownArgumentError(ValidationError, TypeError):
    """A call got a keyword it does not take. Also a ``TypeError``, as Python raises for an
    unexpected keyword (and analytics-python therefore does)."""


class APIError(Exception):
    """The tracking API (or the OAuth token endpoint) answered with an error.

    ``status`` is the HTTP status, ``code`` the API's error code (or a short word of ours such as
    ``"retries-exhausted"``) and ``message`` the API's explanation. ``response`` is there for
    code written for analytics-python; the errors this library raises leave it None, since a
    response holds the request and with it the write key.
    """

    def __init__(
        self, status: Optional[int], code: str, message: str, response: Any = None
    ) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.response = response

    def __str__(self) -> str:
        return f"[{self.code}] {self.message} (status {self.status})"


class OAuthError(APIError):
    """The OAuth token exchange failed."""


class QueueFullError(Exception):
    """The in-memory queue had no room for a message (reported through on_error)."""


class MessageTooLargeError(ValueError):
    """A single message encodes to 32 KB or more (reported through on_error)."""


class SpoolError(Exception):
    """The ``persist=`` spool cannot be used; the message names the path and says why.

    Defined here rather than in :mod:`analytics_core.spool` (which re-exports it), so that code
    catching it need not import the spool's modules (sqlite3 among them)."""
