"""analytics_asgi (work in progress)."""
