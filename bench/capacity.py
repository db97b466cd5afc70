"""The collector's own capacity: one bare keep-alive client posting pre-built batches.

``python -m bench.capacity --host URL --seconds 3`` prints one JSON line. No analytics library
is involved: the body is built once, so this is the most the collector can take from one
sequential client, the ceiling for any library's delivered events/s in this benchmark.

Two clients are measured one after the other, each for ``--seconds``:

- ``socket`` (the headline ``value``): the whole request (head and body) is built once and
  written in one ``sendall`` on a kept-alive socket; reading the answer costs a few µs. What
  is left is the collector's time per request plus one loopback round trip.
- ``requests``: a bare ``requests.Session``, as earlier versions of this benchmark measured.
  It spends about 1.2 ms of CPU per POST on this kind of machine, so its number says as much
  about requests as about the collector; it is kept for comparison with older results.
"""

import argparse
import json
import socket
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence
from urllib.parse import urlsplit

import requests

from .payload import basic_auth, batch_body

BATCH_SIZE = 100


class _SocketClient:
    """One kept-alive HTTP/1.1 connection that replays one pre-built POST."""

    def __init__(self, url: str, body: bytes) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nAuthorization: {basic_auth()}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.request = head.encode("latin-1") + body
        self.buffer = b""

    def post(self) -> int:
        """Send the request, read the whole answer, return its status."""
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._receive()
        self.buffer = self.buffer[length:]
        return int(lines[0].split()[1])

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the collector closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _requests_poster(url: str, body: bytes) -> "tuple[Callable[[], int], Callable[[], None]]":
    headers = {"Content-Type": "application/json", "Authorization": basic_auth()}
    session = requests.Session()
    session.trust_env = False  # the environment's proxy settings must not route 127.0.0.1

    def post() -> int:
        return session.post(url, data=body, headers=headers, timeout=30).status_code

    return post, session.close


def _socket_poster(url: str, body: bytes) -> "tuple[Callable[[], int], Callable[[], None]]":
    client = _SocketClient(url, body)
    return client.post, client.close


POSTERS = {"socket": _socket_poster, "requests": _requests_poster}


def _measure_one(
    client: str, url: str, body: bytes, seconds: float, batch_size: int
) -> Dict[str, Any]:
    post, close = POSTERS[client](url, body)
    try:
        if post() != 200:  # connects; counted in "sent" below
            raise RuntimeError(f"the collector refused the first {client} POST")
        batches = failed = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            if post() != 200:
                failed += 1
            batches += 1
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
    finally:
        close()
    sent = (batches + 1) * batch_size
    return {
        "value": batches * batch_size / elapsed,
        "batches": batches,
        "ms_per_post": elapsed / batches * 1e3,
        "seconds": elapsed,
        "sent": sent,
        "accepted": sent - failed * batch_size,
    }


def measure_capacity(
    host: str,
    seconds: float,
    batch_size: int = BATCH_SIZE,
    posters: Sequence[str] = tuple(POSTERS),
) -> Dict[str, Any]:
    """Post the same ``batch_size``-message body for ``seconds`` with each client in turn.

    ``value`` is the bare socket's events/s; ``clients`` has every client's measurement, and
    ``sent`` / ``accepted`` add them up (the harness checks them against the collector).
    ``posters`` picks the clients; the socket client is always measured.
    """
    body = batch_body(batch_size)
    url = host.rstrip("/") + "/v1/batch"
    names = ["socket", *(name for name in posters if name != "socket")]
    clients = {name: _measure_one(name, url, body, seconds, batch_size) for name in names}
    return {
        "value": clients["socket"]["value"],
        "requests_value": clients["requests"]["value"] if "requests" in clients else None,
        "clients": clients,
        "batch_bytes": len(body),
        "seconds": clients["socket"]["seconds"],
        "sent": sum(result["sent"] for result in clients.values()),
        "accepted": sum(result["accepted"] for result in clients.values()),
    }


def main(argv: Optional[List[str]] = None) -> int:
    """Measure and print the result as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--host", required=True, help="the collector's base URL")
    parser.add_argument("--seconds", type=float, default=3.0, help="per client")
    parser.add_argument(
        "--socket-only",
        action="store_true",
        help="measure the bare socket client alone (a quick reading beside another row)",
    )
    args = parser.parse_args(argv)
    posters = ("socket",) if args.socket_only else tuple(POSTERS)
    print(json.dumps(measure_capacity(args.host, args.seconds, posters=posters)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
