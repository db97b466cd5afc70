"""The embedded default: a local collector on 127.0.0.1, every call type sent, what arrived shown.

Run with ``make demo`` or ``python -m analytics_core.demo``. No Segment account is needed.
"""

import argparse
import datetime
import json
import sys
from typing import List, Optional

import analytics_core as analytics
from analytics_core.collector import Collector


def send_every_call(url: str) -> int:
    """Send one message of each of the six types through the module-level API; return how many."""
    analytics.write_key = "demo-write-key"
    analytics.host = url
    analytics.on_error = lambda error, items: print(f"on_error: {error} ({len(items)} messages)")
    when = datetime.datetime.now(datetime.timezone.utc)
    analytics.identify("user-42", {"email": "ada@example.com", "plan": "pro"})
    analytics.track(
        "user-42", "Order Completed", {"order_id": "o-1", "revenue": 99.5}, timestamp=when
    )
    analytics.page("user-42", "Docs", "Quickstart", {"url": "https://example.com/docs/quickstart"})
    analytics.screen("user-42", "Settings", "Notifications", {"platform": "ios"})
    analytics.group("user-42", "company-7", {"name": "Initech", "employees": 120})
    analytics.alias("anonymous-visitor-9", "user-42")
    analytics.flush()
    return 6


def main(argv: Optional[List[str]] = None) -> int:
    """Start the collector, send the messages, print them as the collector stored them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="collector port (default: a free one)")
    args = parser.parse_args(argv)
    with Collector(host="127.0.0.1", port=args.port) as collector:
        print(f"local collector listening on {collector.url}")
        sent = send_every_call(collector.url)
        stored = list(reversed(collector.events()))
        for message in stored:
            summary = {
                key: message.get(key)
                for key in ("type", "userId", "event", "name", "groupId", "previousId")
                if message.get(key) is not None
            }
            print(json.dumps(summary))
        print(f"sent {sent} messages, the collector stored {len(stored)}")
        analytics.shutdown()
        return 0 if len(stored) == sent else 1


if __name__ == "__main__":
    sys.exit(main())
