"""``analytics_core.testing``, the public path of :mod:`analytics_core.tools.testing`:
capturing what a test's code sends, and assertions on it. Importing it gives that module itself
(one module object, whichever path imported it)."""

import sys

from .tools import testing as _testing

sys.modules[__name__] = _testing
