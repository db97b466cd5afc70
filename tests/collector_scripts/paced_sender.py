"""One client process of the collector load test: track events at a steady rate, then flush.

``python paced_sender.py HOST NAME RATE SECONDS MODE``; MODE is ``batched`` (the default
uploader thread, small batches) or ``sync`` (``sync_mode``: one request per event on this
thread). Events are scheduled at fixed times (start + i / RATE), so a late call does not lower
the rate that follows. Prints one JSON line: the message ids accepted, how long sending took,
and what ``on_error`` saw.
"""

import json
import sys
import time

import analytics_core


def main() -> int:
    host, name, rate, seconds, mode = sys.argv[1:6]
    rate_per_s, duration = float(rate), float(seconds)
    errors = []
    client = analytics_core.Client(
        f"wk-load-{name}",
        host=host,
        sync_mode=mode == "sync",
        upload_size=20,
        upload_interval=0.05,
        on_error=lambda error, items: errors.append(f"{error!r} ({len(items)} items)"),
    )
    total = int(rate_per_s * duration)
    sent = []
    started = time.monotonic()
    for index in range(total):
        pause = started + index / rate_per_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        ok, message = client.track(f"{name}-user-{index % 50}", "Load", {"i": index})
        if ok:
            sent.append(message["messageId"])
    offered_s = time.monotonic() - started
    delivered = client.flush(timeout=60)
    client.shutdown(timeout=5)
    print(
        json.dumps(
            {
                "name": name,
                "sent": sent,
                "total": total,
                "offered_s": offered_s,
                "flushed": delivered,
                "errors": errors,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
