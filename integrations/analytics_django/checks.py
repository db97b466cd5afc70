"""System checks (``manage.py check``) for ``settings.ANALYTICS``.

- ``analytics_django.E001``: SEND is on but there is no WRITE_KEY.
- ``analytics_django.E002``: an unknown key (the closest known name is suggested).
- ``analytics_django.E003``: a value of the wrong type (the key and the expected type are named).
- ``analytics_django.E004``: ON_ERROR is a dotted path that does not import.
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


def _on_error_import(path: str) -> List[CheckMessage]:
    try:
        import_string(path)
    except ImportError as error:
        return [
            Error(
                f"settings.ANALYTICS['ON_ERROR'] = {path!r} could not be imported: {error}",
                hint="Give the dotted path of a callable (`package.module.function`), "
                "or the callable itself.",
                id="analytics_django.E004",
            )
        ]
    return []


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> List[CheckMessage]:
    """Report every problem in ``settings.ANALYTICS`` at once."""
    value = user_config()
    messages: List[CheckMessage] = []
    for key, expected, got in config_errors(value):
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
    on_error = config["ON_ERROR"]
    if isinstance(on_error, str):
        messages += _on_error_import(on_error)
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
