"""Under Django's test runner, messages are kept in ``analytics_django.outbox``, never sent.

Django keeps the e-mail a test sends in ``django.core.mail.outbox``; analytics messages get the
same treatment. While Django's test environment is set up (``manage.py test``, or any runner
that calls ``django.test.utils.setup_test_environment()``), every message any client accepts
is appended, in wire form, to ``analytics_django.outbox`` instead of being sent, and that list
is emptied when each test starts (when Django empties ``mail.outbox``)::

    import analytics_django
    from analytics_django.testing import captured_events

    class SignupTests(TestCase):
        def test_signup_is_tracked(self):
            self.client.post("/signup/", {"email": "a@example.com"})
            self.assertEqual(analytics_django.outbox[-1]["event"], "Signed Up")
            captured_events().assert_tracked("Signed Up")

A test that must really send wraps itself in ``analytics_core.testing.allow_sending()``. Under
pytest, analytics-core's own plugin captures first, and the ``analytics_events`` fixture shows
what was captured.
"""

import sys
from typing import Any, Dict, List, Optional

from analytics_core.testing import CapturedEvents
from analytics_core.tools import capture

__all__ = ["captured_events", "install", "current_outbox"]

Message = Dict[str, Any]

# The current test's messages, and the mail outbox they were started for: Django replaces
# mail.outbox when each test starts, and that is when ours starts afresh too.
_state: Dict[str, Any] = {"outbox": None, "mail_outbox": None}


def _test_environment_is_set_up() -> bool:
    # Looked up in sys.modules rather than imported: a process that never loaded Django's test
    # utilities is not running tests, and production pays no import for this check.
    utils = sys.modules.get("django.test.utils")
    state = getattr(utils, "_TestState", None)
    return state is not None and hasattr(state, "saved_data")


def current_outbox() -> Optional[List[Message]]:
    """``analytics_django.outbox`` while Django's test environment is set up, else None."""
    if not _test_environment_is_set_up():
        _state["outbox"] = _state["mail_outbox"] = None
        return None
    mail_outbox = getattr(sys.modules.get("django.core.mail"), "outbox", None)
    if _state["outbox"] is None or mail_outbox is not _state["mail_outbox"]:
        _state["outbox"], _state["mail_outbox"] = [], mail_outbox
    return _state["outbox"]


def captured_events() -> CapturedEvents:
    """The current test's ``analytics_django.outbox``, with the assertion helpers of
    :class:`analytics_core.testing.CapturedEvents` (``assert_tracked`` and the rest)."""
    outbox = current_outbox()
    if outbox is None:
        raise RuntimeError(
            "analytics_django: Django's test environment is not set up; under pytest use the "
            "analytics_events fixture"
        )
    return CapturedEvents(outbox)


def install() -> None:
    """Make clients consult :func:`current_outbox` (idempotent; called when the app is ready)."""
    capture.redirect = current_outbox
