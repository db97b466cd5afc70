"""The spool's journal: one owner's append-only segment files, where ``append`` writes.

A committed SQLite row cost the caller 15-25 µs of CPU (locks, page writes, WAL index), most of
``persist=``'s cost per call. A journal record costs one ``os.pwrite``: like a commit in WAL mode
with ``synchronous=NORMAL``, it is in the kernel's page cache when the call returns, so it
survives the process (SIGKILL, ``os._exit``), not a power cut.

A segment file holds records, each ``crc32 | length | kind | id | payload``:

- ``APPEND``: a message, its row id and its bytes;
- ``GONE``: row ids, each now delivered or moved into the SQLite table, so no longer the
  journal's (it may name rows of an earlier segment).

Replaying an owner's segments in order gives the rows that are still the journal's. A record
whose checksum or length does not fit (a write cut short when the process died) ends its segment:
nothing after it was ever acknowledged.

This module knows files and bytes only; :mod:`analytics_core.spool` owns the ids, the locks
and the SQLite side.
"""

import os
import re
import struct
import zlib
from typing import Dict, Iterator, List, Sequence, Set, Tuple

__all__ = ["APPEND", "GONE", "Segment", "encode", "gone_record", "owner_segments", "replay"]

APPEND = 1
GONE = 2

_CRC = struct.Struct("<I")
_BODY = struct.Struct("<IBQ")  # payload length, kind, id: what the crc covers, with the payload
HEADER_SIZE = _CRC.size + _BODY.size
_NAME = re.compile(r"([0-9]+-[0-9a-f]{16,32})\.([0-9]+)\.log")


def encode(kind: int, row_id: int, payload: bytes) -> bytes:
    """One record's bytes."""
    body = _BODY.pack(len(payload), kind, row_id)
    return _CRC.pack(zlib.crc32(payload, zlib.crc32(body))) + body + payload


def gone_record(ids: Sequence[int]) -> bytes:
    """A ``GONE`` record naming ``ids``."""
    return encode(GONE, 0, struct.pack(f"<{len(ids)}q", *ids))


def records(data: bytes) -> Iterator[Tuple[int, int, bytes, int]]:
    """``(kind, id, payload, offset)`` of each whole record in ``data``, up to the first that
    is cut short or damaged."""
    offset, end = 0, len(data)
    while offset + HEADER_SIZE <= end:
        (crc,) = _CRC.unpack_from(data, offset)
        length, kind, row_id = _BODY.unpack_from(data, offset + _CRC.size)
        start = offset + HEADER_SIZE
        if start + length > end:
            return
        payload = data[start : start + length]
        body = data[offset + _CRC.size : start]
        if zlib.crc32(payload, zlib.crc32(body)) != crc or kind not in (APPEND, GONE):
            return
        yield kind, row_id, payload, offset
        offset = start + length


def read_payload(descriptor: int, offset: int) -> bytes:
    """The payload of the record at ``offset`` of an open segment (written by this process)."""
    header = os.pread(descriptor, HEADER_SIZE, offset)
    if len(header) == HEADER_SIZE:
        length = _BODY.unpack_from(header, _CRC.size)[0]
        payload = os.pread(descriptor, length, offset + HEADER_SIZE)
        if len(payload) == length:
            return payload
    raise OSError(f"journal record at offset {offset} is cut short")


def segment_name(token: str, number: int) -> str:
    """The file name of an owner's segment ``number``."""
    return f"{token}.{number}.log"


def owner_segments(directory: str) -> Dict[str, List[str]]:
    """Every owner token with segment files in ``directory``: their paths, oldest first."""
    found: Dict[str, List[Tuple[int, str]]] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return {}
    for name in names:
        match = _NAME.fullmatch(name)
        if match:
            found.setdefault(match[1], []).append((int(match[2]), os.path.join(directory, name)))
    return {token: [path for _, path in sorted(paths)] for token, paths in found.items()}


def replay(paths: Sequence[str]) -> Dict[int, bytes]:
    """The rows an ended owner's segments (oldest first) still hold, by id, in id order."""
    rows: Dict[int, bytes] = {}
    for path in paths:
        try:
            with open(path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            continue  # taken meanwhile by another adopter, which then removes the files
        for kind, row_id, payload, _ in records(data):
            if kind == APPEND:
                rows[row_id] = payload
            else:
                for gone in struct.unpack(f"<{len(payload) // 8}q", payload):
                    rows.pop(gone, None)
    return dict(sorted(rows.items()))


class Segment:
    """One segment file of the owner in this process, and what of it is still live.

    ``live`` maps each row still the journal's to its record's offset; ``spool_only`` holds
    those of them not in the memory queue (the queue was full, or they were requeued).
    """

    __slots__ = ("descriptor", "live", "path", "size", "spool_only")

    def __init__(self, path: str) -> None:
        self.path = path
        # 0600: messages are user data. Written at offsets this object keeps (one writer: the
        # owner, under the spool's journal lock), so a cut-short record can be cut off again.
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self.descriptor = os.open(path, flags, 0o600)
        self.size = 0
        self.live: Dict[int, int] = {}
        self.spool_only: Set[int] = set()

    def write(self, record: bytes) -> int:
        """Append ``record`` whole; its offset. On a short write the file is cut back (or
        marked full, so the next record goes to a new segment) and OSError is raised."""
        offset = self.size
        written = os.pwrite(self.descriptor, record, offset)
        if written != len(record):
            try:
                os.ftruncate(self.descriptor, offset)
            except OSError:
                self.size = 1 << 62  # never write after a damaged record: rotate instead
            raise OSError(f"journal write cut short ({written} of {len(record)} bytes)")
        self.size = offset + written
        return offset

    def close_and_remove(self) -> None:
        """Unlink the file and close it (all its rows are gone from the journal)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.descriptor)
