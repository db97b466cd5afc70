"""``analytics_core.pytest_plugin``, the plugin's path before the tools moved (an entry point
written by an older installation, ``-p analytics_core.pytest_plugin``). Importing it gives
:mod:`analytics_core.tools.pytest_plugin` itself, so pytest never registers the plugin twice."""

import sys

from .tools import pytest_plugin as _plugin

sys.modules[__name__] = _plugin
