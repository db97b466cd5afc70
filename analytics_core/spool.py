"""The durable spool behind ``Client(persist="spool.db")``: accepted messages as SQLite rows.

A message is a row, committed before the caller's call returns and deleted once the collector
answered 2xx (or refused it for good). What a process could not deliver stays for the next
process that opens the file with the same write key.

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
against a power cut, for a fraction of the cost of an fsync per message.

No SQLite connection crosses an ``os.fork()``. SQLite forbids using or closing an inherited one,
and a new connection opened beside it in the child shares its in-process lock records, so the
child holds no real lock on the file: when the parent then closes its connection, SQLite thinks
it is the last user and deletes the WAL, and the child's later commits are lost (reproduced in
tests/test_spool.py). So a fork hook closes every spool's connection just before the fork; the
parent reopens it on its next call, the child gets a new owner, lock file and connection.
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
from typing import Any, Callable, List, Optional, Sequence, Tuple

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
"""Removals (one per delivered batch) between two checkpoints of the WAL into the database:
about 400 appends, some 1,000 WAL pages, SQLite's own automatic checkpoint size."""

CHECKPOINT_AFTER_APPENDS = 500
"""Appends after which the appending thread checkpoints itself: nothing was removed meanwhile
(the tracking API is down, or nothing is sending), and the WAL must not grow without bound
(each append adds two or three 4 KB pages to it: this keeps it near SQLite's own 4 MB)."""

_APPLICATION_ID = 0x41435350  # "ACSP": our file, not another program's SQLite database
_COLUMNS = {
    "messages": {"id", "key_hash", "owner", "queued", "data"},
    "owners": {"token", "key_hash"},
}
_TOKEN = re.compile(r"[0-9]+-[0-9a-f]{16,32}")  # tokens become file names: nothing else does

_INSERT = "INSERT INTO messages (key_hash, owner, queued, data) VALUES (?, ?, ?, ?)"
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


class SpoolError(Exception):
    """The spool cannot be used; the message names the path and says why."""


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
        self._removals = 0
        self._appends_unchecked = 0
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
        """Store one encoded message of this owner, committed before returning; its row id.

        ``queued``: it is in the memory queue too; False: only here (the queue was full), to be
        handed out by :meth:`take_backlog`.
        """
        with self._lock:
            db = self._connection or self._reconnect()
            try:  # autocommit: the INSERT is a transaction of its own
                cursor = db.execute(
                    _INSERT, (self._key_hash, self._owner, 1 if queued else 0, data)
                )
            except sqlite3.Error as error:
                raise self._error("could not store a message", error) from error
            row_id: int = cursor.lastrowid  # type: ignore[assignment]
        self._appends_unchecked += 1
        if self._appends_unchecked > CHECKPOINT_AFTER_APPENDS:
            self._checkpoint()
        return row_id

    def remove(self, ids: Sequence[int]) -> None:
        """Delete rows (delivered, or finally reported as failed), in one transaction.

        Whoever owns them: a row adopted meanwhile by another process was delivered all the same.
        """
        self._each_row(
            "could not remove", "DELETE FROM messages WHERE id = ? AND key_hash = ?", ids
        )
        self._removals += 1
        if self._removals % CHECKPOINT_EVERY == 0:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the WAL's pages into the database file, on the uploader's thread.

        SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 WAL pages:
        often a caller's ``append``, which then took several milliseconds (its p99.9 was about
        6 ms). Here the connections that append and remove have it off, and this one, used by
        nothing else, runs a PASSIVE checkpoint: it copies what no reader still needs and never
        waits for, nor blocks, a writer, so a caller's ``append`` goes on meanwhile. Only when
        nothing has been removed for ``CHECKPOINT_AFTER_APPENDS`` appends does an appending
        thread run one (the uploader is not delivering).
        Durability is unchanged: a committed row is in the WAL before ``append`` returns.
        """
        with self._checkpoint_lock:
            if self._closed or self._pid != os.getpid():
                return
            self._appends_unchecked = 0
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
        self._each_row(
            "could not requeue",
            "UPDATE messages SET queued = 0 WHERE id = ? AND key_hash = ? AND owner = ?",
            ids,
            own=True,
        )

    def take_backlog(self, limit: int) -> List[Tuple[int, bytes]]:
        """Up to ``limit`` spool-only rows of this owner, oldest first, now marked queued.

        Before, on the first call and then at most every ``adopt_interval`` seconds, the rows of
        owners that ended (same write key) become spool-only rows of this owner.
        """
        with self._lock:
            if self._connection is None:
                self._reconnect()  # first, so that a new owner (a forked child) adopts at once
            adopt = time.monotonic() >= self._next_adoption
            if adopt:
                self._next_adoption = time.monotonic() + self.adopt_interval
            ended: List[Tuple[str, Optional[int]]] = []

            def take(db: sqlite3.Connection) -> List[Tuple[int, bytes]]:
                if adopt:
                    self._adopt(db, ended)
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
                # Only after the transaction: until its end these lock files stay, held by us.
                for lock_path, descriptor in ended:
                    with contextlib.suppress(OSError):
                        os.unlink(lock_path)
                    if descriptor is not None:
                        os.close(descriptor)

    def backlog_count(self) -> int:
        """Spool-only rows of this owner (``queued=0``)."""
        return self._count(" AND queued = 0")

    def pending_count(self) -> int:
        """All rows of this owner (a scan: for checks, not for a hot path)."""
        return self._count("")

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
        """Close the connection and end this owner; its rows stay, for the next process."""
        self._forget_parent()  # a child closing its copy must not end the parent's owner
        with self._checkpoint_lock:
            self._closed = True
            self._close_checkpointer()
        with self._lock:
            self._closed = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            self._release_owner()
        _untrack(self)

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

    def _count(self, condition: str) -> int:
        with self._lock:
            db = self._connection or self._reconnect()
            try:
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM messages WHERE key_hash = ? AND owner = ?" + condition,
                    (self._key_hash, self._owner),
                ).fetchone()
            except sqlite3.Error as error:
                raise self._error("could not count messages", error) from error
            return int(count)

    def _adopt(self, db: sqlite3.Connection, ended: List[Tuple[str, Optional[int]]]) -> None:
        """In the write transaction: the rows of ended owners (same key) become ours, spool-only.

        Their lock file paths, with the descriptors now holding their locks, go to ``ended``.
        """
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
