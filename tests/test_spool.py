"""The spool's storage on its own: rows, ownership across real processes, bad paths, threads."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from analytics_core.spool import Spool, SpoolError

ROOT = Path(__file__).resolve().parents[1]
KEY = "wk-spool-secret-key"

# A separate process that opens the spool, appends COUNT messages, says "ready" and waits.
HOLDER = """
import sys
from analytics_core.spool import Spool
spool = Spool(sys.argv[1], sys.argv[2])
for number in range(int(sys.argv[3])):
    spool.append(f"{sys.argv[4]}-{number}".encode(), queued=True)
print("ready", flush=True)
sys.stdin.read()
"""


def start_holder(path, count, prefix, key=KEY):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), key, str(count), prefix],
        cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    process.stdin.close()
    process.stdout.close()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "spool.db"


@pytest.fixture
def spools():
    opened = []
    yield opened
    for spool in opened:
        spool.close()


def open_spool(spools, path, key=KEY):
    spool = Spool(str(path), key, adopt_interval=0)
    spools.append(spool)
    return spool


def test_rows_come_and_go(spools, path):
    spool = open_spool(spools, path)
    first = spool.append(b'{"n":1}')
    spool.append(b'{"n":2}', queued=False)
    spool.append(b'{"n":3}', queued=False)
    assert (spool.pending_count(), spool.backlog_count()) == (3, 2)
    taken = spool.take_backlog(1)
    assert [data for _, data in taken] == [b'{"n":2}']  # oldest first
    assert spool.backlog_count() == 1
    spool.requeue([row for row, _ in taken])
    assert [data for _, data in spool.take_backlog(10)] == [b'{"n":2}', b'{"n":3}']
    spool.remove([first])
    assert spool.pending_count() == 2
    assert spool.take_backlog(10) == []


def test_write_keys_are_partitioned_and_never_written(spools, path):
    mine = open_spool(spools, path)
    mine.append(b"mine", queued=False)
    mine.close()
    other = open_spool(spools, path, key="another-key")
    assert other.take_backlog(10) == []
    again = open_spool(spools, path)
    assert [data for _, data in again.take_backlog(10)] == [b"mine"]
    files = [path, *path.parent.glob("spool.db*"), *Path(str(path) + "-owners").iterdir()]
    for file in files:
        if file.is_file():
            assert KEY.encode() not in file.read_bytes(), file
        assert KEY not in file.name


def test_rows_of_a_sigkilled_process_are_adopted_intact_and_in_order(spools, path):
    holder = start_holder(path, 50, "killed")
    kill(holder)
    spool = open_spool(spools, path)
    taken = spool.take_backlog(100)
    assert [data for _, data in taken] == [f"killed-{n}".encode() for n in range(50)]


def test_a_live_owners_rows_are_left_alone_until_it_dies(spools, path):
    holder = start_holder(path, 5, "alive")
    try:
        spool = open_spool(spools, path)
        assert spool.take_backlog(100) == []
    finally:
        kill(holder)
    assert len(spool.take_backlog(100)) == 5


def test_two_live_processes_adopt_each_dead_row_exactly_once(path):
    dead = start_holder(path, 300, "orphan")
    kill(dead)
    adopter = """
import sys
from analytics_core.spool import Spool
spool = Spool(sys.argv[1], sys.argv[2], adopt_interval=0)
print("ready", flush=True)
sys.stdin.readline()
rows = spool.take_backlog(1000)
print(",".join(data.decode() for _, data in rows), flush=True)
sys.stdin.readline()
"""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", adopter, str(path), KEY],
            cwd=str(ROOT),
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        for process in processes:  # both go at once
            process.stdin.write("go\n")
            process.stdin.flush()
        got = [set(filter(None, p.stdout.readline().strip().split(","))) for p in processes]
    finally:
        for process in processes:
            kill(process)
    assert got[0] | got[1] == {f"orphan-{n}" for n in range(300)}
    assert not got[0] & got[1]


def test_a_forked_child_owns_its_own_rows(spools, path):
    spool = open_spool(spools, path)
    spool.append(b"parent", queued=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            spool.reopen_after_fork()
            spool.append(b"child", queued=True)
            code = 0 if spool.pending_count() == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert spool.pending_count() == 1  # the child's row is not the parent's
    assert [data for _, data in spool.take_backlog(10)] == [b"child"]  # its owner has ended


@pytest.mark.parametrize("kind", ["missing-dir", "directory", "not-sqlite"])
def test_unusable_paths_raise_a_spool_error_naming_the_path(tmp_path, kind):
    if kind == "missing-dir":
        target = tmp_path / "nowhere" / "spool.db"
    elif kind == "directory":
        target = tmp_path / "adir"
        target.mkdir()
    else:
        target = tmp_path / "notes.txt"
        target.write_text("this is not a database\n" * 100)
    with pytest.raises(SpoolError, match=str(target.name)):
        Spool(str(target), KEY)
    if kind == "not-sqlite":
        assert target.read_text().startswith("this is not a database")  # never overwritten


def test_appends_from_threads_while_the_uploader_takes_and_removes(spools, path):
    spool = open_spool(spools, path)
    errors = []
    removed = []
    stop = threading.Event()

    def writer(number):
        try:
            for index in range(500):
                spool.append(f"{number}-{index}".encode(), queued=False)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    def uploader():
        try:
            while not stop.is_set() or spool.backlog_count():
                rows = spool.take_backlog(100)
                spool.remove([row for row, _ in rows])
                removed.extend(data for _, data in rows)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    taker = threading.Thread(target=uploader)
    taker.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(30)
    stop.set()
    taker.join(30)
    assert not errors
    assert len(removed) == len(set(removed)) == 4000
    assert spool.pending_count() == 0


def test_a_closed_spool_says_so(path):
    spool = Spool(str(path), KEY)
    spool.close()
    with pytest.raises(SpoolError, match="closed"):
        spool.append(b"late")
