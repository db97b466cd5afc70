"""The pytest plugin (a ``pytest11`` entry point): a test run never sends analytics.

Any project that installs analytics-core gets it. From the start of the run to its end, every
message any client in the process accepts is captured instead of sent: a test suite run with
the production write key in its settings (a CI job, a developer's shell) pollutes nothing.
Each test starts with an empty capture, which the ``analytics_events`` fixture shows::

    def test_signup(client, analytics_events):
        client.post("/signup", data={"email": "a@example.com"})
        analytics_events.assert_tracked("Signed Up")

A test that must really deliver (to a local collector, say) opts in with the
``@pytest.mark.analytics_send`` marker or the ``analytics_send`` fixture (which a fixture of
your own may depend on). ``pytest -p no:analytics_core`` turns the plugin off altogether.

Processes a test starts (a real server in a subprocess) are not under pytest: they send.
"""

import contextlib
from typing import Iterator, List, Optional

import pytest

from . import capture
from .testing import CapturedEvents, Message, capture_events

__all__ = ["analytics_events", "analytics_send"]

SEND_MARKER = "analytics_send"


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Capture from now on: before the project's conftest files are imported (they may well
    configure analytics and send), through collection, session fixtures and every test."""
    capture.start()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line(
        "markers",
        f"{SEND_MARKER}: this test's analytics messages are really sent (analytics-core "
        "captures every message of every other test)",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """End the run's capture."""
    # A test that left the stack unbalanced may have ended it already: nothing left to undo.
    with contextlib.suppress(RuntimeError):
        capture.stop()


@pytest.fixture(autouse=True)
def _analytics_capture(request: pytest.FixtureRequest) -> Iterator[Optional[list]]:
    """Each test's own capture (None for a test that asked to send)."""
    if request.node.get_closest_marker(SEND_MARKER) is not None:
        capture.start_sending()
        try:
            yield None
        finally:
            capture.stop()
        return
    if SEND_MARKER in request.fixturenames:  # the fixture below switches sending on
        yield None
        return
    messages = capture.start()
    try:
        yield messages
    finally:
        capture.stop()


@pytest.fixture
def analytics_send() -> Iterator[None]:
    """Really send this test's analytics messages (depend on it from a fixture of your own)."""
    capture.start_sending()
    try:
        yield
    finally:
        capture.stop()


@pytest.fixture
def analytics_events(
    request: pytest.FixtureRequest, _analytics_capture: Optional[list]
) -> Iterator[CapturedEvents]:
    """Every analytics message accepted during the test (captured, never sent).

    In a test that opted in to sending, only the messages accepted while this fixture is
    active are captured, and those are not sent."""
    if _analytics_capture is not None:
        messages: List[Message] = _analytics_capture
        yield CapturedEvents(messages)
        return
    if SEND_MARKER in request.fixturenames:
        # Sending must be switched on before this capture starts, or it would end it.
        request.getfixturevalue(SEND_MARKER)
    with capture_events() as events:
        yield events
