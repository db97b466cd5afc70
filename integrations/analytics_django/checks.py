"""System checks (``manage.py check``) for ``settings.ANALYTICS``.

- ``analytics_django.E001``: SEND is on but there is no WRITE_KEY.
- ``analytics_django.E002``: an unknown key (the closest known name is suggested).
- ``analytics_django.E003``: a value of the wrong type (the key and the expected type are named).
- ``analytics_django.E004``: ON_ERROR or USER_ID is a dotted path that does not import, or
  imports something that is not callable.
- ``analytics_django.E005``: the client could not be built for another reason.
"""

import difflib
from typing import Any, List, Mapping

from django.core.checks import CheckMessage, Error, register
from django.utils.module_loading import import_string

from .configure import last_error
from .settings import CONFIG_DEFAULTS, config_errors, get_config, user_config

__all__ = ["check_settings"]


def _unknown_keys(value: Any) -> List[CheckMessage]:
    messages = []
    for key in value:
        if key in CONFIG_DEFAULTS:
            continue
        close = difflib.get_close_matches(str(key).upper(), list(CONFIG_DEFAULTS), n=1)
        hint = f"Did you mean {close[0]!r}?" if close else None
        messages.append(
            Error(
                f"Unknown key {key!r} in settings.ANALYTICS.",
                hint=(hint + " " if hint else "")
                + f"Known keys: {', '.join(sorted(CONFIG_DEFAULTS))}.",
                id="analytics_django.E002",
            )
        )
    return messages


def _dotted_path_import(key: str, path: str) -> List[CheckMessage]:
    hint = "Give the dotted path of a callable (`package.module.function`), or the callable itself."
    try:
        imported = import_string(path)
    except ImportError as error:
        problem = f"could not be imported: {error}"
    else:
        if callable(imported):
            return []
        # It imports, but calling it would fail on every request (USER_ID) or error (ON_ERROR).
        problem = f"is not callable: it is a {type(imported).__name__}"
    return [
        Error(
            f"settings.ANALYTICS[{key!r}] = {path!r} {problem}",
            hint=hint,
            id="analytics_django.E004",
        )
    ]


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> List[CheckMessage]:
    """Report every problem in ``settings.ANALYTICS`` at once."""
    value = user_config()
    messages: List[CheckMessage] = []
    errors = config_errors(value)
    for key, expected, got in errors:
        where = "settings.ANALYTICS" if key == "ANALYTICS" else f"settings.ANALYTICS[{key!r}]"
        messages.append(
            Error(
                f"{where} must be {expected}; got {got!r} ({type(got).__name__}).",
                hint=f"Set {key} to {expected}.",
                id="analytics_django.E003",
            )
        )
    if not isinstance(value, Mapping):
        return messages
    messages += _unknown_keys(value)
    config = get_config()
    if config["SEND"] is True and not config["WRITE_KEY"]:
        messages.append(
            Error(
                "settings.ANALYTICS has SEND on but no WRITE_KEY, so nothing can be delivered.",
                hint="Set ANALYTICS['WRITE_KEY'] to your Segment source's write key (for example "
                "from an environment variable), or set ANALYTICS['SEND'] = False.",
                id="analytics_django.E001",
            )
        )
    wrong_type = {key for key, _, _ in errors}
    for key in ("ON_ERROR", "USER_ID"):
        # A value already reported as the wrong type (USER_ID = "") is reported once.
        if isinstance(config[key], str) and key not in wrong_type:
            messages += _dotted_path_import(key, config[key])
    error = last_error()
    if not messages and error is not None:
        messages.append(
            Error(
                f"The analytics client could not be built from settings.ANALYTICS: {error}",
                hint="Fix the setting named in the error; until then nothing is sent.",
                id="analytics_django.E005",
            )
        )
    return messages
