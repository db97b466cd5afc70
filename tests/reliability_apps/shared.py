"""What both reliability apps do: configure analytics_core from the environment (on import),
and answer a request path.

``RELIABILITY_WRITE_KEY``, ``RELIABILITY_COLLECTOR_URL`` and ``RELIABILITY_RUN`` (the anonymous
id of every event, so a test finds its own). Nothing is sent before the server stops: the upload
interval is a minute and a batch holds 1,000 events.
"""

import json
import os

import analytics_core

analytics_core.write_key = os.environ["RELIABILITY_WRITE_KEY"]
analytics_core.host = os.environ["RELIABILITY_COLLECTOR_URL"]
analytics_core.upload_interval = 60
analytics_core.upload_size = 1000
RUN = os.environ["RELIABILITY_RUN"]


def answer(path: str) -> bytes:
    """``/track/<n>``: track event n and say which process did; anything else: the pid."""
    if path.startswith("/track/"):
        number = int(path.rsplit("/", 1)[1])
        ok, _ = analytics_core.track(
            anonymous_id=RUN, event="Request", properties={"number": number, "pid": os.getpid()}
        )
        return json.dumps({"ok": ok, "pid": os.getpid()}).encode()
    return str(os.getpid()).encode()
