"""A small Django project the Django integration is tested with."""
