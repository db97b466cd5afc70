"""``analytics_core.cli:main``, where installations made before the tools moved find the
``analytics-core`` command: it is :mod:`analytics_core.tools.cli`."""

from .tools.cli import main

__all__ = ["main"]
