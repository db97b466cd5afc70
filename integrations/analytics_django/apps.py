"""The app config: adding ``"analytics_django"`` to ``INSTALLED_APPS`` is the whole set-up."""

from django.apps import AppConfig

__all__ = ["AnalyticsConfig"]


class AnalyticsConfig(AppConfig):
    """Configures the client, the middleware, the signal receivers and the system checks."""

    name = "analytics_django"
    label = "analytics_django"
    verbose_name = "Analytics (Segment)"

    def ready(self) -> None:
        """Install the middleware, the client built from ``settings.ANALYTICS`` and, when that
        client sends, the SIGTERM handling of ``analytics_core.signals``.

        Never raises: a misconfiguration is logged, and reported by ``manage.py check``.
        """
        from analytics_core.signals import install_sigterm_handler

        from . import (
            checks,  # noqa: F401 - registers the system checks
            testing,
        )
        from .configure import configure, install_middleware
        from .signals import connect

        connect()
        # Under Django's test runner, messages go to analytics_django.outbox, never out.
        testing.install()
        install_middleware()
        if configure().send:
            # Only a client that sends has a queue worth delivering at SIGTERM.
            install_sigterm_handler()
