"""The ``analytics-core`` command: the six calls, ``import``, ``collector`` and ``demo``."""

import sys
from typing import List, Optional

from analytics_core.tools import cli_calls
from analytics_core.version import VERSION

_SUBCOMMANDS = {
    "import": "send a JSONL or CSV file of messages (a historical import), nothing dropped",
    "collector": "run the local Segment-compatible collector (see `analytics-core collector -h`)",
    "demo": "start a local collector, send every call type to it, print what arrived",
}


def _usage() -> str:
    names = ",".join([*cli_calls.CALLS, *_SUBCOMMANDS])
    lines = [f"usage: analytics-core {{{names}}} [options]", "", "commands:"]
    lines += cli_calls.usage_lines()
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
    if cli_calls.known(command):
        return cli_calls.main(command, rest)
    if command == "import":
        from analytics_core.tools.cli_import import main as import_main

        return import_main(rest)
    if command == "collector":
        from analytics_core.collector.cli import main as collector_main

        return collector_main(rest, prog="analytics-core collector")
    if command == "demo":
        from analytics_core.tools.demo import main as demo_main

        return demo_main(rest)
    print(f"analytics-core: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
