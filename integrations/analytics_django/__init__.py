"""analytics_django (work in progress)."""
