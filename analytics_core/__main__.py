"""``python -m analytics_core ...``: the ``analytics-core`` command, for an environment whose
scripts folder is not on PATH (a virtualenv used without activating it)."""

import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
