"""The library's version, kept in one place (read by pyproject.toml too)."""

VERSION = "0.1.0"
