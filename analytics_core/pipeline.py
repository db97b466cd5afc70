"""The bounded queue of encoded messages and the uploader thread(s) that batch and send them.

A batch leaves when it holds ``upload_size`` messages, when it would reach the batch byte limit,
``upload_interval`` seconds after the uploader saw its first message, or at once when ``flush()``
asks. ``flush()`` knows exactly when everything queued before it has been delivered or reported:
messages are numbered in queue order, and everything below the oldest batch still in flight (or
below the next message to be taken) is finished.

Shutting down is bounded: what is not delivered by the deadline, waiting or in flight, is
reported then (a batch whose request never ends is given up, not waited for). A pipeline whose
client was dropped delivers what it holds, then its uploaders end (see :meth:`Pipeline.release`).
"""

import collections
import itertools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Set

from .encoding import MAX_BATCH_BYTES, batch_overhead, join_batch
from .errors import APIError
from .gil import yield_gil
from .ids import now_iso, prepare_message_ids
from .threads import start_thread
from .transport import Transport

if TYPE_CHECKING:  # the spool (and sqlite3) is imported only by clients that use one
    from .packing import Packed  # zlib too: only a stalled uploader's backlog is packed
    from .spool import Spool

logger = logging.getLogger("segment")

FailureHandler = Callable[[BaseException, List[bytes]], None]

SPOOL_CHECK_INTERVAL = 5.0
"""Seconds between looks at the spool for messages a process that ended left there."""

IDLE_CHECK_INTERVAL = 5.0
"""An idle uploader looks whether its client was dropped at least this often (see release())."""

YIELD_EVERY = 4
"""With four batches or more waiting, the caller lets go of the GIL on every 4th call."""

SLEEP_EVERY = 64
"""... and sleeps for an instant on every 64th, so that a sleeping uploader can take it."""

PACE_SHARE = 0.75
"""Past this share of ``max_queue_size`` a caller waits for the uploader (see _keep_pace)."""

PACE_WAIT = 0.002
"""The longest one call waits there: about one batch's round trip to a nearby API."""

STALL_AFTER = 0.1
"""A batch out this long (seconds) means a slow network or API: the backlog gets packed."""

PACK_RUN = 256
"""Messages per packed run: large enough to compress well, small enough to unpack quickly."""

PACK_AFTER = 2 * PACK_RUN
"""Packing starts when this many messages wait behind the packed runs (and the uploader's
next two batches)."""

ABORT_GRACE = 0.1
"""Seconds a shutdown that gave up still lets the uploaders close their connections."""

_draining: "Set[Pipeline]" = set()
"""Pipelines of dropped clients still delivering; the exit waits for them too."""


def draining() -> "List[Pipeline]":
    """Pipelines whose client was dropped and which still deliver, in this process."""
    pid = os.getpid()
    found = []
    for pipeline in _draining.copy():  # copy(): one step for the GIL, unlike iterating
        if pipeline._pid == pid:
            found.append(pipeline)
        else:  # a forked child's copy: the parent delivers those messages
            _draining.discard(pipeline)
    return found


def without_tracebacks(error: BaseException) -> BaseException:
    """``error`` with no traceback on it or on its causes, before it goes to ``on_error``.

    The frames of a failed send hold the batch body (with ``writeKey``) and the transport (with
    the auth header); an error reporter that records local variables would send them on. They
    are the transport's internals, of no use to the application.
    """
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return error


def _refused_for_good(error: Optional[BaseException]) -> bool:
    """A 4xx other than 429: sending the same batch again would be refused again."""
    status = getattr(error, "status", None)
    return (
        isinstance(error, APIError) and status is not None and 400 <= status < 500 and status != 429
    )


class Pipeline:
    """Queue + uploaders for one client. ``put`` is the only method on the caller's hot path."""

    def __init__(
        self,
        transport: Transport,
        write_key: Optional[str],
        *,
        max_queue_size: int = 10000,
        upload_size: int = 100,
        upload_interval: float = 0.5,
        threads: int = 1,
        on_failure: FailureHandler,
        spool: "Optional[Spool]" = None,
        shutdown_timeout: Optional[float] = None,
    ) -> None:
        self.transport = transport
        self.write_key = write_key or ""
        self.max_queue_size = max_queue_size
        self.upload_size = upload_size
        self.upload_interval = upload_interval
        self.thread_count = max(1, threads)
        self.on_failure = on_failure
        self.batch_limit = MAX_BATCH_BYTES - batch_overhead(self.write_key)
        # Four batches waiting means the uploader is behind (see _keep_pace()).
        self._yield_above = max(self.upload_size, min(4 * self.upload_size, max_queue_size // 2))
        self._pace_above = max(self._yield_above, int(max_queue_size * PACE_SHARE))
        self._keep_unpacked = min(2 * self.upload_size, PACK_RUN)
        self.spool = spool
        self.shutdown_timeout = shutdown_timeout
        """The client's ``shutdown_timeout``: what the exit allows a dropped client's pipeline."""
        self._generation = 0
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)  # a batch was delivered or reported
        # Waiting messages, oldest first: _head (unpacked, taken next), then runs packed while the
        # uploader was stalled (see _pack_run), then _queue, where put() appends. Without a
        # stall only _queue is used. _set_aside counts the messages in _head and _packed.
        self._head: collections.deque = collections.deque()
        self._packed: collections.deque[Packed] = collections.deque()
        self._set_aside = 0
        self._queue: collections.deque = collections.deque()
        self._queued_bytes = 0
        # A shutdown is under way: the spool's rows of processes that ended are left to the next
        # process (taken now, they would be reported as failed a second time at the deadline).
        self._leaving = False
        self._queued_total = 0  # messages ever accepted; message n has sequence number n - 1
        self._taken_total = 0  # messages handed to an uploader
        self._in_flight: Dict[int, int] = {}  # batch id -> sequence number of its first message
        self._in_flight_count = 0  # messages taken by an uploader and not delivered or reported
        self._flying: Dict[int, List[bytes]] = {}  # batch id -> its messages, while in flight
        self._reporting: Set[int] = set()  # batches failed, their uploader reporting them
        # Batches a shutdown gave up on (and reported) while their uploader was still out: what
        # the uploader learns about them later is not counted or reported again.
        self._abandoned: Set[int] = set()
        self._released = False  # the client was dropped (see release())
        self._live = 0  # uploader threads that have not ended
        self._next_batch_id = 0
        self._flush_target = 0  # send without waiting while taken_total is below this
        self._retrying = False  # a batch is being retried: the API is failing (see put())
        self._progress_at = time.monotonic()  # a batch finished, or left with none in flight
        self._idle_uploaders = 0
        self._stopping = False
        self._threads: List[threading.Thread] = []
        self._running = False
        self._generation += 1  # threads of an earlier generation end at their next batch
        self._pid = os.getpid()
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.accepted = 0  # put() calls that returned True
        # With a spool: the spool row of each queued message (None if writing it failed), the
        # rows of each batch in flight, this process's messages that are only in the spool (the
        # queue was full), and messages adopted from the spool of a process that ended.
        self._rows: collections.deque = collections.deque()
        self._batch_rows: Dict[int, List[Optional[int]]] = {}
        self._backlog = 0
        self.recovered = 0
        self._next_spool_check = 0.0

    # -- the caller's side --------------------------------------------------------------------

    def put(self, data: bytes, block: Optional[float] = None) -> bool:
        """Queue one encoded message; False when the queue is full.

        ``block`` (seconds): when the queue is full, wait up to that long for room first. An
        uploader thread never waits (an ``on_error`` handler that tracks must not stall it).
        """
        with self._lock:
            queue = self._queue
            tail = len(queue)
            size = tail + self._set_aside
            # Messages in flight count against the bound too: memory holds at most
            # max_queue_size messages whatever the uploader is doing.
            if size + self._in_flight_count >= self.max_queue_size:
                if self.spool is not None and self._spool_only(data):
                    return True
                if not block or threading.current_thread() in self._threads:
                    return False
                if not self._wait_for_room(block):
                    return False
                tail = len(queue)
                size = tail + self._set_aside
            if self.spool is not None:
                self._rows.append(self._spool_append(data, True))
            queue.append(data)
            self.accepted += 1
            self._queued_total += 1
            self._queued_bytes += len(data)
            # Wake an idle uploader only when it has something new to decide about.
            # A full batch's worth of bytes is due now too, not at the end of the interval.
            if self._idle_uploaders and (
                size == 0
                or size + 1 >= self.upload_size
                or size + 1 + self._in_flight_count >= self.max_queue_size
                or self._queued_bytes >= self.batch_limit
            ):
                self._has_items.notify()
            if tail >= PACK_AFTER and self._stalled():
                self._pack_run()
        if not self._running:
            self._start()
        elif size >= self._yield_above:
            self._keep_pace(size)
        return True

    def _keep_pace(self, size: int) -> None:
        """The caller's side when four batches or more wait (``size`` messages queued).

        The queue fills faster than the uploader drains it: most likely a caller in a tight
        loop, which holds the GIL for the whole switch interval (5 ms) each time the uploader
        comes back from the network and wants it, so the uploader falls further behind and
        the queue overflows (about 30,000 of 50,000 dropped in the benchmark's tight loop).

        - On every ``YIELD_EVERY``-th call the caller lets go of the GIL for a moment
          (:func:`yield_gil`, under a µs): an uploader that is already awake takes it.
        - On every ``SLEEP_EVERY``-th call it sleeps for an instant (``time.sleep(0)``, ~100 µs
          of wall time here): long enough for a sleeping uploader to wake and take the GIL,
          so it gets it within a fraction of a millisecond, not 5 ms.
        - Past ``PACE_SHARE`` of ``max_queue_size``, while the uploader is delivering (not
          retrying a failure), the caller waits for the next batch to finish, at most
          ``PACE_WAIT`` seconds: a producer that outruns the network slows to its pace
          instead of losing events. While the API fails, waiting would only slow the
          application, so a full queue drops at once, as without pacing; with a spool,
          overflow goes to the spool, so nobody waits.

        time.sleep(0) on every fourth call, as earlier versions did, cost ~48 µs of CPU per
        sleep on the development VM (what any sleep and wake-up of a thread costs there, see
        :mod:`.gil`): 4 µs of every call in the benchmark's loop.
        """
        if (
            size + self._in_flight_count >= self._pace_above
            and self.spool is None
            and not self._retrying
            and threading.current_thread() not in self._threads
            and self._uploaders_alive()
        ):
            with self._lock:
                if self._waiting() + self._in_flight_count >= self._pace_above:
                    self._has_items.notify()  # a batch is due now, not at the interval's end
                    self._room.wait(PACE_WAIT)
        elif not size % SLEEP_EVERY:
            time.sleep(0)
        elif not size % YIELD_EVERY:
            yield_gil()

    def _waiting(self) -> int:
        """Under the lock: messages waiting in memory for an uploader."""
        return len(self._queue) + self._set_aside

    def _stalled(self) -> bool:
        """Under the lock: the uploader is not getting batches through (one has been out for
        ``STALL_AFTER`` seconds, or it is retrying a failure), so the queue will keep growing."""
        return self._retrying or (
            self._in_flight_count > 0 and time.monotonic() - self._progress_at >= STALL_AFTER
        )

    def _pack_run(self) -> None:
        """Under the lock, the uploader stalled: compress the oldest ``PACK_RUN`` messages of
        ``_queue`` into one run (see :mod:`.packing`). The uploader's next messages stay
        unpacked in ``_head``, so a stall that ends costs it no unpacking at first."""
        queue = self._queue
        head = self._head
        if not self._packed:  # only then is _queue's front next after _head
            keep = self._keep_unpacked - len(head)
            for _ in range(max(0, min(keep, len(queue) - PACK_RUN))):
                head.append(queue.popleft())
                self._set_aside += 1
        if len(queue) < PACK_RUN:
            return
        from .packing import pack

        try:
            run = pack(list(itertools.islice(queue, PACK_RUN)))
        except Exception:  # (MemoryError) they stay as they are: nothing is lost
            logger.exception("analytics: could not pack the queue's backlog")
            return
        for _ in range(PACK_RUN):
            queue.popleft()
        self._packed.append(run)
        self._set_aside += PACK_RUN

    def _wait_for_room(self, seconds: float) -> bool:
        """Under the lock: wait until the queue has room, at most ``seconds``."""
        deadline = time.monotonic() + seconds
        while self._waiting() + self._in_flight_count >= self.max_queue_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if not self._uploaders_alive() or self._pid != os.getpid():
                # Nobody drains the queue (forked, stopped, or the thread died): start them.
                self._running = False
                self._lock.release()
                try:
                    self._start()
                finally:
                    self._lock.acquire()
            # A full queue is a batch due now: make sure an uploader is not waiting out the
            # interval, then sleep until a batch was finished.
            self._has_items.notify_all()
            self._room.wait(min(remaining, 0.2))
        return True

    def _spool_append(self, data: bytes, queued: bool) -> Optional[int]:
        """Under the lock: write one message to the spool; None if that failed (then it lives
        in memory only, as without a spool: the caller's call must not fail for it)."""
        try:
            return self.spool.append(data, queued=queued)  # type: ignore[union-attr]
        except Exception:
            logger.exception("analytics: could not write to the spool; keeping it in memory")
            return None

    def _spool_only(self, data: bytes) -> bool:
        """Under the lock, the queue full: keep the message in the spool alone, for later."""
        if self._spool_append(data, False) is None:
            return False
        self.accepted += 1
        self._backlog += 1
        return True

    def _refill_from_spool(self) -> None:
        """Move spool-only messages (this process's overflow, or those of a process that ended,
        which the spool hands over) into the queue while it has room.

        Called by an uploader between batches, and once when the client starts. Under the lock
        throughout, so the backlog count stays exact against concurrent ``put`` calls.
        """
        spool = self.spool
        if spool is None:
            return
        with self._lock:
            room = self.max_queue_size - self._waiting() - self._in_flight_count
            if room <= 0 or (self._backlog <= 0 and time.monotonic() < self._next_spool_check):
                return
            self._next_spool_check = time.monotonic() + SPOOL_CHECK_INTERVAL
            try:
                rows = spool.take_backlog(room, adopt=not self._leaving)
                remaining = spool.backlog_count()
            except Exception:
                logger.exception("analytics: could not read the spool")
                return
            adopted = len(rows) + remaining - self._backlog
            self.recovered += max(0, adopted)
            self._backlog = remaining
            for row, data in rows:
                self._rows.append(row)
                self._queue.append(data)
                self._queued_bytes += len(data)
            self._queued_total += len(rows)
            if rows:
                self._has_items.notify()
        if adopted > 0:
            logger.info("analytics: re-sending %d message(s) left in the spool", adopted)

    def pending(self) -> int:
        """Messages accepted but not yet delivered or reported."""
        with self._lock:
            return self._queued_total - self._done_upto()

    def counts(self) -> Dict[str, int]:
        """Accepted, waiting (in the queue), in flight, delivered, failed, retried: one snapshot."""
        with self._lock:
            waiting = self._waiting() + self._backlog
            return {
                "accepted": self.accepted,
                "recovered": self.recovered,
                "waiting": waiting,
                "in_flight": self._in_flight_count,
                "spooled": self._backlog,
                "delivered": self.delivered,
                "failed": self.failed,
                "retried": self.retried,
            }

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Block until every message queued before this call is delivered or reported.

        Returns False if ``timeout`` (seconds) ran out first. If no uploader thread is alive
        (it died, or this process was forked and none was started yet) the caller's thread sends.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._queued_total
            if target > self._flush_target:
                self._flush_target = target
            self._has_items.notify_all()
        spilled = False
        while True:
            with self._lock:
                if self._backlog:
                    spilled = True
                elif spilled:
                    # The spool's overflow has all come into the queue (a refill moves it and
                    # zeroes the backlog in one step, before a batch takes it): wait for all of
                    # it, not only for what was in the queue when the backlog was last seen.
                    target = max(target, self._queued_total)
                    self._flush_target = max(self._flush_target, target)
                    spilled = False
                if self._done_upto() >= target:
                    if not self._backlog:
                        return True
                    # This process's overflow still waits in the spool: it counts as queued
                    # before this call, and comes into the queue as batches leave.
                    target = max(target, self._queued_total + 1)
                    self._flush_target = max(self._flush_target, target)
                    self._has_items.notify_all()
                if self._uploaders_alive():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._progress.wait(0.2 if remaining is None else min(0.2, remaining))
                    continue
            # Nobody is uploading: do it here rather than wait forever.
            self._refill_from_spool()
            if self._send_one_batch(deadline):
                continue
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)  # a batch of a dead uploader is still finishing its report

    def _done_upto(self) -> int:
        if self._in_flight:
            return min(self._in_flight.values())
        return self._taken_total

    def _uploaders_alive(self) -> bool:
        return self._running and any(thread.is_alive() for thread in self._threads)

    # -- the uploader's side ------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._running and self._pid == os.getpid():
                return
            self._stopping = False
            self._generation += 1
            self._threads = []
            self._running = True
            for index in range(self.thread_count):
                name = f"analytics-uploader-{index}"
                self._threads.append(start_thread(self._run, (self._generation,), name))
                self._live += 1  # it waits for this lock before it can end

    def _run(self, generation: int) -> None:
        try:
            while True:
                try:
                    # Between batches: the next message ids, so callers need not draw them.
                    prepare_message_ids()
                    self._refill_from_spool()
                    if not self._send_one_batch(None, wait=True, generation=generation):
                        return
                except Exception:  # never let the uploader die: log and go on
                    logger.exception("analytics: unexpected error in the uploader")
        finally:
            self._thread_ended()

    def _thread_ended(self) -> None:
        """An uploader ends: free its connection; the last one of a dropped client's pipeline
        lets go of the spool too (nothing else will)."""
        try:
            self.transport.close_session()
        except Exception:
            logger.debug("analytics: closing the uploader's connection failed", exc_info=True)
        with self._lock:
            self._live -= 1
            last = self._live <= 0 and self._released and self._pid == os.getpid()
        if last:
            _draining.discard(self)
            self.close_spool()

    def _take_batch(
        self, wait: bool, generation: Optional[int] = None
    ) -> "Optional[tuple[int, List[bytes]]]":
        """Under the lock: wait until a batch is due and take it; (-1, []) when there is nothing
        to send yet (look at the spool, then come back), None when stopping and empty (or for
        an uploader of an earlier generation: a shutdown gave up on it, others took over)."""
        queue = self._queue
        if wait:
            if generation is not None and generation != self._generation:
                return None
            while not queue and not self._set_aside:
                if self._stopping or self._released:
                    return None
                if self._backlog:
                    return -1, []  # the spool has messages for the queue: refill first
                self._idle_uploaders += 1
                # Look at the spool again now and then (a process that ended may have left
                # messages there), and whether the client was dropped (release() may not have
                # been able to wake us).
                woken = self._has_items.wait(
                    IDLE_CHECK_INTERVAL if self.spool is None else SPOOL_CHECK_INTERVAL
                )
                self._idle_uploaders -= 1
                if not woken and not queue and not self._set_aside:
                    return -1, []
            due = time.monotonic() + self.upload_interval
            # Due early: a full batch, a full batch's bytes, a full queue (max_queue_size may be
            # below upload_size), or a flush waiting for these messages.
            while (
                len(queue) + self._set_aside < self.upload_size
                and len(queue) + self._set_aside + self._in_flight_count < self.max_queue_size
                and self._queued_bytes < self.batch_limit
                and self._taken_total >= self._flush_target
                and not self._stopping
                and not self._released
            ):
                remaining = due - time.monotonic()
                if remaining <= 0:
                    break
                self._idle_uploaders += 1
                self._has_items.wait(remaining)
                self._idle_uploaders -= 1
            if not queue and not self._set_aside:
                return None if self._stopping else (-1, [])
        elif not queue and not self._set_aside:
            return None
        batch, size = self._take_messages()
        self._queued_bytes -= size - len(batch)
        if not self._in_flight:
            self._progress_at = time.monotonic()
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        self._in_flight[batch_id] = self._taken_total
        self._flying[batch_id] = batch
        self._in_flight_count += len(batch)
        self._taken_total += len(batch)
        if self.spool is not None:
            rows = self._rows
            self._batch_rows[batch_id] = [rows.popleft() for _ in batch]
        return batch_id, batch

    def _take_messages(self) -> "tuple[List[bytes], int]":
        """Under the lock: the next batch's messages, oldest first, and their size in the batch
        (each message's bytes and a comma): at most ``upload_size`` of them, within
        ``batch_limit`` bytes (a first message is taken whatever its size)."""
        head, queue = self._head, self._queue
        if not head and not self._packed:
            # The usual case, in bulk (callers wait for this lock meanwhile): the next
            # upload_size messages, put back if together they pass the byte limit.
            popleft = queue.popleft
            batch = [popleft() for _ in range(min(len(queue), self.upload_size))]
            size = sum(map(len, batch)) + len(batch)
            if size <= self.batch_limit or len(batch) <= 1:
                return batch, size
            queue.extendleft(reversed(batch))
        batch = []
        size = 0
        while len(batch) < self.upload_size:
            if not head and self._packed:
                head.extend(self._packed.popleft().unpack())
            source = head if head else queue
            if not source:
                break
            item_size = len(source[0]) + 1
            if batch and size + item_size > self.batch_limit:
                break
            batch.append(source.popleft())
            size += item_size
            if source is head:
                self._set_aside -= 1
        return batch, size

    def _send_one_batch(
        self, deadline: Optional[float], wait: bool = False, generation: Optional[int] = None
    ) -> bool:
        """Take one batch and deliver or report it. False when there was nothing (left) to do."""
        with self._lock:
            taken = self._take_batch(wait, generation)
        if taken is None:
            return False
        batch_id, batch = taken
        if not batch:
            return True
        error: Optional[BaseException] = RuntimeError("analytics: the uploader was interrupted")
        try:
            body = join_batch(batch, now_iso(), self.write_key)
            self.transport.send(body, on_retry=self._count_retry, deadline=deadline)
            error = None
        except Exception as exc:
            error = exc
            if self._claim_report(batch_id):
                self._report(exc, batch)
        finally:  # even when on_error ends the thread (sys.exit() in it)
            self._finish(batch_id, batch, error)
        return True

    def _claim_report(self, batch_id: int) -> bool:
        """Whether the uploader reports its failed batch: not when a shutdown already did
        (and from now on, a shutdown leaves it to the uploader)."""
        with self._lock:
            if batch_id in self._abandoned:
                return False
            self._reporting.add(batch_id)
            return True

    def _finish(self, batch_id: int, batch: List[bytes], error: Optional[BaseException]) -> None:
        """Count one batch as delivered (``error`` None) or failed and settle its spool rows."""
        delivered = error is None
        with self._lock:
            late = batch_id in self._abandoned
            self._abandoned.discard(batch_id)
            rows = self._batch_rows.pop(batch_id, None)
            if not late:  # a batch a shutdown gave up on was counted (and reported) then
                self._in_flight.pop(batch_id, None)
                self._flying.pop(batch_id, None)
                self._reporting.discard(batch_id)
                self._in_flight_count -= len(batch)
                if delivered:
                    self.delivered += len(batch)
                else:
                    self.failed += len(batch)
                self._retrying = not delivered
                self._progress_at = time.monotonic()
                self._progress.notify_all()
                self._room.notify_all()
        if late:
            if delivered:
                # Reported as not delivered, yet it arrived: its spool rows go (no resend).
                logger.info("analytics: a batch given up at shutdown was delivered after all")
                if rows is not None:
                    self._settle_rows(rows, True, None, quiet=True)
            return
        if rows is not None:
            self._settle_rows(rows, delivered, error)
        if delivered:
            logger.debug("analytics: delivered a batch of %d", len(batch))

    def _settle_rows(
        self,
        rows: List[Optional[int]],
        delivered: bool,
        error: Optional[BaseException],
        quiet: bool = False,
    ) -> None:
        """Remove a batch's spool rows once it was answered 2xx, or refused for good (4xx).

        A batch that failed for a transient reason (network, 5xx, 429, shutdown) was reported,
        and its rows stay in the spool: the next process that opens it sends them again.
        """
        if not delivered and not _refused_for_good(error):
            return
        try:
            self.spool.remove([row for row in rows if row is not None])  # type: ignore[union-attr]
        except Exception:
            if quiet:  # after a shutdown closed the spool: the next process resends them
                logger.debug("analytics: could not remove messages from the spool", exc_info=True)
            else:
                logger.exception("analytics: could not remove delivered messages from the spool")

    def _count_retry(self, attempt: int, error: BaseException) -> None:
        with self._lock:
            self.retried += 1
            self._retrying = True

    def _report(self, error: BaseException, batch: List[bytes]) -> None:
        # Said when the spool keeps them, so that reports counted across processes are not
        # read as losses.
        kept = self.spool is not None and not _refused_for_good(error)
        logger.warning(
            "analytics: could not deliver %d message(s): %s%s",
            len(batch),
            error,
            " (kept in the spool: the next process that opens it sends them)" if kept else "",
        )
        without_tracebacks(error)
        try:
            self.on_failure(error, batch)
        except Exception:
            logger.exception("analytics: the failure handler raised")

    # -- lifecycle ----------------------------------------------------------------------------

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is queued (within ``timeout`` seconds), then stop the uploaders.

        It returns within about ``timeout``: what is not delivered by then, waiting or in
        flight, is reported through the failure handler at that moment (a request that never
        ends is given up, its connection shut). A later ``put`` starts the uploaders again.
        Returns True when everything queued before the call was delivered or reported by the
        uploaders within the time. An infinite ``timeout`` waits as long as None does.
        """
        if timeout is not None and not timeout < threading.TIMEOUT_MAX:
            timeout = None  # infinity: Python's waits cannot take it
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._leaving = True
        finished = self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._has_items.notify_all()
            threads = [
                thread for thread in self._threads if thread is not threading.current_thread()
            ]
        if timeout is None:
            error = TimeoutError("shutdown: not delivered before the uploader stopped")
        else:
            error = TimeoutError(f"shutdown: not delivered within {timeout:.3g}s")
        if finished:
            # Idle uploaders end at once; one busy with messages queued during the shutdown
            # may use what is left of the time.
            now = time.monotonic()
            end = now + 2.0 if deadline is None else max(deadline, now + ABORT_GRACE)
        else:
            self.give_up(error)
            end = time.monotonic() + ABORT_GRACE
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        self.give_up(error)  # anything queued or taken since (then the uploaders were stopped)
        with self._lock:
            self._running = False
            self._leaving = False
            self._threads = []
            self._generation += 1
            self._progress.notify_all()
        self.transport.rearm()
        _draining.discard(self)
        return finished

    def give_up(self, error: BaseException) -> int:
        """Report everything not delivered yet, waiting or in flight, with ``error``; return
        how many messages that was. The requests of batches in flight are cut short, and
        their uploaders, whenever they come back, neither count nor report them again. A batch
        whose uploader is reporting its failure right now is left to it.

        Their spool rows (if any) stay: the next process that opens the spool sends them.
        """
        with self._lock:
            stranded: List[bytes] = []
            for batch_id in sorted(self._flying):
                if batch_id in self._reporting:
                    continue
                items = self._flying.pop(batch_id)
                del self._in_flight[batch_id]
                self._abandoned.add(batch_id)
                self._in_flight_count -= len(items)
                stranded.extend(items)
            leftover = list(self._head)
            for run in self._packed:
                leftover.extend(run.unpack())
            leftover.extend(self._queue)
            self._head.clear()
            self._packed.clear()
            self._set_aside = 0
            self._queue.clear()
            self._rows.clear()
            self._taken_total += len(leftover)
            self._queued_bytes = 0
            self.failed += len(stranded) + len(leftover)
            self._progress.notify_all()
            self._room.notify_all()
        if stranded:
            self.transport.abort()  # cut their requests and retry waits short
        items = stranded + leftover
        if items:
            self._report(error, items)
        return len(items)

    def release(self) -> None:
        """The client was dropped (called by ``Client.__del__``): deliver what it queued
        in the background, then end the uploaders and close their connections.

        It may run inside the garbage collector, on whichever thread it interrupted, maybe an
        uploader holding the lock: so it never waits for the lock. When it cannot take it at
        once, the uploaders see the flag by themselves (at most IDLE_CHECK_INTERVAL later).
        """
        if self._pid != os.getpid():
            return
        self._released = True
        if not self._running:
            self.close_spool()
            return
        _draining.add(self)  # the exit delivers what is left, within the time it allows
        if self._lock.acquire(blocking=False):
            try:
                self._has_items.notify_all()
            finally:
                self._lock.release()

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, an empty queue, no threads (the parent sends its own)."""
        self._init_state()
        self.transport.reset()
        if self.spool is not None:
            self.spool.reopen_after_fork()  # the parent's rows stay the parent's

    def start(self) -> None:
        """Start the uploader(s) now: with a spool, messages an ended process left there are
        taken into the queue first, so a ``flush()`` right away waits for them too."""
        self._refill_from_spool()
        self._start()

    def close_spool(self) -> None:
        """Let go of the spool (at exit): what it still holds waits for the next process."""
        if self.spool is not None:
            try:
                self.spool.close()
            except Exception:
                logger.exception("analytics: could not close the spool")
