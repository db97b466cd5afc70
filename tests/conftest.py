"""Shared fixtures: a real local collector process, and a clean slate for module-level state."""

import logging

import pytest

import analytics_core
from analytics_core import encoding

from .support.collector_process import CollectorProcess


@pytest.fixture(scope="session")
def collector_process():
    """One real collector subprocess for the whole run (started on a free 127.0.0.1 port)."""
    process = CollectorProcess()
    yield process
    process.stop()


@pytest.fixture
def collector(collector_process, analytics_send):
    """The shared collector, emptied and with no planned faults, for one test (which really
    sends: the pytest plugin captures every other test's messages)."""
    collector_process.clear()
    collector_process.clear_faults()
    yield collector_process
    collector_process.clear_faults()


@pytest.fixture(autouse=True)
def _isolated_module_state():
    """Each test starts with the module-level API unconfigured and the segment logger untouched."""
    logger = logging.getLogger("segment")
    saved_level, saved_handlers = logger.level, list(logger.handlers)
    saved = {name: getattr(analytics_core, name) for name in _MODULE_SETTINGS}
    _end_default_client()  # one made before any test ran (the Django test project's AppConfig)
    analytics_core._reported_setting_errors.clear()  # each test sees its own settings errors
    yield
    _end_default_client()
    for name, value in saved.items():
        setattr(analytics_core, name, value)
    logger.setLevel(saved_level)
    logger.handlers[:] = saved_handlers
    encoding.force_stdlib(False)


def _end_default_client() -> None:
    client = analytics_core.default_client
    if client is not None:
        client.shutdown(timeout=1)
    analytics_core.default_client = None


_MODULE_SETTINGS = [
    "write_key",
    "host",
    "on_error",
    "debug",
    "log_handler",
    "send",
    "sync_mode",
    "max_queue_size",
    "gzip",
    "timeout",
    "max_retries",
    "proxies",
    "upload_size",
    "upload_interval",
    "thread",
    "oauth_client_id",
    "oauth_client_key",
    "oauth_key_id",
    "oauth_auth_server",
    "oauth_scope",
    "max_total_backoff_duration",
    "max_rate_limit_duration",
    "shutdown_timeout",
    "on_full",
    "on_full_timeout",
    "persist",
]
