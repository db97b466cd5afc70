"""``analytics_core.spool`` for the scripts beside this one, without the package's ``__init__``.

The spool needs nothing but the standard library (and the package's journal module), and
importing analytics_core (requests and all) would cost each process about 0.6 s here.
"""

import importlib
import sys
import types
from pathlib import Path
from typing import Any


def load_spool_module() -> Any:
    """The spool module, imported from this checkout with an empty ``analytics_core`` package."""
    package = types.ModuleType("analytics_core")
    package.__path__ = [str(Path(__file__).resolve().parents[2] / "analytics_core")]
    sys.modules["analytics_core"] = package
    return importlib.import_module("analytics_core.spool")
