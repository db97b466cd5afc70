"""What every job process of the tests does: configure analytics_core from the environment (on
import, so that a spawned child configures itself the same way), track, and leave a trace.

- ``JOBS_HOST``: the collector (a closed port to make delivery fail);
- ``JOBS_ERRORS``: a file where ``on_error`` appends one line per message it was given;
- ``JOBS_DONE``: a file where each job appends ``<pid> <index> <accepted> <user>`` once it
  has tracked.

Nothing leaves before the process ends: the upload interval is a minute and a batch holds
1,000 events, so what arrives was delivered by the exit hooks under test. ``max_retries=0``:
with the collector down, delivery fails (and reaches ``on_error``) at once.
"""

import os
from typing import Any, Dict, List, Optional

import analytics_core
from tests.job_apps.constants import APIS, WRITE_KEY

__all__ = ["APIS", "WRITE_KEY", "client", "record_error", "track"]


def record_error(error: BaseException, items: List[Dict[str, Any]]) -> None:
    """on_error: one line per message, ``<userId> <index> <messageId> <error type>``."""
    lines = "".join(
        f"{item.get('userId')} {item.get('properties', {}).get('index')} "
        f"{item.get('messageId')} {type(error).__name__}\n"
        for item in items
    )
    _append("JOBS_ERRORS", lines)


SETTINGS: Dict[str, Any] = {
    "host": os.environ.get("JOBS_HOST"),
    "upload_interval": 60,
    "upload_size": 1000,
    "max_retries": 0,
    "timeout": 5,
    "on_error": record_error,
}
if os.environ.get("JOBS_PERSIST"):  # the spool's path
    SETTINGS["persist"] = os.environ["JOBS_PERSIST"]
analytics_core.write_key = WRITE_KEY
for _name, _value in SETTINGS.items():
    setattr(analytics_core, _name, _value)

_client: Optional[analytics_core.Client] = None


def client(api: str = "module") -> Any:
    """What the jobs call: the module-level API (``module``: ``analytics_core.track``), or this
    process's own Client (``client``, made on first use)."""
    global _client
    if api == "module":
        return analytics_core
    if _client is None:
        _client = analytics_core.Client(WRITE_KEY, shutdown_timeout=5, **SETTINGS)
    return _client


def track(user: str, event: str, index: int, api: str = "module") -> bool:
    """Track one event through ``api`` and note it in the done file; whether the call
    accepted it."""
    ok, _ = client(api).track(user, event, {"index": index, "pid": os.getpid()})
    _append("JOBS_DONE", f"{os.getpid()} {index} {ok} {user}\n")
    return ok


def _append(variable: str, text: str) -> None:
    path = os.environ.get(variable)
    if path and text:
        # One write() of a short line on an O_APPEND file: lines of concurrent processes
        # never interleave.
        with open(path, "a", encoding="utf-8") as file:
            file.write(text)
