"""``python -m analytics_core.collector``: run the collector until SIGTERM or SIGINT."""

import argparse
import signal
import sys
import threading
from typing import List, Optional

from .access import ANY_HOST, check_allowed_host
from .server import DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_DEADLINE, Collector

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
    parser.add_argument(
        "--port", type=int, default=8086, help="port (default 8086); 0 picks a free one"
    )
    parser.add_argument(
        "--db",
        default="events.db",
        help="SQLite file, or :memory: (default events.db, in the current folder)",
    )
    parser.add_argument(
        "--write-key",
        type=_write_key,
        default=None,
        help="accept only this write key; reading and deleting events need it too",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        type=_allowed_host,
        default=[],
        metavar="NAME",
        help="also answer requests whose Host is NAME (repeatable; '*' answers any name); "
        "loopback names and --host are always allowed",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections served at once; at the cap an idle one is closed, or the new one "
        f"gets 503 (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--request-deadline",
        type=_positive_seconds,
        default=DEFAULT_REQUEST_DEADLINE,
        metavar="SECONDS",
        help="time from a request's first byte to the end of its body, else 408 "
        f"(default {DEFAULT_REQUEST_DEADLINE:g})",
    )
    parser.add_argument("--faults", action="store_true", help="enable the /_faults test API")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def _write_key(text: str) -> str:
    if not text or ":" in text:  # Basic auth ends the user name at the first colon
        raise argparse.ArgumentTypeError("a write key is not empty and has no ':'")
    return text


def _allowed_host(text: str) -> str:
    try:
        return check_allowed_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    value = int(text)  # argparse turns the ValueError into "invalid value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):  # NaN too
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


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
        allowed_hosts=args.allow_host,
        max_connections=args.max_connections,
        request_deadline=args.request_deadline,
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
    if ANY_HOST in args.allow_host and args.write_key is None:
        print(
            "analytics-core collector: warning: --allow-host '*' without --write-key lets any "
            "web page you open read and delete the events (DNS rebinding)",
            file=sys.stderr,
        )
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
