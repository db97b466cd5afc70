"""Flask apps and helpers for the analytics_flask tests (some run under real servers)."""
