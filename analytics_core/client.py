"""Client: the six Segment calls -> a validated message, encoded once -> the pipeline."""

import datetime
import logging
import math
import numbers
import os
import threading
import time
import weakref
from types import TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type, Union

from . import lifecycle
from .context import (
    context_set_by_integration,
    current_request_context,
    looked_up_request_context,
    merge_context,
    request_context_lookups,
    request_ids,
)
from .encoding import MAX_MESSAGE_BYTES, decode_message, encode_message
from .errors import MessageTooLargeError, QueueFullError, ValidationError
from .messages import (
    Message,
    add_absent_keys,
    base_message,
    dict_field,
    optional_text,
    reject_unknown,
    require_event,
    required_id,
)
from .pipeline import Pipeline, without_tracebacks
from .queue_view import QueueView
from .tools import capture
from .transport import DEFAULT_MAX_RATE_LIMIT, DEFAULT_MAX_TOTAL_BACKOFF, RetryPolicy, Transport
from .version import VERSION

logger = logging.getLogger("segment")

LIBRARY = {"name": "analytics-core", "version": VERSION}
DEFAULT_OAUTH_SERVER = "https://oauth2.segment.io"
DEFAULT_OAUTH_SCOPE = "tracking_api:write"
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
DEFAULT_ON_FULL_TIMEOUT = 10.0
ON_FULL_POLICIES = ("drop", "block")

ErrorHandler = Callable[[BaseException, List[Dict[str, Any]]], None]
"""``on_error(error, items)``: the exception and the messages it concerns."""
Result = Tuple[bool, Message]
"""What each call returns: (accepted, the message as built)."""
IdValue = Union[str, int, float]
"""A user, anonymous, group or previous id: a string, or a number (sent as its text)."""
MessageIdValue = Union[str, int]
Fields = Mapping[str, Any]
"""traits, properties, context, integrations: a dict (any mapping) of JSON-able values."""
Timestamp = Union[datetime.datetime, datetime.date, str]
"""An aware datetime (a naive one: see DESIGN.md), a date, or an ISO-8601 string."""


def configure_logging(debug: bool, log_handler: Optional[logging.Handler]) -> None:
    """``debug=True``: DEBUG on the ``segment`` logger with a handler; ``log_handler``: add it."""
    if log_handler is not None and log_handler not in logger.handlers:
        logger.addHandler(log_handler)
    if debug:
        logger.setLevel(logging.DEBUG)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
            )
            logger.addHandler(handler)


MAX_SECONDS = threading.TIMEOUT_MAX
"""The longest wait Python can make (about 292 years); sockets refuse longer timeouts."""


def is_seconds(value: Any, minimum: float = 0) -> bool:
    """Whether ``value`` is a number of seconds a client option can be: a real number from
    ``minimum`` to :data:`MAX_SECONDS`. Not a bool, not NaN, not infinite: NaN passes every
    ``<`` check (it compares False with everything) and infinity makes a wait that never ends
    (as a request timeout, every batch fails; as a shutdown timeout, the exit never finishes).
    The integrations' settings checks use it too."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and minimum <= value <= MAX_SECONDS
    )


def _check_number(name: str, value: Any, minimum: float, integer: bool = False) -> None:
    if integer:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    elif not is_seconds(value, minimum):
        raise ValidationError(
            f"{name} must be a number >= {minimum} (finite, at most {MAX_SECONDS:.0f} seconds), "
            f"got {value!r}"
        )


def _check_timeout(timeout: Optional[float]) -> Optional[float]:
    # NaN would make a wait that never ends (every comparison with it is False).
    if timeout is not None and timeout != timeout:
        raise ValidationError("timeout must be a number of seconds or None, got nan")
    return timeout


class _ErrorReporter:
    """Calls the client's ``on_error`` (the client holds it; its pipeline reaches it through a
    :class:`_ReporterLink`)."""

    __slots__ = ("on_error", "__weakref__")

    def __init__(self, on_error: Optional[ErrorHandler]) -> None:
        self.on_error = on_error

    def batch_failed(self, error: BaseException, batch: List[bytes]) -> None:
        """A batch was not delivered: hand its messages to ``on_error``."""
        if self.on_error is not None:
            self.call(error, [add_absent_keys(decode_message(item)) for item in batch])

    def call(self, error: BaseException, items: List[Dict[str, Any]]) -> None:
        """``on_error(error, items)``; what the handler raises is logged, never passed on."""
        handler = self.on_error
        if handler is None:
            return
        try:
            handler(error, items)
        except Exception:  # the user's handler must not break the caller or the uploader
            logger.exception("analytics: the on_error handler raised")


class _ReporterLink:
    """The pipeline's way to its client's reporter: weak while the client lives, strong once
    the client was dropped and its pipeline delivers what is left.

    The uploader thread holds the pipeline. Were that a strong way to ``on_error``, an
    ``on_error`` that refers back to the client (a method of an object that holds the client)
    would keep the client alive for as long as the thread runs: it would never be dropped.
    """

    __slots__ = ("_ref", "_held")

    def __init__(self, reporter: _ErrorReporter) -> None:
        self._ref = weakref.ref(reporter)
        self._held: Optional[_ErrorReporter] = None

    def hold(self, reporter: _ErrorReporter) -> None:
        """Keep ``reporter`` alive (its client is being freed)."""
        self._held = reporter

    def __call__(self, error: BaseException, batch: List[bytes]) -> None:
        reporter = self._held or self._ref()
        if reporter is not None:
            reporter.batch_failed(error, batch)


class Client:
    """A Segment client with its own write key, queue and uploader thread(s).

    Options and defaults mirror Segment's analytics-python ``Client``; see the README's table.
    """

    log = logger
    """The ``segment`` logger, where analytics-python's clients keep it."""

    def __init__(
        self,
        write_key: Optional[str] = None,
        host: Optional[str] = None,
        debug: bool = False,
        max_queue_size: int = 10000,
        send: bool = True,
        on_error: Optional[ErrorHandler] = None,
        gzip: bool = False,
        max_retries: int = 10,
        sync_mode: bool = False,
        timeout: float = 15,
        proxies: Optional[Dict[str, str]] = None,
        thread: int = 1,
        upload_size: int = 100,
        upload_interval: float = 0.5,
        log_handler: Optional[logging.Handler] = None,
        oauth_client_id: Optional[str] = None,
        oauth_client_key: Optional[str] = None,
        oauth_key_id: Optional[str] = None,
        oauth_auth_server: str = DEFAULT_OAUTH_SERVER,
        oauth_scope: str = DEFAULT_OAUTH_SCOPE,
        max_total_backoff_duration: float = DEFAULT_MAX_TOTAL_BACKOFF,
        max_rate_limit_duration: float = DEFAULT_MAX_RATE_LIMIT,
        *,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        on_full: str = "drop",
        on_full_timeout: float = DEFAULT_ON_FULL_TIMEOUT,
        persist: Optional[str] = None,
    ) -> None:
        if send and not write_key:
            raise ValidationError("write_key is required (or pass send=False)")
        if write_key is not None and not isinstance(write_key, str):
            raise ValidationError(f"write_key must be a string, got {type(write_key).__name__}")
        if not on_error:  # analytics-python's rule: a falsy on_error (False, "") means none
            on_error = None
        if on_error is not None and not callable(on_error):
            raise ValidationError("on_error must be callable")
        _check_number("max_queue_size", max_queue_size, 1, integer=True)
        _check_number("upload_size", upload_size, 1, integer=True)
        _check_number("thread", thread, 1, integer=True)
        _check_number("max_retries", max_retries, 0, integer=True)
        _check_number("upload_interval", upload_interval, 0)
        _check_number("timeout", timeout, 0)
        _check_number("shutdown_timeout", shutdown_timeout, 0)
        _check_number("on_full_timeout", on_full_timeout, 0)
        _check_number("max_total_backoff_duration", max_total_backoff_duration, 0)
        _check_number("max_rate_limit_duration", max_rate_limit_duration, 0)
        if on_full not in ON_FULL_POLICIES:
            raise ValidationError(f"on_full must be 'drop' or 'block', got {on_full!r}")
        if persist is not None and not isinstance(persist, (str, os.PathLike)):
            raise ValidationError(f"persist must be a file path, got {type(persist).__name__}")
        if persist is not None and sync_mode:
            raise ValidationError("persist works with the background queue; not with sync_mode")
        configure_logging(debug, log_handler)
        self.write_key = write_key
        self.host = host
        self.debug = debug
        self.send = send
        self.sync_mode = sync_mode
        self.gzip = gzip
        # The options as given, readable as in analytics-python (changing one later has no
        # effect there either). The OAuth private key is not kept on the client.
        self.timeout = timeout
        self.max_retries = max_retries
        self.proxies = proxies
        self.max_queue_size = max_queue_size
        self.upload_size = upload_size
        self.upload_interval = upload_interval
        self.thread = thread
        self.log_handler = log_handler
        self.persist = persist
        self.max_total_backoff_duration = max_total_backoff_duration
        self.max_rate_limit_duration = max_rate_limit_duration
        self._reporter = _ErrorReporter(on_error)
        self._link = _ReporterLink(self._reporter)
        self.shutdown_timeout = shutdown_timeout
        self.on_full = on_full
        self.on_full_timeout = on_full_timeout
        # The caller waits this long for room in a full queue (None: it never waits).
        self._block = on_full_timeout if on_full == "block" else None
        self.dropped = 0
        self._sync_delivered = 0
        self._sync_failed = 0
        self._drop_log = DropLog()
        token_provider = None
        if oauth_client_id or oauth_client_key or oauth_key_id:
            token_provider = _oauth_manager(
                oauth_client_id,
                oauth_client_key,
                oauth_key_id,
                oauth_auth_server,
                oauth_scope,
                timeout=timeout,
                proxies=proxies,
            )
        self.transport = Transport(
            write_key,
            host,
            gzip=gzip,
            timeout=timeout,
            retry=RetryPolicy(
                max_retries=max_retries,
                max_total_backoff=max_total_backoff_duration,
                max_rate_limit=max_rate_limit_duration,
            ),
            proxies=proxies,
            token_provider=token_provider,
        )
        spool = None
        if persist is not None and send:
            from .spool import Spool  # sqlite3 is loaded only by clients that persist

            spool = Spool(os.fspath(persist), write_key or "")
        self.pipeline = Pipeline(
            self.transport,
            write_key,
            max_queue_size=max_queue_size,
            upload_size=upload_size,
            upload_interval=upload_interval,
            threads=thread,
            on_failure=self._link,
            spool=spool,
            shutdown_timeout=shutdown_timeout,
        )
        lifecycle.register(self)
        if spool is not None and capture.sink() is None:
            # Messages an earlier process accepted but never delivered go out now (not during
            # a test run, which sends nothing: they stay in the spool for a real process).
            self.pipeline.start()

    def __repr__(self) -> str:  # the write key stays out of reprs, logs and tracebacks
        return f"<analytics_core.Client host={self.transport.url!r} send={self.send}>"

    def __del__(self) -> None:
        """The program dropped the client (nothing of ours refers to it): its uploaders deliver
        what it queued, reporting to its ``on_error`` as usual, then end and close their
        connections. The exit waits for them as for live clients.

        ``__del__`` rather than ``weakref.finalize``: a finalizer's arguments stay alive, so
        it could not hold ``on_error`` (which may refer back to the client) without keeping the
        client alive; and when the client is freed by the garbage collector (in a reference
        cycle) weak references are cleared before ``__del__`` runs, everything still intact.
        """
        pipeline = getattr(self, "pipeline", None)  # absent when __init__ failed
        if pipeline is None:
            return
        try:
            self._link.hold(self._reporter)
            pipeline.release()
        except Exception:  # interpreter teardown, or a broken pipeline: nothing to deliver
            pass

    @property
    def on_error(self) -> Optional[ErrorHandler]:
        """``on_error(error, items)``: called with what could not be delivered or was refused."""
        return self._reporter.on_error

    @on_error.setter
    def on_error(self, handler: Optional[ErrorHandler]) -> None:
        self._reporter.on_error = handler

    @property
    def queue(self) -> QueueView:
        """The queue's size, as analytics-python's ``client.queue`` shows it: ``qsize()``,
        ``empty()``, ``full()``, ``maxsize`` (read-only)."""
        return QueueView(self.pipeline)

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        """Leaving a ``with Client(...) as client:`` block shuts the client down."""
        self.shutdown()

    # -- the six calls ------------------------------------------------------------------------

    def identify(
        self,
        user_id: Optional[IdValue] = None,
        traits: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[IdValue] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[MessageIdValue] = None,
        **unexpected: Any,
    ) -> Result:
        """Tie a user to their actions and record traits about them.

        Inside a request whose user is unknown (no login the integration can read), the user
        identified here becomes the request's user for its later messages.
        """
        try:
            reject_unknown("identify", unexpected)
            message = self._base(
                "identify", user_id, anonymous_id, context, timestamp, integrations, message_id
            )
            message["traits"] = dict_field("traits", traits)
        except ValidationError as error:
            return self._invalid(error, "identify")
        if user_id is not None:
            request = current_request_context()
            if request is not None and request.user_id is None:
                request.user_id = message["userId"]
        return self._enqueue(message)

    def track(
        self,
        user_id: Optional[IdValue] = None,
        event: Optional[str] = None,
        properties: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[IdValue] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[MessageIdValue] = None,
        **unexpected: Any,
    ) -> Result:
        """Record an action the user performed."""
        try:
            if unexpected:
                reject_unknown("track", unexpected)
            if type(event) is not str or not event:
                event = require_event(event)
            if type(properties) is not dict:
                properties = dict_field("properties", properties)
            message = self._base(
                "track", user_id, anonymous_id, context, timestamp, integrations, message_id
            )
        except ValidationError as error:
            return self._invalid(error, "track")
        message["event"] = event
        message["properties"] = properties
        return self._enqueue(message)

    def page(
        self,
        user_id: Optional[IdValue] = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[IdValue] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[MessageIdValue] = None,
        **unexpected: Any,
    ) -> Result:
        """Record a page view of a website."""
        try:
            reject_unknown("page", unexpected)
        except ValidationError as error:
            return self._invalid(error, "page")
        return self._view(
            "page",
            user_id,
            category,
            name,
            properties,
            context,
            timestamp,
            anonymous_id,
            integrations,
            message_id,
        )

    def screen(
        self,
        user_id: Optional[IdValue] = None,
        category: Optional[str] = None,
        name: Optional[str] = None,
        properties: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[IdValue] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[MessageIdValue] = None,
        **unexpected: Any,
    ) -> Result:
        """Record a screen view of a mobile app."""
        try:
            reject_unknown("screen", unexpected)
        except ValidationError as error:
            return self._invalid(error, "screen")
        return self._view(
            "screen",
            user_id,
            category,
            name,
            properties,
            context,
            timestamp,
            anonymous_id,
            integrations,
            message_id,
        )

    def group(
        self,
        user_id: Optional[IdValue] = None,
        group_id: Optional[IdValue] = None,
        traits: Optional[Fields] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        anonymous_id: Optional[IdValue] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[MessageIdValue] = None,
        **unexpected: Any,
    ) -> Result:
        """Associate a user with a group (an account, company, organisation)."""
        try:
            reject_unknown("group", unexpected)
            group_id = required_id("group", "group_id", group_id)
            message = self._base(
                "group", user_id, anonymous_id, context, timestamp, integrations, message_id
            )
            message["groupId"] = group_id
            message["traits"] = dict_field("traits", traits)
        except ValidationError as error:
            return self._invalid(error, "group")
        return self._enqueue(message)

    def alias(
        self,
        previous_id: Optional[IdValue] = None,
        user_id: Optional[IdValue] = None,
        context: Optional[Fields] = None,
        timestamp: Optional[Timestamp] = None,
        integrations: Optional[Fields] = None,
        message_id: Optional[MessageIdValue] = None,
        **unexpected: Any,
    ) -> Result:
        """Merge two user identities: ``previous_id`` becomes ``user_id``."""
        try:
            reject_unknown("alias", unexpected)
            previous = required_id("alias", "previous_id", previous_id)
            user = required_id("alias", "user_id", user_id)
            message = self._base(
                "alias",
                user,
                None,
                context,
                timestamp,
                integrations,
                message_id,
                require_identity=False,
                use_request_ids=False,
            )
        except ValidationError as error:
            return self._invalid(error, "alias")
        message["previousId"] = previous
        return self._enqueue(message)

    # -- delivery -----------------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Block until everything queued so far was delivered or reported (or ``timeout``)."""
        return self.pipeline.flush(_check_timeout(timeout))

    def join(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is queued, then stop the uploader thread(s); the same as shutdown()."""
        timeout = _check_timeout(timeout)
        return self.pipeline.shutdown(self.shutdown_timeout if timeout is None else timeout)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is queued, then stop the uploader thread(s) and close their connections.

        Returns within ``timeout`` seconds (default ``shutdown_timeout``) and a fraction: what
        is not delivered by then, waiting or in flight, goes to ``on_error`` at that moment
        (with ``persist``, it also stays in the spool for the next process). True when
        everything was delivered or reported in time. The client can be used again after it.
        """
        return self.join(timeout)

    def stats(self) -> Dict[str, int]:
        """Counters since the client was created (or since this process was forked).

        - ``accepted``: messages taken for delivery (calls that returned True);
        - ``queued``: accepted and not finished yet (waiting in the queue or in flight);
        - ``delivered``: accepted and answered 2xx;
        - ``failed``: accepted and finally handed to ``on_error`` (rejected, retries exhausted,
          not delivered by the end of shutdown);
        - ``dropped``: refused (the call returned False): a full queue, a message over 32 KB;
        - ``retried``: HTTP attempts repeated after a network error, 5xx or 429;
        - ``recovered``: with ``persist``, messages an ended process left in the spool, which
          this client took over (``queued`` includes messages waiting in the spool).

        ``accepted + recovered == queued + delivered + failed`` holds in every snapshot.
        """
        counts = self.pipeline.counts()
        return {
            "accepted": counts["accepted"] + self._sync_delivered + self._sync_failed,
            "recovered": counts["recovered"],
            "queued": counts["waiting"] + counts["in_flight"],
            "delivered": counts["delivered"] + self._sync_delivered,
            "failed": counts["failed"] + self._sync_failed,
            "dropped": self.dropped,
            "retried": counts["retried"],
        }

    # -- internals ----------------------------------------------------------------------------

    def _view(
        self,
        kind,
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
    ) -> Result:
        try:
            category = optional_text("category", category)
            name = optional_text("name", name)
            message = self._base(
                kind, user_id, anonymous_id, context, timestamp, integrations, message_id
            )
            message["properties"] = dict_field("properties", properties)
        except ValidationError as error:
            return self._invalid(error, kind)
        if name is not None:
            message["name"] = name
        if category is not None:
            message["category"] = category
        return self._enqueue(message)

    def _base(
        self,
        kind,
        user_id,
        anonymous_id,
        context,
        timestamp,
        integrations,
        message_id,
        require_identity=True,
        use_request_ids=True,
    ) -> Message:
        # current_request_context(), written out: every message takes this path.
        request = context_set_by_integration()
        if request is None and request_context_lookups:
            request = looked_up_request_context()
        if request is not None:
            context = merge_context(dict_field("context", context), request.context)
            if use_request_ids:
                user_id, anonymous_id = request_ids(request, user_id, anonymous_id)
        return base_message(
            kind,
            user_id,
            anonymous_id,
            context,
            timestamp,
            integrations,
            message_id,
            LIBRARY,
            require_identity,
        )

    def _invalid(self, error: ValidationError, kind: str) -> Result:
        """A call with bad arguments. Outside a request that is the caller's bug to see: raise.
        Inside one the arguments often come from the visitor (a form field, a JSON body), and
        the visitor's request must not fail for it: log, report, return False. Under a test
        capture it raises everywhere, so the bug shows in the test run."""
        if current_request_context() is None or capture.sink() is not None:
            raise error
        logger.error("analytics: a %s call inside a request was invalid: %s", kind, error)
        message: Message = {"type": kind}
        self._call_on_error(error, [message])
        return False, message

    def _enqueue(self, message: Message) -> Result:
        data = encode_message(message)
        add_absent_keys(message)
        if len(data) >= MAX_MESSAGE_BYTES:
            error = MessageTooLargeError(
                f"{message['type']} message {message['messageId']} is {len(data)} bytes encoded; "
                f"the limit is {MAX_MESSAGE_BYTES}"
            )
            return self._refuse(error, message)
        sink = capture.active
        if sink is None and capture.redirect is not None:
            sink = capture.sink()
        if sink is not None:  # a test run (analytics_events, Django's test runner): never send
            sink.append(decode_message(data))
            return True, message
        if not self.send:
            return True, message
        if self.sync_mode:
            return self._send_now(data, message), message
        if self.pipeline.put(data, self._block):
            return True, message
        if self._block is None:
            text = f"the queue is full (max_queue_size={self.pipeline.max_queue_size}); dropped"
        else:
            text = f"the queue stayed full for on_full_timeout={self.on_full_timeout}s; dropped"
        return self._refuse(QueueFullError(text), message)

    def _refuse(self, error: BaseException, message: Message) -> Result:
        self.dropped += 1
        self._drop_log.note(error)
        self._call_on_error(error, [message])
        return False, message

    def _send_now(self, data: bytes, message: Message) -> bool:
        from .encoding import join_batch
        from .ids import now_iso

        # Retries happen on the caller's thread here: bound them all by one `timeout`, so a
        # collector that is down costs a request seconds, not minutes of backoff.
        deadline = time.monotonic() + self.transport.timeout
        try:
            self.transport.send(
                join_batch([data], now_iso(), self.write_key or ""), deadline=deadline
            )
        except Exception as error:
            self._sync_failed += 1
            logger.warning("analytics: could not deliver a %s message: %s", message["type"], error)
            self._call_on_error(without_tracebacks(error), [message])
            return False
        self._sync_delivered += 1
        return True

    def _on_batch_failure(self, error: BaseException, batch: List[bytes]) -> None:
        self._reporter.batch_failed(error, batch)

    def _call_on_error(self, error: BaseException, items: List[Dict[str, Any]]) -> None:
        self._reporter.call(error, items)


class DropLog:
    """Warnings for refused messages, at most one line per ``interval`` seconds.

    A full queue refuses thousands of messages a second; one warning per message would flood
    the logs and cost more than the messages. The first refusal is logged at once, later ones
    are counted and summed up in the next line.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._next_log = 0.0
        self._unlogged = 0

    def note(self, error: BaseException) -> None:
        """Count one refusal; log it now if the last line is ``interval`` seconds old."""
        now = time.monotonic()
        with self._lock:
            if now < self._next_log:
                self._unlogged += 1
                return
            unlogged, self._unlogged = self._unlogged, 0
            self._next_log = now + self.interval
        if unlogged:
            logger.warning(
                "analytics: %s (and %d more refused in the last %gs)",
                error,
                unlogged,
                self.interval,
            )
        else:
            logger.warning("analytics: %s", error)


def _oauth_manager(client_id, client_key, key_id, auth_server, scope, *, timeout, proxies):
    missing = [
        name
        for name, value in (
            ("oauth_client_id", client_id),
            ("oauth_client_key", client_key),
            ("oauth_key_id", key_id),
        )
        if not value
    ]
    if missing:
        raise ValidationError(
            "OAuth needs all of oauth_client_id, oauth_client_key and "
            f"oauth_key_id; missing: {', '.join(missing)}"
        )
    from .oauth import OAuthTokenManager

    return OAuthTokenManager(
        client_id,
        client_key,
        key_id,
        auth_server=auth_server,
        scope=scope,
        timeout=timeout,
        proxies=proxies,
    )
