"""An RQ job that imports nothing: which modules a first send needs its work horse already has."""

import sys
from typing import List

FIRST_SEND_NEEDS = ("requests", "sqlite3")


def modules_at_start() -> List[str]:
    """Those of ``FIRST_SEND_NEEDS`` loaded before this job ran (inherited from the worker)."""
    return [name for name in FIRST_SEND_NEEDS if name in sys.modules]
