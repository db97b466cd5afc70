"""``analytics-core track|identify|page|screen|group|alias``: one call from the command line.

Every field of the call is an option (JSON for dicts, ISO-8601 for timestamps). The message goes
through the client like any other; the command waits for delivery and exits 1 with the reason
if it failed, 2 for bad options (the message names the option).
"""

import argparse
import json
import os
import sys
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ..client import Client
from ..errors import ValidationError

__all__ = ["CALLS", "add_connection_options", "client_from", "known", "main", "usage_lines"]

WRITE_KEY_ENV = "ANALYTICS_WRITE_KEY"

# Each call's fields: (option, keyword, kind); kind is "text" or "json".
_COMMON: List[Tuple[str, str, str]] = [
    ("--anonymous-id", "anonymous_id", "text"),
    ("--context", "context", "json"),
    ("--timestamp", "timestamp", "text"),
    ("--integrations", "integrations", "json"),
    ("--message-id", "message_id", "text"),
]
CALLS: Dict[str, Tuple[str, List[Tuple[str, str, str]]]] = {
    "identify": (
        "tie a user to their traits",
        [("--user-id", "user_id", "text"), ("--traits", "traits", "json"), *_COMMON],
    ),
    "track": (
        "record an action a user performed",
        [
            ("--user-id", "user_id", "text"),
            ("--event", "event", "text"),
            ("--properties", "properties", "json"),
            *_COMMON,
        ],
    ),
    "page": (
        "record a page view",
        [
            ("--user-id", "user_id", "text"),
            ("--category", "category", "text"),
            ("--name", "name", "text"),
            ("--properties", "properties", "json"),
            *_COMMON,
        ],
    ),
    "screen": (
        "record a screen view",
        [
            ("--user-id", "user_id", "text"),
            ("--category", "category", "text"),
            ("--name", "name", "text"),
            ("--properties", "properties", "json"),
            *_COMMON,
        ],
    ),
    "group": (
        "associate a user with a group",
        [
            ("--user-id", "user_id", "text"),
            ("--group-id", "group_id", "text"),
            ("--traits", "traits", "json"),
            *_COMMON,
        ],
    ),
    "alias": (
        "merge two identities: --previous-id becomes --user-id",
        [
            ("--previous-id", "previous_id", "text"),
            ("--user-id", "user_id", "text"),
            ("--context", "context", "json"),
            ("--timestamp", "timestamp", "text"),
            ("--integrations", "integrations", "json"),
            ("--message-id", "message_id", "text"),
        ],
    ),
}


def add_connection_options(parser: argparse.ArgumentParser, max_retries: int = 3) -> None:
    """``--write-key``, ``--host``, ``--gzip``, ``--debug``, ``--timeout``, ``--max-retries``."""
    parser.add_argument(
        "--write-key",
        default=os.environ.get(WRITE_KEY_ENV),
        help=f"the source's write key (default: ${WRITE_KEY_ENV})",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="tracking API (default https://api.segment.io; a local collector: "
        "http://127.0.0.1:8086)",
    )
    parser.add_argument("--gzip", action="store_true", help="gzip request bodies")
    parser.add_argument("--debug", action="store_true", help="log to stderr what is sent")
    parser.add_argument("--timeout", type=float, default=15, help="seconds per HTTP request")
    parser.add_argument(
        "--max-retries",
        type=int,
        default=max_retries,
        help=f"retries after a network error, 5xx or 429 (default {max_retries})",
    )


def client_from(
    args: argparse.Namespace, on_error: Callable[[BaseException, List[Any]], None], **options: Any
) -> Client:
    """A client built from the connection options; raises ValidationError for bad ones."""
    if not args.write_key:
        raise ValidationError(f"--write-key is required (or set ${WRITE_KEY_ENV})")
    return Client(
        args.write_key,
        host=args.host,
        gzip=args.gzip,
        debug=args.debug,
        timeout=args.timeout,
        max_retries=args.max_retries,
        on_error=on_error,
        **options,
    )


def _parser(call: str) -> argparse.ArgumentParser:
    summary, fields = CALLS[call]
    parser = argparse.ArgumentParser(
        prog=f"analytics-core {call}",
        description=f"Send one {call} call ({summary}) and wait until it is delivered.",
    )
    for option, keyword, kind in fields:
        shown = "JSON object" if kind == "json" else ("ISO-8601" if "timestamp" in option else "")
        parser.add_argument(option, dest=keyword, metavar=shown or None, default=None)
    add_connection_options(parser)
    return parser


def _arguments(call: str, args: argparse.Namespace) -> Dict[str, Any]:
    arguments: Dict[str, Any] = {}
    for option, keyword, kind in CALLS[call][1]:
        value = getattr(args, keyword)
        if value is None:
            continue
        if kind == "json":
            try:
                value = json.loads(value)
            except ValueError as error:
                raise ValidationError(f"{option} is not valid JSON: {error}") from None
            if not isinstance(value, dict):
                raise ValidationError(f"{option} must be a JSON object, got {value!r}")
        arguments[keyword] = value
    return arguments


def main(call: str, argv: Sequence[str]) -> int:
    """Run one call subcommand; the exit status: 0 delivered, 1 not delivered, 2 bad options."""
    args = _parser(call).parse_args(list(argv))
    errors: List[BaseException] = []
    try:
        client = client_from(args, lambda error, items: errors.append(error))
        ok, message = getattr(client, call)(**_arguments(call, args))
    except ValidationError as error:
        print(f"analytics-core {call}: {error}", file=sys.stderr)
        return 2
    delivered = client.shutdown(timeout=args.timeout * (args.max_retries + 1) + 5)
    if not ok or errors or not delivered:
        reason = errors[0] if errors else "not delivered in time"
        print(f"analytics-core {call}: not delivered: {reason}", file=sys.stderr)
        return 1
    print(json.dumps({"delivered": call, "messageId": message["messageId"]}))
    return 0


def known(call: str) -> bool:
    """Whether ``call`` is one of the six call subcommands."""
    return call in CALLS


def usage_lines() -> List[str]:
    """One line per call subcommand, for the top-level help."""
    return [f"  {name:<10} {summary}" for name, (summary, _) in CALLS.items()]
