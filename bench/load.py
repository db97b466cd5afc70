"""A small HTTP/1.1 load generator over loopback: keep-alive connections driven by asyncio.

No wrk or ab on the machine, so this plays their part: ``concurrency`` connections each send a
GET, wait for the whole response (status line, headers, ``Content-Length`` body) and send the
next, for ``seconds``. It uses asyncio's low-level protocols rather than streams because every
microsecond spent here is one the server under test does not get measured against. Only
responses that are complete, 200 and carry the expected body are counted as successes.
"""

import asyncio
import dataclasses
import time
from typing import List, Optional, Tuple

__all__ = ["LoadResult", "browser_request", "run_load"]


@dataclasses.dataclass
class LoadResult:
    """What one load run achieved."""

    responses: int
    failures: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Successful responses per second of the run."""
        return self.responses / self.seconds if self.seconds else 0.0


def browser_request(host: str, path: str = "/") -> bytes:
    """A GET as a browser sends it, with what the integrations read: cookie, language, referrer."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
        "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
        "Accept-Language: en-GB,en;q=0.8,de;q=0.5",
        "Referer: https://www.example.com/landing?utm_source=newsletter",
        "Cookie: ajs_anonymous_id=%22507f191e810c19729de860ea%22; theme=dark",
        "Connection: keep-alive",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending the same request again as soon as a response is whole."""

    def __init__(self, run: "_Run") -> None:
        self.run = run
        self.buffer = bytearray()
        self.transport: Optional[asyncio.Transport] = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            parsed = _parse_response(self.buffer)
            if parsed is None:
                return  # not whole yet
            end, status_ok, body = parsed
            if end < 0:  # cannot tell where it ends: count it and drop the connection
                self.run.failures += 1
                self.transport.close()
                return
            del self.buffer[:end]
            if status_ok and body == self.run.expected_body:
                self.run.responses += 1
            else:
                self.run.failures += 1
            if self.run.loop.time() >= self.run.deadline:
                self.transport.close()
                return
            self.transport.write(self.run.request)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _parse_response(buffer: bytearray) -> Optional[Tuple[int, bool, bytes]]:
    """``(length, status was 200, body)`` of the whole response at the buffer's start, or None.

    Bodies come with ``Content-Length`` or chunked (gunicorn chunks Django's responses); a
    response with neither cannot be delimited on a keep-alive connection: length -1.
    """
    header_end = buffer.find(b"\r\n\r\n")
    if header_end < 0:
        return None
    headers = bytes(buffer[:header_end]).lower()
    status_ok = headers.startswith(b"http/1.1 200")
    body_start = header_end + 4
    length = _header(headers, b"content-length")
    if length is not None:
        end = body_start + int(length)
        if len(buffer) < end:
            return None
        return end, status_ok, bytes(buffer[body_start:end])
    if _header(headers, b"transfer-encoding") == b"chunked":
        body, position = bytearray(), body_start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            chunk_start = line_end + 2
            if len(buffer) < chunk_start + size + 2:
                return None
            if size == 0:  # no trailers from these servers
                return chunk_start + 2, status_ok, bytes(body)
            body += buffer[chunk_start : chunk_start + size]
            position = chunk_start + size + 2
    return -1, False, b""


def _header(headers: bytes, name: bytes) -> Optional[bytes]:
    start = headers.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    stop = headers.find(b"\r\n", start)
    return headers[start : stop if stop >= 0 else None].strip()


class _Run:
    def __init__(self, request: bytes, expected_body: bytes, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.request = request
        self.expected_body = expected_body
        self.deadline = self.loop.time() + seconds
        self.responses = 0
        self.failures = 0


async def _drive(
    port: int, request: bytes, expected_body: bytes, seconds: float, concurrency: int
) -> LoadResult:
    run = _Run(request, expected_body, seconds)
    started = time.perf_counter()

    async def connection_loop() -> None:
        # A server may close a keep-alive connection (timeouts, recycling): open a new one.
        while run.loop.time() < run.deadline:
            try:
                _, protocol = await run.loop.create_connection(
                    lambda: _Connection(run), "127.0.0.1", port
                )
            except OSError:
                run.failures += 1
                await asyncio.sleep(0.01)
                continue
            await protocol.closed

    await asyncio.gather(*(connection_loop() for _ in range(concurrency)))
    return LoadResult(run.responses, run.failures, time.perf_counter() - started)


def run_load(
    port: int,
    *,
    seconds: float,
    concurrency: int = 8,
    path: str = "/",
    expected_body: bytes = b"Hello, world!",
) -> LoadResult:
    """Drive ``127.0.0.1:port`` for ``seconds`` with ``concurrency`` keep-alive connections."""
    request = browser_request(f"127.0.0.1:{port}", path)
    return asyncio.run(_drive(port, request, expected_body, seconds, concurrency))


def median(values: List[float]) -> float:
    """The median of a non-empty list."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
