"""The collector's server: a threading HTTP server and the ``Collector`` API around it.

Built on ``http.server.ThreadingHTTPServer`` so it needs nothing outside the stdlib; the
per-request work lives in :mod:`.handler`.
"""

import contextlib
import socket
import sqlite3
import threading
from http.server import ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Set, Tuple

from ..threads import start_thread
from .faults import FaultPlan
from .handler import CollectorHandler
from .store import EventStore

__all__ = ["Collector", "CollectorServer"]


class CollectorServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its store, fault plan and open connections."""

    daemon_threads = True
    # The default backlog of 5 drops SYNs under a burst of parallel clients.
    request_queue_size = 128

    def __init__(
        self,
        address: Tuple[str, int],
        store: EventStore,
        *,
        write_key: Optional[str] = None,
        faults: Optional[FaultPlan] = None,
        verbose: bool = False,
        request_timeout: float = 15.0,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        self.write_key = write_key
        self.faults = faults
        self.verbose = verbose
        self.request_timeout = request_timeout
        self._connections: Set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.work_lock = threading.Lock()
        """Held by a handler while it decodes, checks and stores a tracking request.

        That work is CPU-bound Python, so the GIL runs one handler at a time anyway; but two
        handlers contending for the GIL hand it over at every socket call and wait up to a
        switch interval (5 ms) to get it back, which made two clients together slower than
        one. Waiting on this lock takes no part in that: handlers take turns instead.
        Reading requests and writing answers stay outside it."""
        super().__init__(address, CollectorHandler)

    def track_connection(self, sock: socket.socket, open_: bool) -> None:
        """Remember open sockets so :meth:`close_connections` can end keep-alive idlers."""
        with self._connections_lock:
            if open_:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def close_connections(self) -> None:
        """Shut down every open client connection (their handler threads then exit)."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about dropped connections unless verbose; the handler already answered."""
        if self.verbose:
            super().handle_error(request, client_address)


class Collector:
    """A local Segment-compatible collector, served from a daemon thread.

    >>> with Collector() as collector:          # port 0: the OS picks a free port
    ...     url = collector.url                 # point a client's ``host`` here
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str = ":memory:",
        write_key: Optional[str] = None,
        faults: bool = False,
        *,
        verbose: bool = False,
        request_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.db = db
        self.write_key = write_key
        self.verbose = verbose
        self.request_timeout = request_timeout
        self.store = EventStore(db)
        self.faults: Optional[FaultPlan] = FaultPlan() if faults else None
        self._server: Optional[CollectorServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Collector":
        """Bind and serve in a daemon thread; return self (so ``Collector().start()`` chains)."""
        if self._server is not None:
            return self
        self._server = CollectorServer(
            (self.host, self.port),
            self.store,
            write_key=self.write_key,
            faults=self.faults,
            verbose=self.verbose,
            request_timeout=self.request_timeout,
        )
        self.port = self._server.server_address[1]
        # Its request threads inherit the mask: the host process's signals stay with it. The
        # poll interval bounds how long stop() waits.
        self._thread = start_thread(
            self._server.serve_forever, (0.1,), f"analytics-core-collector-{self.port}"
        )
        return self

    @property
    def url(self) -> str:
        """The base URL to give a client as ``host``, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving, end open connections and close the store. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        with contextlib.suppress(sqlite3.ProgrammingError):  # already closed
            self.store.close()

    def events(self, **filters: Any) -> List[Dict[str, Any]]:
        """Stored messages, newest first; see :meth:`EventStore.events` for the filters."""
        return self.store.events(**filters)

    def stats(self) -> Dict[str, int]:
        """``{"requests", "batches", "messages", "rejected"}`` counters."""
        return self.store.stats()

    def clear(self) -> None:
        """Delete every stored message and reset the counters."""
        self.store.clear()

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return f"<Collector {self.url} db={self.db!r} {state}>"
