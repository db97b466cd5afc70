"""A separate process holding a Spool, driven one command per line on stdin (tests/test_spool.py).

Usage: python spool_driver.py PATH WRITE_KEY [ADOPT_INTERVAL [START_AT]]

It opens the spool (at the wall-clock time START_AT if given, so that several drivers open it
at the same moment), prints ``ready`` (or ``error <message>``), then answers each command with
one line:

- ``append COUNT PREFIX QUEUED`` -> ``ok``: COUNT rows ``PREFIX-0`` ... stored
- ``remove_first COUNT`` -> ``ok``: the first COUNT rows this process appended (and has not
  removed yet) removed, as if delivered
- ``take LIMIT [AT]`` -> the taken rows as JSON ``[[id, text], ...]`` (at wall time AT if given)
- ``counts`` -> ``PENDING BACKLOG``
- ``close`` -> ``ok``

End of input: the process exits without closing the spool. The tests SIGKILL it as well.
"""

import json
import sys
import time

from standalone import load_spool_module  # this script's folder is on sys.path

spool_module = load_spool_module()


def sleep_until(moment: float) -> None:
    while time.time() < moment:
        time.sleep(min(0.005, max(0.0, moment - time.time())))


def main() -> None:
    path, key = sys.argv[1], sys.argv[2]
    adopt_interval = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    if len(sys.argv) > 4:
        sleep_until(float(sys.argv[4]))
    try:
        spool = spool_module.Spool(path, key, adopt_interval=adopt_interval)
    except spool_module.SpoolError as error:
        print(f"error {error}", flush=True)
        return
    print("ready", flush=True)
    appended = []  # row ids, in order, not yet removed
    for line in sys.stdin:
        command, *args = line.split()
        if command == "append":
            count, prefix, queued = int(args[0]), args[1], args[2] == "1"
            for number in range(count):
                appended.append(spool.append(f"{prefix}-{number}".encode(), queued=queued))
            answer = "ok"
        elif command == "remove_first":
            removed, appended[: int(args[0])] = appended[: int(args[0])], []
            spool.remove(removed)
            answer = "ok"
        elif command == "take":
            if len(args) > 1:
                sleep_until(float(args[1]))
            rows = spool.take_backlog(int(args[0]))
            answer = json.dumps([[row, data.decode()] for row, data in rows])
        elif command == "counts":
            answer = f"{spool.pending_count()} {spool.backlog_count()}"
        elif command == "close":
            spool.close()
            answer = "ok"
        else:
            answer = f"unknown command {command!r}"
        print(answer, flush=True)


if __name__ == "__main__":
    main()
