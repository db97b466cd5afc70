"""analytics_flask (work in progress)."""
