"""The ``analytics-core`` command: ``collector`` (a local tracking API) and ``demo``."""

import sys
from typing import List, Optional

from analytics_core.version import VERSION

_SUBCOMMANDS = {
    "collector": "run the local Segment-compatible collector (see `analytics-core collector -h`)",
    "demo": "start a local collector, send every call type to it, print what arrived",
}


def _usage() -> str:
    lines = ["usage: analytics-core {collector,demo} [options]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in _SUBCOMMANDS.items()]
    lines.append("\n`analytics-core COMMAND --help` shows a command's options.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Dispatch to a subcommand; each one parses its own options."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        print(f"analytics-core {VERSION}")
        return 0
    command, rest = args[0], args[1:]
    if command == "collector":
        from analytics_core.collector.cli import main as collector_main

        return collector_main(rest)
    if command == "demo":
        from analytics_core.demo import main as demo_main

        return demo_main(rest)
    print(f"analytics-core: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
