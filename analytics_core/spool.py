"""The durable spool behind ``Client(persist="spool.db")``: accepted messages as rows.

A message is a row, durable before the caller's call returns and removed once the collector
answered 2xx (or refused it for good). What a process could not deliver stays for the next
process that opens the file with the same write key.

Where a row lives:

- ``append`` writes it to the owner's journal (:mod:`analytics_core.journal`): one ``os.pwrite``
  to a segment file beside the database, instead of a SQLite commit (about 3 µs of the caller's
  CPU instead of 15-25). Its id comes from a block this owner reserved in SQLite's own
  AUTOINCREMENT counter, so ids stay unique across processes and are never reused;
- ``remove`` of a row still in the journal writes a ``GONE`` record. A segment whose rows are
  all gone is deleted: while the uploader keeps up, rows never reach SQLite at all;
- rows move into the SQLite table (``INSERT OR IGNORE`` by id, so moving twice is harmless),
  then are marked gone in the journal, when ``take_backlog`` needs the spool-only ones, when an
  owner has more than ``MAX_SEGMENTS`` segments (nothing is being delivered), and at ``close``;
- the rows of an owner that ended are its table rows plus what its segments still hold.

Several processes may share one file (gunicorn workers reading one settings module):

- each ``Spool`` is an *owner* with a token of its own (pid + random), written in its rows and
  in the ``owners`` table;
- while it lives it holds an exclusive ``flock`` on ``<path>-owners/<token>.lock``. The kernel
  drops the lock however the process ends, SIGKILL included, and pid reuse does not matter, so
  "I can take its lock, or its lock file is gone" means "that owner has ended";
- adopting an ended owner's rows happens in a write transaction, which SQLite serialises across
  processes: two live processes never adopt the same row.

Rows are partitioned by the SHA-256 of the write key; the key itself is never written. WAL with
``synchronous=NORMAL`` makes a commit durable against a crashed process (which SIGKILL is), not
against a power cut, for a fraction of the cost of an fsync per message; a journal record is
durable in the same way.

No SQLite connection crosses an ``os.fork()``. SQLite forbids using or closing an inherited one,
and a new connection opened beside it in the child shares its in-process lock records, so the
child holds no real lock on the file: when the parent then closes its connection, SQLite thinks
it is the last user and deletes the WAL, and the child's later commits are lost (reproduced in
tests/test_spool.py). So a fork hook closes every spool's connection just before the fork; the
parent reopens it on its next call, the child gets a new owner, lock file and connection.
The journal's segments are the parent's too: the child starts segments (and an id block) of its
own.
"""

import contextlib
import hashlib
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
import weakref
from typing import Any, Callable, List, Optional, Sequence, Set, Tuple

from . import journal
from .errors import SpoolError
from .journal import Segment

try:
    import fcntl
except ImportError:  # Windows: no flock, so no way to tell a live owner from an ended one
    fcntl = None  # type: ignore[assignment]

__all__ = ["Spool", "SpoolError"]

logger = logging.getLogger("segment")

ADOPT_INTERVAL = 5.0
"""Seconds between two looks (in ``take_backlog``) for the rows of owners that ended."""

BUSY_TIMEOUT = 5.0
"""Seconds a statement waits for another process's write transaction before failing."""

CHECKPOINT_EVERY = 4
"""Hundreds of rows written to the table (removed from it, or moved into it from the journal)
between two checkpoints of the WAL into the database file."""

ID_BLOCK = 4096
"""Row ids an owner reserves at once: one short write transaction per 4,096 appends."""

SEGMENT_BYTES = 1 << 20
"""A journal segment takes records up to this size; then the next one starts."""

MAX_SEGMENTS = 4
"""Past this many segments of one owner (nothing is being delivered), the oldest one's rows
move into the table: the journal, and the ids this process remembers for it, stay bounded."""

_APPLICATION_ID = 0x41435350  # "ACSP": our file, not another program's SQLite database
_COLUMNS = {
    "messages": {"id", "key_hash", "owner", "queued", "data"},
    "owners": {"token", "key_hash"},
}
_TOKEN = re.compile(r"[0-9]+-[0-9a-f]{16,32}")  # tokens become file names: nothing else does

# OR IGNORE: a row moved from a journal twice (its mover died before marking it gone) stays one.
_INSERT_ID = (
    "INSERT OR IGNORE INTO messages (id, key_hash, owner, queued, data) VALUES (?, ?, ?, ?, ?)"
)
_SCHEMA = (
    # AUTOINCREMENT: ids are never reused, so a stale id never removes a newer message.
    "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " key_hash TEXT NOT NULL, owner TEXT NOT NULL, queued INTEGER NOT NULL, data BLOB NOT NULL)",
    # Partial, so the usual append (queued=1) does not touch it: a full index on (key_hash,
    # owner, queued, id) cost each append one more page write, about 12 of its 55 us.
    "CREATE INDEX IF NOT EXISTS messages_backlog ON messages (key_hash, owner, id)"
    " WHERE queued = 0",
    # Adopters look here, instead of scanning every message every few seconds.
    "CREATE TABLE IF NOT EXISTS owners (token TEXT PRIMARY KEY, key_hash TEXT NOT NULL)",
    f"PRAGMA application_id = {_APPLICATION_ID}",
)


class Spool:
    """One owner's handle on a spool file (see the module docstring).

    Thread-safe: the callers' threads append while the uploader takes and removes, one at a
    time on one connection (connections per thread would contend through SQLite's busy
    handler, which sleeps and retries rather than queueing).
    """

    def __init__(self, path: str, write_key: str, adopt_interval: float = ADOPT_INTERVAL) -> None:
        self._path = os.path.abspath(os.fspath(path))
        if fcntl is None:
            raise SpoolError(f"spool {self._path!r}: needs fcntl.flock, which this platform lacks")
        self.adopt_interval = adopt_interval
        self._key_hash = hashlib.sha256(write_key.encode("utf-8")).hexdigest()
        self._owners_dir = self._path + "-owners"
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = self._held_for_fork = False
        self._connection: Optional[sqlite3.Connection] = None
        # Checkpoints run on a connection of their own, from the uploader (see _checkpoint).
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: Optional[sqlite3.Connection] = None
        self._table_writes = 0
        # The journal: segments oldest first, the last one taking appends; the id block.
        # _journal_lock guards them; taken after _lock when both are needed, never before it.
        self._journal_lock = threading.Lock()
        self._segments: List[Segment] = []
        self._moving: Set[int] = set()  # rows being moved into the table (see _move_to_table)
        self._segment_number = 0
        self._next_id = self._id_end = 0
        self._owner: Optional[str] = None
        self._owner_fd: Optional[int] = None
        self._next_adoption = 0.0
        self._check_path()
        with self._lock:
            self._connection = self._connect(first=True)
            try:
                self._transaction("cannot prepare its tables", self._prepare_schema)
                self._register_owner()
            except BaseException:
                self._connection.close()  # opened in this process: closing it is safe
                self._connection = None
                raise
        _track(self)

    @property
    def path(self) -> str:
        """The database file's absolute path."""
        return self._path

    def __repr__(self) -> str:  # no write key, not even its hash
        return f"<Spool path={self._path!r}>"

    # -- rows ---------------------------------------------------------------------------------

    def append(self, data: bytes, queued: bool = True) -> int:
        """Store one encoded message of this owner, durable before returning; its row id.

        ``queued``: it is in the memory queue too; False: only here (the queue was full), to be
        handed out by :meth:`take_backlog`.
        """
        while True:
            with self._journal_lock:
                segments = self._segments
                if segments and self._next_id < self._id_end and segments[-1].size < SEGMENT_BYTES:
                    segment = segments[-1]
                    row_id = self._next_id
                    try:
                        offset = segment.write(journal.encode(journal.APPEND, row_id, data))
                    except OSError as error:
                        raise self._error("could not store a message", error) from error
                    self._next_id = row_id + 1
                    segment.live[row_id] = offset
                    if not queued:
                        segment.spool_only.add(row_id)
                    return row_id
            self._make_room_to_append()

    def _make_room_to_append(self) -> None:
        """The slow path of :meth:`append`: connect (a forked child registers its owner here),
        reserve ids, start a segment, and move the oldest segment's rows into the table when
        there are too many."""
        with self._lock:
            if self._closed:
                raise SpoolError(f"spool {self._path!r}: is closed")
            if self._connection is None:
                self._reconnect()
            block: Optional[Tuple[int, int]] = None
            if self._next_id >= self._id_end:
                block = self._transaction("could not reserve row ids", _reserve_ids)
            with self._journal_lock:
                if block is not None and self._next_id >= self._id_end:
                    self._next_id, self._id_end = block
                if not self._segments or self._segments[-1].size >= SEGMENT_BYTES:
                    self._start_segment()
            while len(self._segments) > MAX_SEGMENTS:
                oldest = self._segments[0]
                self._move_to_table(lambda segment, _, oldest=oldest: segment is oldest)

    def _start_segment(self) -> None:
        """Under both locks: a new segment takes the appends; a full one with no live rows goes."""
        self._segment_number += 1
        name = journal.segment_name(self._owner or "", self._segment_number)
        try:
            segment = Segment(os.path.join(self._owners_dir, name))
        except OSError as error:
            raise self._error("cannot start a journal segment", error) from None
        self._segments.append(segment)
        self._drop_empty_segments()

    def _drop_empty_segments(self) -> None:
        """Under the journal lock: delete the segments, but the last, that hold no live row."""
        for segment in self._segments[:-1]:
            if not segment.live:
                self._segments.remove(segment)
                try:
                    segment.close_and_remove()
                except OSError as error:  # left behind: an adopter replays it, all gone
                    logger.debug("analytics: could not delete a journal segment: %s", error)

    def _take_from_journal(self, ids: Sequence[int], spool_only: bool = False) -> List[int]:
        """Under the journal lock: mark ``ids`` gone from the journal (or, with ``spool_only``,
        spool-only); the ids that were not the journal's, for the table."""
        elsewhere = []
        gone = []
        moving = self._moving
        for row_id in ids:
            if row_id in moving:  # being moved into the table: it is settled there
                elsewhere.append(row_id)
                continue
            for segment in self._segments:
                if row_id in segment.live:
                    if spool_only:
                        segment.spool_only.add(row_id)
                    else:
                        del segment.live[row_id]
                        segment.spool_only.discard(row_id)
                        gone.append(row_id)
                    break
            else:
                elsewhere.append(row_id)
        if gone:
            self._write_gone(gone)
        return elsewhere

    def _write_gone(self, ids: List[int]) -> None:
        """Under the journal lock: record that ``ids`` left the journal; drop emptied segments."""
        try:
            self._segments[-1].write(journal.gone_record(ids))
        except OSError as error:
            # The rows stay live on disk: a crash now would send them again (never lose them).
            logger.warning(
                "analytics: spool %r: could not journal removals (%s)", self._path, error
            )
        self._drop_empty_segments()

    def _move_to_table(self, which: Callable[[Segment, int], bool]) -> None:
        """Under the lock: move the journal's live rows for which ``which(segment, id)`` holds
        into the table, in one transaction, then mark them gone from the journal.

        Until the commit they stay live in their segment (so no segment file is deleted under
        them, whatever is removed meanwhile) and are listed in ``_moving``: a concurrent
        ``remove`` or ``requeue`` of one of them goes to the table, waiting for the lock, and
        so finds the committed row.
        """
        moving: List[Tuple[Segment, int, int, bytes]] = []
        with self._journal_lock:
            try:
                for segment in self._segments:
                    for row_id, offset in segment.live.items():
                        if row_id not in self._moving and which(segment, row_id):
                            data = journal.read_payload(segment.descriptor, offset)
                            queued = 0 if row_id in segment.spool_only else 1
                            moving.append((segment, row_id, queued, data))
            except OSError as error:
                raise self._error("could not read its journal", error) from error
            ids = [row_id for _, row_id, _, _ in moving]
            self._moving.update(ids)
        if not moving:
            return
        rows = [
            (row_id, self._key_hash, self._owner, queued, data)
            for _, row_id, queued, data in moving
        ]
        try:
            self._transaction(
                "could not move rows into the table", lambda db: db.executemany(_INSERT_ID, rows)
            )
        except BaseException:
            with self._journal_lock:  # not moved: still the journal's, as they were
                self._moving.difference_update(ids)
            raise
        with self._journal_lock:  # committed: the rows are the table's now
            for segment, row_id, _, _ in moving:
                segment.live.pop(row_id, None)
                segment.spool_only.discard(row_id)
            self._moving.difference_update(ids)
            self._write_gone(ids)
        self._count_table_write(len(rows))

    def remove(self, ids: Sequence[int]) -> None:
        """Remove rows (delivered, or finally reported as failed).

        Whoever owns them: a row adopted meanwhile by another process was delivered all the same.
        """
        if not ids:
            return
        with self._journal_lock:
            in_table = self._take_from_journal(ids)
        if in_table:
            self._each_row(
                "could not remove", "DELETE FROM messages WHERE id = ? AND key_hash = ?", in_table
            )
            self._count_table_write(len(in_table))

    def _count_table_write(self, rows: int) -> None:
        """Checkpoint after about ``CHECKPOINT_EVERY`` hundred rows written to the table."""
        before = self._table_writes // CHECKPOINT_EVERY
        self._table_writes += max(1, rows // 100)
        if self._table_writes // CHECKPOINT_EVERY != before:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the WAL's pages into the database file, after every few writes to the table.

        SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 WAL pages, and
        made that commit take several milliseconds. Here the main connection has it off, and
        this one, used by nothing else, runs a PASSIVE checkpoint: it copies what no reader
        still needs and never waits for, nor blocks, a writer.
        Durability is unchanged: a committed row is in the WAL before the commit returns.
        """
        with self._checkpoint_lock:
            if self._closed or self._pid != os.getpid():
                return
            try:
                db = self._checkpointer
                if db is None:
                    db = self._checkpointer = sqlite3.connect(
                        self._path, timeout=0, isolation_level=None, check_same_thread=False
                    )
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as error:  # busy, or the file went away: the next one will do
                logger.debug("analytics: spool checkpoint skipped: %s", error)

    def _close_checkpointer(self) -> None:
        """Under ``_checkpoint_lock``, in the process that opened it."""
        if self._checkpointer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._checkpointer.close()
            self._checkpointer = None

    def requeue(self, ids: Sequence[int]) -> None:
        """Make rows of this owner spool-only again (one transaction), for :meth:`take_backlog`
        here, or in the process that adopts them if this one ends first."""
        if not ids:
            return
        with self._journal_lock:
            ids = self._take_from_journal(ids, spool_only=True)
        self._each_row(
            "could not requeue",
            "UPDATE messages SET queued = 0 WHERE id = ? AND key_hash = ? AND owner = ?",
            ids,
            own=True,
        )

    def take_backlog(self, limit: int, adopt: bool = True) -> List[Tuple[int, bytes]]:
        """Up to ``limit`` spool-only rows of this owner, oldest first, now marked queued.

        Before, on the first call and then at most every ``adopt_interval`` seconds, the rows of
        owners that ended (same write key) become spool-only rows of this owner; not when
        ``adopt`` is False (a process on its way out leaves them to the next one).
        """
        with self._lock:
            if self._connection is None:
                self._reconnect()  # first, so that a new owner (a forked child) adopts at once
            adopt = adopt and time.monotonic() >= self._next_adoption
            if adopt:
                self._next_adoption = time.monotonic() + self.adopt_interval

            # The journal's spool-only rows join the table's first, so both come out in id order.
            if any(segment.spool_only for segment in self._segments):
                self._move_to_table(lambda segment, row_id: row_id in segment.spool_only)
            ended: List[Tuple[str, Optional[int]]] = []
            finished: List[str] = []

            def take(db: sqlite3.Connection) -> List[Tuple[int, bytes]]:
                if adopt:
                    self._adopt(db, ended, finished)
                rows = db.execute(
                    "SELECT id, data FROM messages WHERE key_hash = ? AND owner = ? AND queued = 0"
                    " ORDER BY id LIMIT ?",
                    (self._key_hash, self._owner, max(0, limit)),
                ).fetchall()
                db.executemany(
                    "UPDATE messages SET queued = 1 WHERE id = ?", [(r,) for r, _ in rows]
                )
                return [(row, bytes(data)) for row, data in rows]

            try:
                return self._transaction("could not take the backlog", take)
            finally:
                # Only after the transaction: until its end these files stay, and the lock files
                # held by us. A segment file is gone only once its rows are in the table.
                for segment_path in finished:
                    with contextlib.suppress(OSError):
                        os.unlink(segment_path)
                for lock_path, descriptor in ended:
                    with contextlib.suppress(OSError):
                        os.unlink(lock_path)
                    if descriptor is not None:
                        os.close(descriptor)

    def backlog_count(self) -> int:
        """Spool-only rows of this owner (``queued=0``)."""
        return self._count(" AND queued = 0", lambda segment: len(segment.spool_only))

    def pending_count(self) -> int:
        """All rows of this owner (a scan: for checks, not for a hot path)."""
        return self._count("", lambda segment: len(segment.live))

    # -- lifecycle ----------------------------------------------------------------------------

    def reopen_after_fork(self) -> None:
        """In a forked child: become a new owner, with its own connection and lock file.

        The parent's rows stay the parent's. Idempotent, and a no-op in the process that opened
        the spool. (After ``os.fork()`` the fork hooks have done most of it already.)
        """
        self._forget_parent()
        with self._lock:
            if not self._closed and self._connection is None:
                self._reconnect()

    def close(self) -> None:
        """Close the connection and end this owner; its rows stay, for the next process.

        Closing again does nothing, even in the interpreter's teardown (a dropped client's
        ``__del__``), when this module's globals may already be None.
        """
        if self._closed:
            return
        self._forget_parent()  # a child closing its copy must not end the parent's owner
        with self._lock:
            if not self._closed:
                self._settle_journal()
        with self._checkpoint_lock:
            self._closed = True
            self._close_checkpointer()
        with self._lock:
            self._closed = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            with self._journal_lock:  # what was appended meanwhile stays, for the adopter
                for segment in self._segments:
                    os.close(segment.descriptor)
                self._segments = []
            self._release_owner()
        _untrack(self)

    def _settle_journal(self) -> None:
        """Under the lock, at close: every live journal row into the table, then the segments
        go. If that fails they stay, whole: the owner's adopter replays them."""
        try:
            if any(segment.live for segment in self._segments):
                self._move_to_table(lambda segment, row_id: True)
        except SpoolError as error:
            logger.warning("analytics: %s; its journal stays for the next process", error)
            return
        with self._journal_lock:
            kept = []
            for segment in self._segments:
                if segment.live:  # appended meanwhile, by a thread racing the close: kept whole
                    kept.append(segment)
                    continue
                with contextlib.suppress(OSError):
                    segment.close_and_remove()
            self._segments = kept

    # -- private ------------------------------------------------------------------------------

    def _error(self, what: str, error: BaseException) -> SpoolError:
        # SQLite's messages never quote bound values: no message text or key hash gets in.
        return SpoolError(f"spool {self._path!r}: {what} ({error})")

    def _lock_path(self, token: str) -> str:
        return os.path.join(self._owners_dir, token + ".lock")

    def _check_path(self) -> None:
        directory = os.path.dirname(self._path)
        if not os.path.isdir(directory):
            raise SpoolError(f"spool {self._path!r}: the directory {directory!r} does not exist")
        if os.path.isdir(self._path):
            raise SpoolError(f"spool {self._path!r}: is a directory, not a file")
        try:
            # Created here rather than by SQLite to make it private (0600): messages are user
            # data. SQLite gives the -wal and -shm files the database file's permissions.
            os.close(os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass
        except OSError as error:
            raise self._error("cannot create the file", error) from None

    def _connect(self, first: bool = False) -> sqlite3.Connection:
        try:
            # Autocommit, with explicit BEGIN IMMEDIATE transactions: a read transaction is
            # never upgraded to a write one, which can fail at once instead of waiting.
            connection = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise self._error("cannot open it", error) from None
        try:
            if first:  # before journal_mode=WAL, which writes into the file
                self._refuse_foreign(connection)
            (mode,) = _retry_locked(
                lambda: connection.execute("PRAGMA journal_mode=WAL").fetchone()
            )
            if mode.lower() != "wal":
                raise SpoolError(f"spool {self._path!r}: SQLite cannot use WAL here ({mode})")
            connection.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints are the uploader's, on a connection of its own (see _checkpoint).
            connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute("PRAGMA journal_size_limit=4194304")  # shrink after a burst
        except BaseException as error:
            connection.close()
            if isinstance(error, sqlite3.Error):
                raise self._error("not a usable SQLite spool", error) from None
            raise
        return connection

    def _refuse_foreign(self, db: sqlite3.Connection) -> None:
        """Raise unless the file is new, a spool, or a spool of an earlier version."""
        (application_id,) = db.execute("PRAGMA application_id").fetchone()
        tables = set(_tables(db))
        if application_id not in (0, _APPLICATION_ID) or (
            application_id == 0 and tables - {*_COLUMNS, "sqlite_sequence"}
        ):
            raise SpoolError(
                f"spool {self._path!r}: is another program's SQLite database"
                f" (application_id {application_id}, tables {sorted(tables)})"
            )
        for table in tables & set(_COLUMNS):
            if {row[1] for row in db.execute(f"PRAGMA table_info({table})")} != _COLUMNS[table]:
                raise SpoolError(f"spool {self._path!r}: its {table} table has other columns")

    def _prepare_schema(self, db: sqlite3.Connection) -> None:
        tables = _tables(db)
        for statement in _SCHEMA:
            db.execute(statement)
        if "messages" in tables and "owners" not in tables:
            # Written by the first version, which had no owners table: make its owners known.
            db.execute("INSERT OR IGNORE INTO owners SELECT DISTINCT owner, key_hash FROM messages")

    def _register_owner(self) -> None:
        """Under the lock, connected: a new owner token, its locked lock file, its owners row."""
        token = f"{os.getpid()}-{secrets.token_hex(8)}"
        temporary = os.path.join(self._owners_dir, f".{token}.tmp")
        descriptor = None
        try:
            os.makedirs(self._owners_dir, mode=0o700, exist_ok=True)
            descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: never held
            # The file appears under its real name already locked: no one can ever find it
            # unlocked while this owner lives, and take the owner for ended.
            os.rename(temporary, self._lock_path(token))
        except OSError as error:
            if descriptor is not None:
                os.close(descriptor)
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            raise self._error("cannot create its owner lock file", error) from None
        self._owner, self._owner_fd = token, descriptor
        self._next_adoption = 0.0  # a new owner looks for orphans on its first take_backlog
        try:
            self._transaction(
                "cannot register its owner",
                lambda db: db.execute("INSERT INTO owners VALUES (?, ?)", (token, self._key_hash)),
            )
        except BaseException:
            self._release_owner()
            raise

    def _release_owner(self) -> None:
        if self._owner_fd is not None:
            with contextlib.suppress(OSError):  # unlinked before unlocked, never seen unlocked
                os.unlink(self._lock_path(self._owner or ""))
            os.close(self._owner_fd)
        self._owner = self._owner_fd = None

    def _reconnect(self) -> sqlite3.Connection:
        """Under the lock, not connected: closed by the user, or by a fork."""
        if self._closed:
            raise SpoolError(f"spool {self._path!r}: is closed")
        connection = self._connection = self._connect()
        if self._owner is None:  # a forked child's first use: an owner of its own
            try:
                self._register_owner()
            except BaseException:
                self._connection = None
                connection.close()  # opened in this process: closing it is safe
                raise
        return connection

    def _transaction(self, what: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Under the lock: ``work(db)`` in one write transaction."""
        db = self._connection or self._reconnect()
        try:
            # IMMEDIATE takes the write lock first (waiting up to the busy timeout): this is
            # what serialises adopters in different processes.
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise self._error(what, error) from None
        try:
            result = work(db)
            db.execute("COMMIT")
        except BaseException as error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise self._error(what, error) from error
            raise
        return result

    def _each_row(self, what: str, statement: str, ids: Sequence[int], own: bool = False) -> None:
        """``statement`` for each id, with the key hash (and this owner's token if ``own``)."""
        if ids:
            with self._lock:
                self._connection or self._reconnect()  # a forked child: its owner first
                extra = (self._key_hash, self._owner) if own else (self._key_hash,)
                rows = [(row, *extra) for row in ids]
                self._transaction(what, lambda db: db.executemany(statement, rows))

    def _count(self, condition: str, in_segment: Callable[[Segment], int]) -> int:
        """Table rows of this owner matching ``condition``, plus ``in_segment`` of each of its
        segments (under the lock: a row moving from the journal to the table counts once)."""
        with self._lock:
            db = self._connection or self._reconnect()
            try:
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM messages WHERE key_hash = ? AND owner = ?" + condition,
                    (self._key_hash, self._owner),
                ).fetchone()
            except sqlite3.Error as error:
                raise self._error("could not count messages", error) from error
            with self._journal_lock:
                return int(count) + sum(map(in_segment, self._segments))

    def _adopt(
        self, db: sqlite3.Connection, ended: List[Tuple[str, Optional[int]]], finished: List[str]
    ) -> None:
        """In the write transaction: the rows of ended owners (same key) become ours, spool-only:
        their table rows, and what their journal segments still hold.

        Their lock file paths, with the descriptors now holding their locks, go to ``ended``;
        the segment files to delete once this commits go to ``finished``.
        """
        segments = journal.owner_segments(self._owners_dir)
        known = {token for (token,) in db.execute("SELECT token FROM owners")}
        for token, paths in segments.items():
            if token not in known:
                # Its owner was adopted (this file's rows went into the table in that same
                # transaction), and the adopter died before deleting the file.
                finished.extend(paths)
        for (token,) in db.execute(
            "SELECT token FROM owners WHERE key_hash = ? AND token != ?",
            (self._key_hash, self._owner),
        ).fetchall():
            if not _TOKEN.fullmatch(token):
                continue  # not a token this class wrote: leave it alone
            lock_path = self._lock_path(token)
            descriptor: Optional[int] = None
            try:
                descriptor = os.open(lock_path, os.O_RDONLY)  # flock needs no write access
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except FileNotFoundError:
                pass  # removed by the owner's close(), or by an adopter: ended
            except OSError:  # held: that owner is alive (or the file is unreadable: wait)
                if descriptor is not None:
                    os.close(descriptor)
                continue
            ended.append((lock_path, descriptor))
            # A scan of the messages, but once per ended owner only.
            db.execute(
                "UPDATE messages SET owner = ?, queued = 0 WHERE key_hash = ? AND owner = ?",
                (self._owner, self._key_hash, token),
            )
            left = journal.replay(segments.get(token, []))
            db.executemany(
                _INSERT_ID,
                [(row_id, self._key_hash, self._owner, 0, data) for row_id, data in left.items()],
            )
            finished.extend(segments.get(token, []))
            db.execute("DELETE FROM owners WHERE token = ?", (token,))

    # -- fork hooks (see the module docstring) ------------------------------------------------

    def _before_fork(self) -> None:
        # Held across the fork, so that no other thread reconnects in between.
        if not self._lock.acquire(timeout=BUSY_TIMEOUT + 1.0):
            return  # stuck: the child then keeps the inherited connection, never closed
        self._held_for_fork = True
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()  # in the parent: safe
            self._connection = None
        if self._checkpoint_lock.acquire(timeout=BUSY_TIMEOUT + 1.0):
            try:
                self._close_checkpointer()  # in the parent: safe; the next checkpoint reopens
            finally:
                self._checkpoint_lock.release()

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()  # the next call reconnects

    def _forget_parent(self) -> None:
        """In a forked child (once): let go of the parent's owner, lock file and connection."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the copy may be held: by the hook, or by a lost thread
        self._checkpoint_lock = threading.Lock()
        self._held_for_fork = False
        if self._connection is not None:  # the fork bypassed os.fork()'s hooks
            _keep_forever(self._connection)
            self._connection = None
        if self._checkpointer is not None:
            _keep_forever(self._checkpointer)
            self._checkpointer = None
        if self._owner_fd is not None:
            # The copy shares the parent's lock; closing it leaves the lock with the parent.
            os.close(self._owner_fd)
        self._owner = self._owner_fd = None
        # The parent's journal and ids stay the parent's: closing the copies leaves its files.
        self._journal_lock = threading.Lock()
        for segment in self._segments:
            with contextlib.suppress(OSError):
                os.close(segment.descriptor)
        self._segments = []
        self._moving = set()
        self._segment_number = 0
        self._next_id = self._id_end = 0


# Every open spool, for the fork hooks; the lock is held across a fork, so the list cannot change.
_SPOOLS: "weakref.WeakSet[Spool]" = weakref.WeakSet()
_SPOOLS_LOCK = threading.Lock()
_INHERITED: List[sqlite3.Connection] = []


def _track(spool: Spool) -> None:
    with _SPOOLS_LOCK:
        _SPOOLS.add(spool)


def _untrack(spool: Spool) -> None:
    with _SPOOLS_LOCK:
        _SPOOLS.discard(spool)


def _hook_before_fork() -> None:
    _SPOOLS_LOCK.acquire()
    for spool in list(_SPOOLS):
        with contextlib.suppress(Exception):  # a fork must never fail because of a spool
            spool._before_fork()


def _hook_after_fork_in_parent() -> None:
    for spool in list(_SPOOLS):
        with contextlib.suppress(Exception):
            spool._after_fork_in_parent()
    _SPOOLS_LOCK.release()


def _hook_after_fork_in_child() -> None:
    global _SPOOLS_LOCK
    _SPOOLS_LOCK = threading.Lock()
    for spool in list(_SPOOLS):
        with contextlib.suppress(Exception):
            spool._forget_parent()


if hasattr(os, "register_at_fork"):  # here, at import: once, before any spool exists
    os.register_at_fork(
        before=_hook_before_fork,
        after_in_parent=_hook_after_fork_in_parent,
        after_in_child=_hook_after_fork_in_child,
    )


def _reserve_ids(db: sqlite3.Connection) -> Tuple[int, int]:
    """In a write transaction: ``ID_BLOCK`` fresh row ids, as ``(first, end)``.

    They come from the counter AUTOINCREMENT keeps in ``sqlite_sequence``, which SQLite never
    hands out again, to us or to any other process writing the file, whatever is deleted.
    """
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    if row is None:  # nothing was ever inserted: the counter starts past any existing row
        (last,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('messages', ?)", (last,))
    else:
        (last,) = row
    db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'messages'", (last + ID_BLOCK,))
    return last + 1, last + 1 + ID_BLOCK


def _retry_locked(statement: Callable[[], Any]) -> Any:
    """Run ``statement``, again while the database is locked, for up to the busy timeout.

    Switching a new file to WAL needs an exclusive lock that SQLite does not wait for (the busy
    timeout does not apply): processes creating the spool at once got "database is locked".
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.005)


def _tables(db: sqlite3.Connection) -> List[str]:
    return [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]


def _keep_forever(connection: sqlite3.Connection) -> None:
    """Never close an inherited connection here, not even at exit: SQLite's close could
    checkpoint, or roll back a transaction of the parent's, in the parent's files."""
    _INHERITED.append(connection)
    with contextlib.suppress(Exception):  # no ctypes (not CPython): the list must do
        import ctypes

        # A reference nobody owns: not even the interpreter's teardown frees it.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(connection))
