"""Logging: the ``segment`` logger, the debug and log_handler options, and no write key leaks."""

import base64
import logging

import pytest

import analytics_core
from analytics_core import Client
from analytics_core.collector.access import write_key_fingerprint as fingerprint
from analytics_core.encoding import MAX_MESSAGE_BYTES

SECRET = "wk-S3CRET-do-not-log-7f3a"
SECRET_FORMS = [SECRET, base64.b64encode(f"{SECRET}:".encode()).decode()]

segment_logger = logging.getLogger("segment")


def test_the_library_logs_on_the_segment_logger(caplog):
    client = Client(send=False)
    with caplog.at_level(logging.WARNING, logger="segment"):
        client.track("u", "E", {"bad": object()})
    assert caplog.records
    assert {record.name for record in caplog.records} == {"segment"}


def test_debug_sets_debug_level_and_adds_a_handler():
    segment_logger.handlers[:] = []
    segment_logger.setLevel(logging.NOTSET)
    Client(send=False, debug=True)
    assert segment_logger.level == logging.DEBUG
    assert len(segment_logger.handlers) == 1
    assert isinstance(segment_logger.handlers[0], logging.Handler)
    # A second debug client does not stack another handler.
    Client(send=False, debug=True)
    assert len(segment_logger.handlers) == 1


def test_without_debug_the_level_is_left_alone():
    segment_logger.handlers[:] = []
    segment_logger.setLevel(logging.WARNING)
    Client(send=False)
    assert segment_logger.level == logging.WARNING
    assert segment_logger.handlers == []


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_log_handler_option_adds_the_handler():
    handler = ListHandler()
    Client(send=False, log_handler=handler)
    assert handler in segment_logger.handlers
    Client(send=False, log_handler=handler)
    assert segment_logger.handlers.count(handler) == 1
    segment_logger.setLevel(logging.WARNING)
    Client(send=False).track("u", "E", {"dropped": object()})
    assert any("dropped" in record.getMessage() for record in handler.records)


def test_log_handler_with_debug_is_the_only_handler():
    segment_logger.handlers[:] = []
    handler = ListHandler()
    Client(send=False, debug=True, log_handler=handler)
    assert segment_logger.handlers == [handler]
    assert segment_logger.level == logging.DEBUG


def test_module_level_debug_and_log_handler():
    handler = ListHandler()
    analytics_core.send = False
    analytics_core.debug = True
    analytics_core.log_handler = handler
    analytics_core.track("u", "E")
    assert handler in segment_logger.handlers
    assert segment_logger.level == logging.DEBUG


# -- the write key stays secret ----------------------------------------------------------------


def _assert_secret_absent(text, where):
    for form in SECRET_FORMS:
        assert form not in text, f"the write key leaked into {where}: {text!r}"


def test_write_key_never_logged(collector, caplog):
    errors = []
    handler = ListHandler()

    def on_error(error, items):
        errors.append((error, items))
        if len(errors) == 1:
            raise RuntimeError("a broken on_error handler, for the traceback")

    caplog.set_level(logging.DEBUG)  # every logger, urllib3 and requests included
    client = Client(
        SECRET,
        host=collector.url,
        debug=True,
        log_handler=handler,
        on_error=on_error,
        upload_interval=60,
        max_queue_size=3,
        max_retries=3,
    )
    try:
        _assert_secret_absent(repr(client), "repr(client)")
        _assert_secret_absent(str(client), "str(client)")
        _assert_secret_absent(repr(client.transport), "repr(client.transport)")
        _assert_secret_absent(repr(client.pipeline), "repr(client.pipeline)")

        # Success.
        assert client.track("u-log", "Delivered")[0]
        assert client.flush(timeout=10)

        # Retries (503 twice, retry at once), then success.
        collector.set_faults([{"status": 503, "retry_after": "0", "times": 2}])
        assert client.track("u-log", "Retried")[0]
        assert client.flush(timeout=10)
        assert client.stats()["retried"] == 2

        # A 400: not retried, reported.
        collector.set_faults([{"status": 400, "times": 1}])
        assert client.track("u-log", "Refused")[0]
        assert client.flush(timeout=10)

        # Queue full: the uploader waits 60 s before sending, so three fill the queue.
        for index in range(3):
            assert client.track("u-log", "Queued", {"index": index})[0]
        ok, _ = client.track("u-log", "Overflow")
        assert ok is False
        assert client.flush(timeout=10)

        # Too large.
        ok, _ = client.track("u-log", "Huge", {"blob": "x" * MAX_MESSAGE_BYTES})
        assert ok is False

        # Delivery at shutdown.
        assert client.track("u-log", "Last")[0]
    finally:
        client.shutdown(timeout=5)

    delivered = collector.events(limit=0, user_id="u-log")
    assert sorted(event["event"] for event in delivered) == sorted(
        ["Delivered", "Retried", "Queued", "Queued", "Queued", "Last"]
    )
    assert all(event["_write_key_fingerprint"] == fingerprint(SECRET) for event in delivered)

    reported = [type(error).__name__ for error, _ in errors]
    assert reported == ["APIError", "QueueFullError", "MessageTooLargeError"], reported
    assert [item["event"] for item in errors[0][1]] == ["Refused"]
    assert errors[0][0].status == 400
    for error, items in errors:
        _assert_secret_absent(str(error), "str(error)")
        _assert_secret_absent(repr(error), "repr(error)")
        _assert_secret_absent(repr(items), "the items given to on_error")

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = caplog.records + handler.records
    assert any(record.levelno == logging.DEBUG for record in records)
    assert any("on_error" in record.getMessage() for record in records)
    for record in records:
        _assert_secret_absent(formatter.format(record), f"a {record.name} log record")
        _assert_secret_absent(repr(record.args), f"the args of a {record.name} log record")
    _assert_secret_absent(caplog.text, "the captured log text")


def test_write_key_not_in_validation_errors():
    with pytest.raises(analytics_core.ValidationError) as info:
        Client(SECRET, send=False, upload_size=0)
    _assert_secret_absent(str(info.value), "a ValidationError")
    client = Client(SECRET, send=False)
    with pytest.raises(analytics_core.ValidationError) as info:
        client.track("u", "E", bogus=1)
    _assert_secret_absent(str(info.value), "a ValidationError")
