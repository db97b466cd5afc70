"""The collector's own capacity: one bare keep-alive client posting pre-built batches.

``python -m bench.capacity --host URL --seconds 3`` prints one JSON line. No analytics library
is involved: the body is built once, so this is the most the collector can take from one
sequential client, the ceiling for any library's delivered events/s in this benchmark.
"""

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional

import requests

from .payload import basic_auth, batch_body

BATCH_SIZE = 100


def measure_capacity(host: str, seconds: float, batch_size: int = BATCH_SIZE) -> Dict[str, Any]:
    """POST the same ``batch_size``-message body for ``seconds``; events/s and what was sent."""
    body = batch_body(batch_size)
    headers = {"Content-Type": "application/json", "Authorization": basic_auth()}
    url = host.rstrip("/") + "/v1/batch"
    session = requests.Session()
    session.trust_env = False  # the environment's proxy settings must not route 127.0.0.1
    session.post(url, data=body, headers=headers, timeout=30).raise_for_status()  # connect
    batches = failed = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        response = session.post(url, data=body, headers=headers, timeout=30)
        batches += 1
        if response.status_code != 200:
            failed += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    sent = (batches + 1) * batch_size
    return {
        "value": batches * batch_size / elapsed,
        "batches": batches,
        "batch_bytes": len(body),
        "seconds": elapsed,
        "sent": sent,
        "accepted": sent - failed * batch_size,
    }


def main(argv: Optional[List[str]] = None) -> int:
    """Measure and print the result as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--host", required=True, help="the collector's base URL")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    print(json.dumps(measure_capacity(args.host, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
