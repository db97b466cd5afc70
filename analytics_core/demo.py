"""``python -m analytics_core.demo`` (``make demo``), kept where the README and the Makefile
name it: the demo is :mod:`analytics_core.tools.demo`."""

import sys

from .tools.demo import main

if __name__ == "__main__":
    sys.exit(main())
