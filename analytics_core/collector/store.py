"""SQLite storage of accepted messages, plus the collector's request counters.

One connection guarded by one lock: SQLite serialises writers anyway. A request's rows go in
as one multi-row ``INSERT`` (a batch of 100 in one statement step), which costs half of what
``executemany`` does: the per-row step/reset and the rebinding of the request-wide
``received_at`` and ``write_key`` were most of the insert time.

The file holds no write key: each row keeps the key's fingerprint
(:func:`.access.write_key_fingerprint`), and a file written by an older collector, which kept
the keys, is converted when opened. The database and its WAL files are readable by their
owner only (0600).
"""

import functools
import json
import os
import sqlite3
import stat
import threading
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .access import write_key_fingerprint

__all__ = ["EventStore", "StoredRow", "FILTER_COLUMNS", "PRIVATE_MODE"]

# (type, event, user_id, anonymous_id, message_id, json_text) for one message.
StoredRow = Tuple[str, Optional[str], Optional[str], Optional[str], Optional[str], str]

# Query-string filter name -> column; the only names ever interpolated into SQL. The
# write_key column holds fingerprints: ``write_key`` filters by a key or by its fingerprint.
FILTER_COLUMNS = {
    "type": "type",
    "event": "event",
    "user_id": "user_id",
    "anonymous_id": "anonymous_id",
    "message_id": "message_id",
    "write_key": "write_key",
}

PRIVATE_MODE = 0o600
"""The mode of the database file and of the files SQLite creates beside it."""

SCHEMA_VERSION = 1
"""``PRAGMA user_version``: 0, rows keep the write key (before fingerprints); 1, fingerprints."""

DEFAULT_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    write_key TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    message_id TEXT,
    json TEXT NOT NULL
);
"""
# No secondary indexes on purpose: they cost about a third of the insert time, and a test or
# debugging collector holds few enough rows that filtered reads can scan.


INSERT_CHUNK = 100
"""Rows per INSERT statement: a default-sized batch is one statement; 6 * 100 + 2 parameters
stay far below SQLite's limit (999 in builds before 3.32) for any batch size."""


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=INSERT_CHUNK)
def _insert_sql(rows: int) -> str:
    """``INSERT ... VALUES (?1, ?2, ?, ...), ...`` for ``rows`` rows (cached per size; the
    connection's statement cache then keeps each compiled)."""
    values = ",".join(["(?1, ?2, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT INTO events (received_at, write_key, type, event, user_id, anonymous_id,"
        " message_id, json) VALUES " + values
    )


class EventStore:
    """Thread-safe store of messages and of counters (requests, batches, messages, rejected).

    ``messages`` always equals the number of stored rows (it starts from the row count of an
    existing file), while ``requests``, ``batches`` and ``rejected`` count this process only.
    """

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.Lock()
        on_disk = path != ":memory:" and not path.startswith("file:")
        if on_disk:
            _make_private(path)
        # Handler threads share this connection; the lock makes that safe.
        # The statement cache holds one compiled INSERT per batch size seen, plus the reads.
        self._conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, cached_statements=INSERT_CHUNK + 32
        )
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL is durable against process crashes, which is all a test collector needs.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._fingerprint_old_rows()
        if on_disk:  # SQLite gives its -wal and -shm files the database's mode; older ones too
            for suffix in ("-wal", "-shm", "-journal"):
                _tighten(path + suffix)
        (stored,) = self._conn.execute("SELECT COUNT(*) FROM events").fetchone()
        self._counts = {"requests": 0, "batches": 0, "messages": int(stored), "rejected": 0}

    def _fingerprint_old_rows(self) -> None:
        """Replace the write keys an older collector stored by their fingerprints, once."""
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version >= SCHEMA_VERSION:
            return
        self._conn.create_function("fingerprint", 1, write_key_fingerprint, deterministic=True)
        # Zero the space the keys leave behind, and write the new pages over the old ones
        # now: otherwise a key could stay readable in a free page or in the WAL.
        self._conn.execute("PRAGMA secure_delete = ON")
        self._conn.execute("BEGIN")
        try:
            self._conn.execute("UPDATE events SET write_key = fingerprint(write_key)")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.execute("PRAGMA secure_delete = OFF")

    # -- writing ---------------------------------------------------------------------------

    def add(self, write_key: str, rows: Sequence[StoredRow]) -> int:
        """Store one accepted request's messages in a single transaction; return how many.
        ``write_key`` is kept as its fingerprint only."""
        count = len(rows)
        received_at = _now_iso()
        write_key = _cached_fingerprint(write_key)
        # One statement per chunk: ?1 and ?2 (received_at, write_key) are bound once for all
        # of its rows, the six per-message values follow in order.
        chunks = []
        for start in range(0, count, INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            params: List[Any] = [received_at, write_key]
            for row in chunk:
                params.extend(row)
            chunks.append((_insert_sql(len(chunk)), params))
        with self._lock:
            conn = self._conn
            if len(chunks) == 1:
                conn.execute(*chunks[0])  # one statement is a transaction of its own
            elif chunks:
                conn.execute("BEGIN")
                try:
                    for sql, params in chunks:
                        conn.execute(sql, params)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            self._counts["batches"] += 1
            self._counts["messages"] += count
        return count

    def count_request(self, rejected: bool = False) -> None:
        """Count one tracking request, and whether it was rejected with a 4xx."""
        with self._lock:
            self._counts["requests"] += 1
            if rejected:
                self._counts["rejected"] += 1

    def clear(self) -> None:
        """Delete every stored message and reset the counters."""
        with self._lock:
            self._conn.execute("DELETE FROM events")
            self._counts = dict.fromkeys(self._counts, 0)

    # -- reading ---------------------------------------------------------------------------

    def stats(self) -> Dict[str, int]:
        """Return a copy of the counters."""
        with self._lock:
            return dict(self._counts)

    def events(
        self,
        *,
        limit: Optional[int] = DEFAULT_LIMIT,
        after_id: Optional[int] = None,
        order: str = "desc",
        **filters: Any,
    ) -> List[Dict[str, Any]]:
        """Return stored messages, newest first unless ``order="asc"``.

        Each item is the message as sent plus ``_id``, ``_received_at`` and
        ``_write_key_fingerprint``. Filters are the keys of :data:`FILTER_COLUMNS` (exact
        match; ``write_key`` takes a key or a fingerprint); ``limit`` of 0 or None means no
        limit; ``after_id`` keeps only rows with a larger id. A number stored as NaN or
        Infinity by an older collector is given as null, so every answer is valid JSON.
        """
        unknown = set(filters) - set(FILTER_COLUMNS)
        if unknown:
            raise ValueError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        if order not in ("asc", "desc"):
            raise ValueError("order must be 'asc' or 'desc'")
        clauses, params = [], []  # type: List[str], List[Any]
        for name, value in filters.items():
            if value is None:
                continue
            if name == "write_key":  # the key itself, or a fingerprint copied from a listing
                clauses.append("write_key IN (?, ?)")
                params.extend([_cached_fingerprint(str(value)), str(value)])
            else:
                clauses.append(f"{FILTER_COLUMNS[name]} = ?")
                params.append(str(value))
        if after_id is not None:
            clauses.append("id > ?")
            params.append(int(after_id))
        sql = "SELECT id, received_at, write_key, json FROM events"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY id {order.upper()}"
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return list(_decode(rows))

    def close(self) -> None:
        """Close the connection; later calls raise ``sqlite3.ProgrammingError``."""
        with self._lock:
            self._conn.close()


@functools.lru_cache(maxsize=64)
def _cached_fingerprint(write_key: str) -> str:
    # A handful of keys send thousands of requests: hash each once.
    return write_key_fingerprint(write_key)


def _not_a_number(constant: str) -> None:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259); the API refuses them now, but a
    # file written before may hold them. null keeps every answer parseable by a browser.
    return None


def _decode(rows: Iterable[Tuple[int, str, str, str]]) -> Iterable[Dict[str, Any]]:
    for row_id, received_at, fingerprint, text in rows:
        message = json.loads(text, parse_constant=_not_a_number)
        message["_id"] = row_id
        message["_received_at"] = received_at
        message["_write_key_fingerprint"] = fingerprint
        yield message


def _make_private(path: str) -> None:
    """Create the database file 0600 (SQLite would create it with the umask's mode, 0644 with
    the usual one), or take group and other access away from an existing one."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    except OSError:
        return  # sqlite3.connect will say what is wrong with the path
    os.close(descriptor)
    _tighten(path)


def _tighten(path: str) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            os.chmod(path, mode & ~0o077)
    except OSError:  # absent (no WAL yet), or not ours: SQLite copies the database's mode
        pass
