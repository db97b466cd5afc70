"""ASGI apps and helpers for the analytics_asgi tests (the apps also run under real servers)."""
