"""The durable spool behind ``Client(persist="spool.db")``: accepted messages in SQLite.

Every accepted message is a row, committed before the caller's call returns, and deleted once
the collector answered 2xx (or refused it for good). Rows a process could not deliver (it was
killed, or the collector was down when it exited) are taken over by the next process that opens
the spool.

Several processes may share one file, as gunicorn workers reading one settings module do:

- each process is an *owner*, with a random token; its rows carry that token;
- while it lives it holds an exclusive ``flock`` on its own lock file next to the database
  (``<path>-owners/<token>.lock``); the kernel releases it when the process ends in any way,
  SIGKILL included, and a reused pid changes nothing;
- any owner may adopt the rows of an owner whose lock it can take (that process ended), in a
  write transaction, so two live processes never adopt the same rows.

Rows are partitioned by a SHA-256 hash of the write key: a client never sends another key's
messages, and the key itself is never written to disk. ``synchronous=NORMAL`` in WAL mode makes
a commit durable against a crashed process (what SIGKILL is), not against a power cut, at a
fraction of the cost of an fsync per call.
"""

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
import uuid
from typing import List, Optional, Sequence, Tuple

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock
    fcntl = None  # type: ignore[assignment]

__all__ = ["Spool", "SpoolError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash TEXT NOT NULL,
    owner TEXT NOT NULL,
    queued INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_owner ON messages (key_hash, owner, queued, id);
"""


class SpoolError(Exception):
    """The spool file cannot be used (the message names the path and why)."""


class Spool:
    """One process's handle on a spool file (see the module docstring)."""

    def __init__(self, path: str, write_key: str, adopt_interval: float = 5.0) -> None:
        if fcntl is None:  # pragma: no cover
            raise SpoolError(f"persist={path!r}: the spool needs POSIX file locks (fcntl)")
        self.path = os.path.abspath(path)
        self.adopt_interval = adopt_interval
        self._key_hash = hashlib.sha256(write_key.encode("utf-8")).hexdigest()
        self._owners_dir = self.path + "-owners"
        self._lock = threading.Lock()
        self._next_adoption = 0.0
        self._connection: Optional[sqlite3.Connection] = None
        self._lock_file: Optional[int] = None
        self._open()

    # -- opening and closing ------------------------------------------------------------------

    def _open(self) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise SpoolError(f"persist={self.path!r}: the directory {directory!r} does not exist")
        if os.path.isdir(self.path):
            raise SpoolError(f"persist={self.path!r}: is a directory, not a file")
        try:
            # The uploader thread and the callers' threads share this connection, one at a time
            # under self._lock. Autocommit mode: transactions are begun explicitly.
            connection = sqlite3.connect(
                self.path, timeout=30.0, check_same_thread=False, isolation_level=None
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise SpoolError(
                f"persist={self.path!r}: not a usable SQLite spool ({error})"
            ) from None
        self._connection = connection
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            os.makedirs(self._owners_dir, exist_ok=True)
            descriptor = os.open(self._lock_path(self._owner), os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            connection.close()
            raise SpoolError(
                f"persist={self.path!r}: cannot create its lock file ({error})"
            ) from None
        self._lock_file = descriptor
        self._next_adoption = 0.0

    def _lock_path(self, owner: str) -> str:
        return os.path.join(self._owners_dir, owner + ".lock")

    def close(self) -> None:
        """Close the database and release this owner's lock; its rows wait for the next owner."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            if self._lock_file is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._lock_path(self._owner))
                os.close(self._lock_file)
                self._lock_file = None

    def reopen_after_fork(self) -> None:
        """In a forked child: a connection and an owner of its own (the parent keeps its rows).

        The inherited connection is dropped, not closed: closing it here would act on the
        parent's SQLite state. The inherited lock descriptor is closed (flock locks belong to
        the open file description, which the parent still holds).
        """
        self._lock = threading.Lock()
        self._connection = None
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None
        self._open()

    # -- rows ---------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise SpoolError(f"persist={self.path!r}: the spool is closed")
        return self._connection

    def append(self, data: bytes, queued: bool = True) -> int:
        """Store one encoded message, committed before returning; its row id.

        ``queued``: the message is also in the memory queue; False: only here (the queue was
        full), to be handed out by :meth:`take_backlog`.
        """
        with self._lock:
            cursor = self._db().execute(
                "INSERT INTO messages (key_hash, owner, queued, data) VALUES (?, ?, ?, ?)",
                (self._key_hash, self._owner, 1 if queued else 0, data),
            )
            return int(cursor.lastrowid)

    def remove(self, ids: Sequence[int]) -> None:
        """Delete rows (delivered, or refused for good), in one transaction."""
        if not ids:
            return
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM messages WHERE id = ?", [(row,) for row in ids])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def requeue(self, ids: Sequence[int]) -> None:
        """Hand rows out again through :meth:`take_backlog`."""
        if not ids:
            return
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "UPDATE messages SET queued = 0 WHERE id = ? AND owner = ?",
                    [(row, self._owner) for row in ids],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def take_backlog(self, limit: int) -> List[Tuple[int, bytes]]:
        """Up to ``limit`` of this owner's spool-only rows, oldest first, marked as queued.

        First (at most every ``adopt_interval`` seconds, and on the first call) the rows of
        owners that ended become this owner's spool-only rows.
        """
        with self._lock:
            db = self._db()
            if time.monotonic() >= self._next_adoption:
                self._adopt_orphans(db)
                self._next_adoption = time.monotonic() + self.adopt_interval
            if limit <= 0:
                return []
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    "SELECT id, data FROM messages WHERE key_hash = ? AND owner = ? AND queued = 0"
                    " ORDER BY id LIMIT ?",
                    (self._key_hash, self._owner, limit),
                ).fetchall()
                db.executemany(
                    "UPDATE messages SET queued = 1 WHERE id = ?", [(row,) for row, _ in rows]
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return [(int(row), bytes(data)) for row, data in rows]

    def _adopt_orphans(self, db: sqlite3.Connection) -> None:
        # The write transaction serialises adopters: a second process waits, then finds no
        # rows left under the dead owner's token.
        db.execute("BEGIN IMMEDIATE")
        try:
            owners = [
                owner
                for (owner,) in db.execute(
                    "SELECT DISTINCT owner FROM messages WHERE key_hash = ? AND owner != ?",
                    (self._key_hash, self._owner),
                )
            ]
            for owner in owners:
                if self._owner_has_ended(owner):
                    db.execute(
                        "UPDATE messages SET owner = ?, queued = 0 WHERE owner = ?",
                        (self._owner, owner),
                    )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _owner_has_ended(self, owner: str) -> bool:
        """Whether no process holds ``owner``'s lock (then its lock file is removed)."""
        if os.sep in owner or owner.startswith("."):
            return False  # not a token this class wrote: leave such rows alone
        path = self._lock_path(owner)
        try:
            descriptor = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held: that process is alive
        finally:
            os.close(descriptor)
        with contextlib.suppress(OSError):
            os.unlink(path)
        return True

    def backlog_count(self) -> int:
        """This owner's spool-only rows."""
        with self._lock:
            (count,) = (
                self._db()
                .execute(
                    "SELECT COUNT(*) FROM messages WHERE key_hash = ? AND owner = ? AND queued = 0",
                    (self._key_hash, self._owner),
                )
                .fetchone()
            )
        return int(count)

    def pending_count(self) -> int:
        """All of this owner's rows (queued in memory or spool-only)."""
        with self._lock:
            (count,) = (
                self._db()
                .execute(
                    "SELECT COUNT(*) FROM messages WHERE key_hash = ? AND owner = ?",
                    (self._key_hash, self._owner),
                )
                .fetchone()
            )
        return int(count)

    def __repr__(self) -> str:
        return f"Spool(path={self.path!r})"
