"""The collector's server: a threading HTTP server and the ``Collector`` API around it.

Built on ``http.server.ThreadingHTTPServer`` so it needs nothing outside the stdlib; the
per-request work lives in :mod:`.handler`.
"""

import collections
import contextlib
import json
import socket
import sqlite3
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

from ..threads import start_thread
from .access import HostPolicy
from .faults import FaultPlan
from .handler import CollectorHandler
from .http11 import ConnectionReader, http_date
from .store import EventStore

__all__ = [
    "Collector",
    "CollectorServer",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_DEADLINE",
    "DEFAULT_REQUEST_TIMEOUT",
]

DEFAULT_REQUEST_TIMEOUT = 15.0
"""Seconds an open connection may wait idle for its next request (and an answer to be sent)."""
DEFAULT_REQUEST_DEADLINE = 15.0
"""Seconds from a request's first byte to the end of its body."""
DEFAULT_MAX_CONNECTIONS = 64
"""Connections served at once, one thread each (measured: the load test, four clients at 1,000
events/s and a hostile one, peaks at 6; the whole test suite against one collector at 24)."""
_LINGER_SECONDS = 1.0
# How long a refused socket stays open after its 503, so the client reads the answer rather
# than a reset (closing with its request unread would send an RST).
_MAX_LINGERING = 256
# More refused sockets than that are closed at once: a flood must not hold file descriptors.


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
        request_timeout: Optional[float] = DEFAULT_REQUEST_TIMEOUT,
        allowed_hosts: Iterable[str] = (),
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        _check_limits(request_deadline, max_connections)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        self.write_key = write_key
        self.host_policy = HostPolicy(address[0], allowed_hosts)
        self.faults = faults
        self.verbose = verbose
        self.request_timeout = request_timeout
        self.request_deadline = request_deadline
        self.max_connections = max_connections
        # Each open connection's reader; a connection counts from its accept to its thread's end.
        self._connections: Dict[socket.socket, ConnectionReader] = {}
        self._connections_lock = threading.Lock()
        self._lingering: Deque[Tuple[float, socket.socket]] = collections.deque()
        self.work_lock = threading.Lock()
        """Held by a handler while it decodes, checks and stores a tracking request.

        That work is CPU-bound Python, so the GIL runs one handler at a time anyway; but two
        handlers contending for the GIL hand it over at every socket call and wait up to a
        switch interval (5 ms) to get it back, which made two clients together slower than
        one. Waiting on this lock takes no part in that: handlers take turns instead.
        Reading requests and writing answers stay outside it."""
        super().__init__(address, CollectorHandler)

    # -- the connection cap ------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve a new connection on its own thread if the cap allows, else answer 503.

        At the cap, the connection idle the longest (a kept-alive one waiting for its next
        request) is closed to make room: only connections busy with a request hold their place.
        """
        if not self._admit(request):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread (e.g. none can be started): no slot either
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection (http.server's loop), then give its slot back."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def connection_reader(self, sock: socket.socket) -> ConnectionReader:
        """The reader :meth:`process_request` made for ``sock`` (the handler reads through it)."""
        with self._connections_lock:
            reader = self._connections.get(sock)
        if reader is None:  # not admitted here (a server driven another way): unbounded count
            reader = self._new_reader(sock)
        return reader

    def _new_reader(self, sock: socket.socket) -> ConnectionReader:
        return ConnectionReader(
            sock, self.request_timeout, self.request_deadline, self._connections_lock
        )

    def _admit(self, sock: socket.socket) -> bool:
        with self._connections_lock:
            if len(self._connections) >= self.max_connections and not self._evict_idle():
                return False
            self._connections[sock] = self._new_reader(sock)
        return True

    def _evict_idle(self) -> bool:
        """Close the connection that has waited idle the longest; False if none is idle.

        The caller holds the lock. The evicted thread ends on its own, at once."""
        idle = [(r.idle_since, s) for s, r in self._connections.items() if r.evictable()]
        if not idle:
            return False
        _, sock = min(idle, key=lambda item: item[0])
        self._connections.pop(sock).evict()
        return True

    def _forget(self, sock: socket.socket) -> None:
        with self._connections_lock:
            self._connections.pop(sock, None)

    def _refuse(self, sock: socket.socket) -> None:
        """Answer 503 without a thread: a few non-blocking calls on the serving thread.

        A 503 (retryable, with Retry-After) tells a client why, where a bare close would look
        like a network fault. The socket stays open (write side shut) for a moment, so the
        client reads the answer rather than a reset; :meth:`service_actions` closes it.
        """
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            _drain(sock)
            sock.send(self._busy_answer())
            sock.shutdown(socket.SHUT_WR)
        self._lingering.append((time.monotonic() + _LINGER_SECONDS, sock))
        if len(self._lingering) > _MAX_LINGERING:
            _close_after_draining(self._lingering.popleft()[1])

    def _busy_answer(self) -> bytes:
        body = json.dumps(
            {
                "code": "too-many-connections",
                "message": f"the collector serves {self.max_connections} connections at once; "
                "retry shortly",
            }
        ).encode("utf-8")
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            f"Server: {CollectorHandler.server_version}\r\nDate: {http_date()}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\n"
        )
        return head.encode("latin-1") + body

    def service_actions(self) -> None:
        """Close the refused sockets whose linger is over (called by serve_forever's loop)."""
        super().service_actions()
        now = time.monotonic()
        while self._lingering and self._lingering[0][0] <= now:
            _close_after_draining(self._lingering.popleft()[1])

    def close_connections(self) -> None:
        """Shut down every open client connection (their handler threads then exit)."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        """Close the listening socket, then the refused sockets still lingering."""
        super().server_close()
        while self._lingering:
            _close_after_draining(self._lingering.popleft()[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about dropped connections unless verbose; the handler already answered."""
        if self.verbose:
            super().handle_error(request, client_address)


class Collector:
    """A local Segment-compatible collector, served from a daemon thread.

    >>> with Collector() as collector:          # port 0: the OS picks a free port
    ...     url = collector.url                 # point a client's ``host`` here

    Work per connection is bounded: a request must arrive whole (head and body) within
    ``request_deadline`` seconds of its first byte (408 otherwise), an open connection waits
    ``request_timeout`` seconds idle for its next request, and at most ``max_connections`` are
    served at once (idle ones are closed to make room; with none idle, a new connection gets
    503 ``too-many-connections`` and ``Connection: close``).
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
        request_timeout: Optional[float] = DEFAULT_REQUEST_TIMEOUT,
        allowed_hosts: Iterable[str] = (),
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        _check_limits(request_deadline, max_connections)
        self.host = host
        self.port = port
        self.db = db
        self.write_key = write_key
        self.allowed_hosts = tuple(allowed_hosts)
        self.verbose = verbose
        self.request_timeout = request_timeout
        self.request_deadline = request_deadline
        self.max_connections = max_connections
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
            allowed_hosts=self.allowed_hosts,
            request_deadline=self.request_deadline,
            max_connections=self.max_connections,
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


def _check_limits(request_deadline: float, max_connections: int) -> None:
    if not 0 < request_deadline < float("inf"):  # a socket timeout must be finite; NaN fails too
        raise ValueError(f"request_deadline must be a positive number, not {request_deadline!r}")
    if isinstance(max_connections, bool) or not (
        isinstance(max_connections, int) and max_connections >= 1
    ):
        raise ValueError(
            f"max_connections must be an integer of 1 or more, not {max_connections!r}"
        )


def _drain(sock: socket.socket, most: int = 256 * 1024) -> None:
    """Read and drop what a non-blocking socket holds (at most ``most`` bytes)."""
    with contextlib.suppress(OSError):  # BlockingIOError: nothing more for now
        while most > 0:
            data = sock.recv(65536)
            if not data:
                return
            most -= len(data)


def _close_after_draining(sock: socket.socket) -> None:
    # Closing with unread input would send a reset, which can destroy the 503 in flight.
    _drain(sock)
    with contextlib.suppress(OSError):
        sock.close()
