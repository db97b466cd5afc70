"""Test your own code's analytics without mocks, and without sending anything.

Under pytest, the plugin in :mod:`analytics_core.pytest_plugin` (installed with the package)
captures every message of every test and gives them to the ``analytics_events`` fixture::

    def test_checkout(client, analytics_events):
        client.post("/checkout", data={"order": "o-17"})
        analytics_events.assert_tracked("Order Completed", properties={"order_id": "o-17"})

Captured messages are in wire form (camelCase keys, ISO-8601 timestamps, the request's context
merged in). Outside pytest, :func:`capture_events` does the same as a context manager, and
:func:`allow_sending` lets a block really send while a capture is active (under Django's test
runner, whose messages go to ``analytics_django.outbox``, for instance). This module imports no
test framework.
"""

import contextlib
import json
from typing import Any, Dict, Iterator, List, Optional

from . import capture

__all__ = ["CapturedEvents", "allow_sending", "capture_events"]

Message = Dict[str, Any]

_MISSING = object()


def _contains(actual: Any, expected: Any) -> bool:
    """``expected``'s keys are in ``actual`` with equal values (dicts compared the same way,
    recursively): a test names what it cares about, not every property."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        return all(
            key in actual and _contains(actual[key], value) for key, value in expected.items()
        )
    return actual == expected


class CapturedEvents:
    """The messages captured so far, oldest first, and assertions about them."""

    def __init__(self, messages: List[Message]) -> None:
        self._messages = messages

    @property
    def messages(self) -> List[Message]:
        """Every captured message (a copy of the list)."""
        return list(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(list(self._messages))

    def __getitem__(self, index: int) -> Message:
        return self._messages[index]

    def clear(self) -> None:
        """Forget what was captured so far."""
        del self._messages[:]

    def filter(
        self,
        type: Optional[str] = None,
        event: Optional[str] = None,
        user_id: Optional[str] = None,
        anonymous_id: Optional[str] = None,
        **fields: Any,
    ) -> List[Message]:
        """Messages matching every criterion given: ``type`` (``"track"``, ``"identify"``...),
        ``event``, ``user_id``, ``anonymous_id``, and any other wire field by its camelCase name
        (``properties={"plan": "pro"}`` matches messages whose properties include that)."""
        wanted: Dict[str, Any] = dict(fields)
        for key, value in (
            ("type", type),
            ("event", event),
            ("userId", user_id),
            ("anonymousId", anonymous_id),
        ):
            if value is not None:
                wanted[key] = value
        return [
            message
            for message in self._messages
            if all(_contains(message.get(key, _MISSING), value) for key, value in wanted.items())
        ]

    def tracked(self, event: Optional[str] = None, **criteria: Any) -> List[Message]:
        """The ``track`` messages (of ``event``, if given)."""
        return self.filter(type="track", event=event, **criteria)

    def of_type(self, type: str, **criteria: Any) -> List[Message]:
        """The messages of one type: identify, track, page, screen, group or alias."""
        return self.filter(type=type, **criteria)

    def _assert_one_or_more(self, matches: List[Message], what: str, count: Optional[int]) -> Any:
        if (count is None and matches) or (count is not None and len(matches) == count):
            return matches[-1] if matches else None
        wanted = "at least one" if count is None else f"exactly {count}"
        raise AssertionError(
            f"expected {wanted} {what}, found {len(matches)}. Captured:\n{self.summary()}"
        )

    def assert_tracked(
        self,
        event: str,
        properties: Optional[Dict[str, Any]] = None,
        *,
        count: Optional[int] = None,
        **criteria: Any,
    ) -> Message:
        """Assert ``event`` was tracked (``count`` times, if given), with at least these
        ``properties`` and other criteria (see :meth:`filter`); returns the last match."""
        if properties is not None:
            criteria["properties"] = properties
        matches = self.tracked(event, **criteria)
        shown = f"track {event!r}" + (f" with {criteria}" if criteria else "")
        return self._assert_one_or_more(matches, shown, count)

    def assert_not_tracked(self, event: str, **criteria: Any) -> None:
        """Assert no ``event`` matching the criteria was tracked."""
        matches = self.tracked(event, **criteria)
        if matches:
            raise AssertionError(
                f"expected no track {event!r}, found {len(matches)}:\n{self.summary()}"
            )

    def assert_identified(
        self, user_id: str, traits: Optional[Dict[str, Any]] = None, **criteria: Any
    ) -> Message:
        """Assert ``user_id`` was identified, with at least these ``traits``."""
        if traits is not None:
            criteria["traits"] = traits
        matches = self.filter(type="identify", user_id=user_id, **criteria)
        return self._assert_one_or_more(matches, f"identify of {user_id!r}", None)

    def assert_called(self, type: str, *, count: Optional[int] = None, **criteria: Any) -> Message:
        """Assert a message of ``type`` (page, screen, group, alias, ...) matching the criteria."""
        matches = self.filter(type=type, **criteria)
        return self._assert_one_or_more(matches, f"{type} matching {criteria}", count)

    def assert_nothing_sent(self) -> None:
        """Assert no message at all was captured."""
        if self._messages:
            raise AssertionError(f"expected no analytics messages. Captured:\n{self.summary()}")

    def summary(self) -> str:
        """One line per captured message, for failure messages."""
        if not self._messages:
            return "  (nothing)"
        lines = []
        for message in self._messages:
            name = message.get("event") or message.get("name") or message.get("groupId") or ""
            who = message.get("userId") or message.get("anonymousId") or "?"
            fields = message.get("properties") or message.get("traits") or {}
            lines.append(
                f"  {message.get('type')} {name!r} user={who} "
                f"{json.dumps(fields, sort_keys=True, default=str)[:200]}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<CapturedEvents {len(self._messages)} message(s)>"


@contextlib.contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Capture every message clients accept inside the ``with`` block; nothing is sent."""
    messages = capture.start()
    try:
        yield CapturedEvents(messages)
    finally:
        capture.stop()


@contextlib.contextmanager
def allow_sending() -> Iterator[None]:
    """Inside the ``with`` block (or the decorated function), messages are really sent, even
    while a test capture is active: for a test that checks delivery itself."""
    capture.start_sending()
    try:
        yield
    finally:
        capture.stop()
