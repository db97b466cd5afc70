"""SQLite storage of accepted messages, plus the collector's request counters.

One connection guarded by one lock: SQLite serialises writers anyway. A request's rows go in
as one multi-row ``INSERT`` (a batch of 100 in one statement step), which costs half of what
``executemany`` does: the per-row step/reset and the rebinding of the request-wide
``received_at`` and ``write_key`` were most of the insert time.
"""

import functools
import json
import sqlite3
import threading
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["EventStore", "StoredRow", "FILTER_COLUMNS"]

# (type, event, user_id, anonymous_id, message_id, json_text) for one message.
StoredRow = Tuple[str, Optional[str], Optional[str], Optional[str], Optional[str], str]

# Query-string filter name -> column; the only names ever interpolated into SQL.
FILTER_COLUMNS = {
    "type": "type",
    "event": "event",
    "user_id": "user_id",
    "anonymous_id": "anonymous_id",
    "message_id": "message_id",
    "write_key": "write_key",
}

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
        (stored,) = self._conn.execute("SELECT COUNT(*) FROM events").fetchone()
        self._counts = {"requests": 0, "batches": 0, "messages": int(stored), "rejected": 0}

    # -- writing ---------------------------------------------------------------------------

    def add(self, write_key: str, rows: Sequence[StoredRow]) -> int:
        """Store one accepted request's messages in a single transaction; return how many."""
        count = len(rows)
        received_at = _now_iso()
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

        Each item is the message as sent plus ``_id``, ``_received_at`` and ``_write_key``.
        Filters are the keys of :data:`FILTER_COLUMNS` (exact match); ``limit`` of 0 or None
        means no limit; ``after_id`` keeps only rows with a larger id.
        """
        unknown = set(filters) - set(FILTER_COLUMNS)
        if unknown:
            raise ValueError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        if order not in ("asc", "desc"):
            raise ValueError("order must be 'asc' or 'desc'")
        clauses, params = [], []  # type: List[str], List[Any]
        for name, value in filters.items():
            if value is not None:
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


def _decode(rows: Iterable[Tuple[int, str, str, str]]) -> Iterable[Dict[str, Any]]:
    for row_id, received_at, write_key, text in rows:
        message = json.loads(text)
        message["_id"] = row_id
        message["_received_at"] = received_at
        message["_write_key"] = write_key
        yield message
