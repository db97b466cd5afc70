"""Threads appending, taking and removing on one spool with tiny journal segments, until killed.

Usage: python spool_stress.py PATH WRITE_KEY LOG

Every finished operation is logged to LOG, one line each, written with one ``os.write`` on an
O_APPEND descriptor (so a SIGKILL leaves whole lines): ``a ID`` after an append returned,
``r? ID ...`` before a removal starts and ``r ID ...`` after it returned. The test SIGKILLs this
process, then checks what an adopter finds against the log (tests/test_spool.py).
"""

import os
import sys
import threading

from standalone import load_spool_module  # this script's folder is on sys.path

spool_module = load_spool_module()
spool_module.SEGMENT_BYTES = 300  # a few records per segment: rotations and moves all the time
spool_module.MAX_SEGMENTS = 2


def main() -> None:
    path, key, log_path = sys.argv[1], sys.argv[2], sys.argv[3]
    spool = spool_module.Spool(path, key, adopt_interval=3600.0)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    queued = []
    lock = threading.Lock()

    def note(line: str) -> None:
        os.write(log, (line + "\n").encode())

    def writer(number: int) -> None:
        index = 0
        while True:
            in_queue = index % 3 != 0
            row = spool.append(f"{number}-{index}".encode() + b"." * 40, queued=in_queue)
            note(f"a {row}")
            if in_queue:
                with lock:
                    queued.append(row)
            index += 1

    def remove(ids: list) -> None:
        if ids:
            note("r? " + " ".join(map(str, ids)))
            spool.remove(ids)
            note("r " + " ".join(map(str, ids)))

    def deliver_queued() -> None:
        while True:
            with lock:
                batch, queued[:7] = queued[:7], []
            remove(batch)

    def take_backlog() -> None:
        keep = False
        while True:
            ids = [row for row, _ in spool.take_backlog(5)]
            if keep:
                spool.requeue(ids)
            else:
                remove(ids)
            keep = not keep

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(3)]
    threads += [threading.Thread(target=f, daemon=True) for f in (deliver_queued, take_backlog)]
    for thread in threads:
        thread.start()
    print("running", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
