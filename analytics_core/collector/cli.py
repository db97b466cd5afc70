"""``python -m analytics_core.collector``: run the collector until SIGTERM or SIGINT."""

import argparse
import signal
import sys
import threading
from typing import List, Optional

from .server import Collector

__all__ = ["main", "LISTENING_PREFIX"]

# Parent processes parse this line to learn the real port when started with --port 0.
LISTENING_PREFIX = "analytics-core collector listening on "


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local Segment-compatible collector (HTTP Tracking API) backed by SQLite. "
        "GET /v1/events lists what arrived (newest first, at most 1000 per answer; "
        "see the README for its filters).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8086, help="port; 0 picks a free one")
    parser.add_argument("--db", default="events.db", help="SQLite file, or :memory:")
    parser.add_argument("--write-key", default=None, help="accept only this write key")
    parser.add_argument("--faults", action="store_true", help="enable the /_faults test API")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: Optional[List[str]] = None, prog: str = "python -m analytics_core.collector") -> int:
    """Serve until SIGTERM/SIGINT, then stop cleanly; return the exit status (0).

    ``prog`` is how the usage line names the command (``analytics-core collector`` from the
    ``analytics-core`` command)."""
    args = _parser(prog).parse_args(argv)
    collector = Collector(
        host=args.host,
        port=args.port,
        db=args.db,
        write_key=args.write_key,
        faults=args.faults,
        verbose=args.verbose,
    )
    try:
        collector.start()
    except OSError as exc:
        print(
            f"analytics-core collector: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        collector.stop()
        return 1
    stopping = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stopping.set()

    # Signal handlers can only be installed from the main thread (a CLI reusing main() may not be).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    print(f"{LISTENING_PREFIX}{collector.url}", flush=True)
    try:
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop()
    return 0
