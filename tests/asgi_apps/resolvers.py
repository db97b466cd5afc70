"""A ``user_id_from_scope`` the identity tests name by its dotted path, as a settings file would."""

from typing import Optional


def user_id_from_api_key(scope) -> Optional[str]:
    """The user an ``X-Api-Key: key-<user>`` header names (an app's own scheme)."""
    for name, value in scope.get("headers") or ():
        if name == b"x-api-key" and value.startswith(b"key-"):
            return value[4:].decode("latin-1")
    return None
