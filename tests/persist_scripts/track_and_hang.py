"""Track N events with a spool, say so, then hang until killed (the test SIGKILLs it).

Usage: python -m tests.persist_scripts.track_and_hang HOST SPOOL_PATH COUNT
Message ids are ``m-0`` ... ``m-{COUNT-1}``, so the test knows every accepted id.
"""

import sys
import time

import analytics_core


def main() -> None:
    host, spool, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = analytics_core.Client("wk-persist", host=host, persist=spool, upload_interval=0.05)
    refused = 0
    for number in range(count):
        ok, _ = client.track("killed-user", "Before Kill", {"n": number}, message_id=f"m-{number}")
        refused += not ok
    print(f"tracked {count} refused {refused}", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
