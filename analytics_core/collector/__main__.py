"""Entry point for ``python -m analytics_core.collector``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
