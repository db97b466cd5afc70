"""The spool's storage on its own: real SQLite files, real processes, real forks and threads."""

import hashlib
import json
import os
import re
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analytics_core import journal
from analytics_core import spool as spool_module
from analytics_core.spool import CHECKPOINT_EVERY, MAX_SEGMENTS, SEGMENT_BYTES, Spool, SpoolError

DRIVER = Path(__file__).resolve().parent / "spool_scripts" / "spool_driver.py"
KEY = "wk-Sp00l-7f3a9c-never-on-disk"
OTHER_KEY = "wk-another-source-2b81"


class Driver:
    """A spool_driver.py process (see its docstring): one command, one answer line."""

    def __init__(self, path, key=KEY, adopt_interval=5.0, start_at=None):
        command = [sys.executable, str(DRIVER), str(path), key, str(adopt_interval)]
        if start_at is not None:
            command.append(repr(start_at))
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._buffer = b""

    def read_line(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self.process.stdout], [], [], max(0.0, remaining))
            assert readable, f"no answer from the driver within {timeout} s"
            chunk = os.read(self.process.stdout.fileno(), 65536)
            assert chunk, "the driver exited"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def ready(self):
        line = self.read_line()
        assert line == "ready", line
        return self

    def send(self, command):
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()

    def ask(self, command):
        self.send(command)
        return self.read_line()

    def append(self, count, prefix, queued=True):
        assert self.ask(f"append {count} {prefix} {int(queued)}") == "ok"

    def take(self, limit):
        return json.loads(self.ask(f"take {limit}"))

    def counts(self):
        return tuple(int(number) for number in self.ask("counts").split())

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process.stdin.close()
        self.process.stdout.close()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "spool.db"


@pytest.fixture
def opened():
    """Spools and drivers made by a test, closed and killed after it."""
    things = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, Driver):
            thing.kill()
        else:
            thing.close()


def open_spool(opened, path, key=KEY, adopt_interval=0.0):
    spool = Spool(str(path), key, adopt_interval=adopt_interval)
    opened.append(spool)
    return spool


def start(opened, path, **options):
    driver = Driver(path, **options)
    opened.append(driver)
    return driver


def texts(rows):
    return [data.decode() if isinstance(data, bytes) else data for _, data in rows]


def lock_files(path):
    return sorted(p.name for p in Path(f"{path}-owners").iterdir() if p.name.endswith(".lock"))


# -- rows in one process ----------------------------------------------------------------------


def test_append_take_requeue_remove_and_the_counts(opened, path):
    spool = open_spool(opened, path)
    first = spool.append(b"q-0")  # also in the memory queue
    second = spool.append(b"b-0", queued=False)  # spool-only: the memory queue was full
    third = spool.append(b"b-1", queued=False)
    spool.append(b"b-2", queued=False)
    assert first < second < third
    assert (spool.pending_count(), spool.backlog_count()) == (4, 3)

    assert spool.take_backlog(0) == []
    assert spool.take_backlog(2) == [(second, b"b-0"), (third, b"b-1")]  # oldest first
    assert (spool.pending_count(), spool.backlog_count()) == (4, 1)
    spool.requeue([third])  # could not be sent at shutdown: hand it out again
    assert texts(spool.take_backlog(10)) == ["b-1", "b-2"]  # still in id order
    assert spool.take_backlog(10) == []
    assert (spool.pending_count(), spool.backlog_count()) == (4, 0)

    spool.remove([first, second])
    spool.remove([])
    spool.remove([first])  # twice: nothing happens
    assert spool.pending_count() == 2
    spool.requeue([first])  # a removed row does not come back
    assert spool.backlog_count() == 0


def test_ids_are_never_reused(opened, path):
    spool = open_spool(opened, path)
    last = spool.append(b"x")
    spool.remove([last])
    assert spool.append(b"y") > last  # a stale id can never name a newer message


def test_reopening_in_the_same_process_adopts_what_a_closed_spool_left(opened, path):
    first = open_spool(opened, path)
    first.append(b"in-memory-when-closed", queued=True)
    first.append(b"spool-only", queued=False)
    first.close()
    with pytest.raises(SpoolError, match="closed"):
        first.append(b"late")
    with pytest.raises(SpoolError, match="closed"):
        first.take_backlog(1)
    first.close()  # twice is fine
    again = open_spool(opened, path)
    assert texts(again.take_backlog(10)) == ["in-memory-when-closed", "spool-only"]


def test_write_keys_are_partitioned(opened, path):
    mine = open_spool(opened, path)
    mine.append(b"mine-queued")
    mine.append(b"mine-backlog", queued=False)
    other = open_spool(opened, path, key=OTHER_KEY)
    assert other.take_backlog(10) == []
    assert (other.pending_count(), other.backlog_count()) == (0, 0)
    other.append(b"other-backlog", queued=False)
    assert texts(mine.take_backlog(10)) == ["mine-backlog"]

    # Both owners end: each key's next process adopts its own rows only.
    mine.close()
    other.close()
    other_again = open_spool(opened, path, key=OTHER_KEY)
    assert texts(other_again.take_backlog(10)) == ["other-backlog"]
    mine_again = open_spool(opened, path)
    assert texts(mine_again.take_backlog(10)) == ["mine-queued", "mine-backlog"]


def test_the_write_key_is_never_written_nor_shown(opened, path):
    spool = open_spool(opened, path)
    for number in range(50):
        spool.append(f"message-{number}".encode(), queued=number % 2 == 0)
    spool.take_backlog(5)
    spool.close()  # the WAL is checkpointed into the file: check that too
    spool = open_spool(opened, path)
    spool.append(b"after")  # and a live WAL, -shm and lock file
    files = [p for p in path.parent.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"spool.db", "spool.db-wal", "spool.db-shm"}
    for file in files:
        for secret in (KEY.encode(), KEY.encode("utf-16-le")):
            assert secret not in file.read_bytes(), file
    for file in path.parent.rglob("*"):
        assert KEY not in file.name
    assert KEY not in repr(spool)
    with pytest.raises(SpoolError) as raised:
        Spool(str(path.parent / "missing" / "spool.db"), KEY)
    assert KEY not in str(raised.value)


def test_a_new_spool_is_private_to_its_user(opened, path):
    open_spool(opened, path).append(b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{path}-wal").stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{path}-owners").stat().st_mode) == 0o700
    [segment] = Path(f"{path}-owners").glob("*.log")  # the journal holds the message itself
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600


# -- ownership across processes ---------------------------------------------------------------


def test_the_rows_of_a_sigkilled_process_are_adopted_intact_and_in_order(opened, path):
    dead = start(opened, path).ready()
    dead.append(120, "in-memory", queued=True)
    dead.append(80, "backlog", queued=False)
    assert dead.counts() == (200, 80)
    [dead_lock] = lock_files(path)
    dead.kill()
    assert lock_files(path) == [dead_lock]  # SIGKILL: nobody removed it, but nobody holds it

    spool = open_spool(opened, path)
    taken = spool.take_backlog(1000)
    expected = [f"in-memory-{n}" for n in range(120)] + [f"backlog-{n}" for n in range(80)]
    assert [data for _, data in taken] == [text.encode() for text in expected]
    assert [row for row, _ in taken] == sorted(row for row, _ in taken)
    assert (spool.pending_count(), spool.backlog_count()) == (200, 0)
    assert dead_lock not in lock_files(path)  # the adopter cleaned up after it
    assert spool.take_backlog(1000) == []  # adopted once


def test_a_live_owners_rows_are_left_alone_until_it_dies(opened, path):
    alive = start(opened, path).ready()
    alive.append(5, "alive", queued=False)
    spool = open_spool(opened, path)  # adopt_interval=0: looks on every call
    assert spool.take_backlog(100) == []
    assert spool.take_backlog(100) == []
    assert texts(alive.take(100)) == [f"alive-{n}" for n in range(5)]  # still its own
    alive.append(3, "later", queued=True)
    assert spool.pending_count() == 0

    alive.kill()
    assert texts(spool.take_backlog(100)) == [f"alive-{n}" for n in range(5)] + [
        f"later-{n}" for n in range(3)
    ]


def test_adoption_is_throttled_but_always_happens_on_the_first_call(opened, path):
    first_dead = start(opened, path).ready()
    first_dead.append(2, "first", queued=False)
    second_dead = start(opened, path).ready()
    first_dead.kill()
    spool = open_spool(opened, path, adopt_interval=0.6)
    assert texts(spool.take_backlog(10)) == ["first-0", "first-1"]  # the first call looks
    second_dead.append(2, "second")
    second_dead.kill()
    assert spool.take_backlog(10) == []  # too soon to look again
    time.sleep(0.7)
    assert texts(spool.take_backlog(10)) == ["second-0", "second-1"]


def test_concurrent_adopters_take_each_dead_row_exactly_once(opened, path):
    expected = set()
    for number in range(3):
        dead = start(opened, path).ready()
        dead.append(100, f"dead{number}", queued=number != 1)
        expected |= {f"dead{number}-{n}" for n in range(100)}
    for driver in list(opened):
        driver.kill()
    adopters = [start(opened, path, adopt_interval=0).ready() for _ in range(4)]
    moment = time.time() + 0.5
    for adopter in adopters:  # all take at the same wall-clock moment
        adopter.send(f"take 1000 {moment!r}")
    got = [set(texts(json.loads(adopter.read_line()))) for adopter in adopters]
    assert set().union(*got) == expected
    assert sum(len(rows) for rows in got) == len(expected)  # no row twice
    assert sum(adopter.counts()[0] for adopter in adopters) == len(expected)


def test_processes_creating_a_new_spool_at_once_all_succeed(opened, path):
    moment = time.time() + 0.7
    drivers = [start(opened, path, start_at=moment) for _ in range(6)]
    for number, driver in enumerate(drivers):
        driver.ready()
        driver.append(20, f"p{number}", queued=False)
    assert [driver.counts() for driver in drivers] == [(20, 20)] * 6
    assert len(lock_files(path)) == 6


def test_a_closing_process_removes_its_lock_file_and_leaves_its_rows(opened, path):
    driver = start(opened, path).ready()
    driver.append(3, "left")
    assert len(lock_files(path)) == 1
    assert driver.ask("close") == "ok"
    assert lock_files(path) == []
    spool = open_spool(opened, path)
    assert texts(spool.take_backlog(10)) == ["left-0", "left-1", "left-2"]


# -- fork ---------------------------------------------------------------------------------------


def run_in_child(work):
    """Fork; the child runs ``work()`` and exits 0 if it returned True (1 if not, 2 if it
    raised) without running any of pytest's exit machinery."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            code = 0 if work() else 1
        finally:
            os._exit(code)
    return pid


def exit_code(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_owns_its_own_rows(opened, path):
    spool = open_spool(opened, path)
    parent_row = spool.append(b"parent-queued")
    spool.append(b"parent-backlog", queued=False)
    spool.reopen_after_fork()  # not forked: nothing changes
    assert (spool.pending_count(), spool.backlog_count()) == (2, 1)

    def child():
        spool.reopen_after_fork()
        spool.reopen_after_fork()  # idempotent
        for number in range(10):
            spool.append(f"child-{number}".encode())
        return (spool.pending_count(), spool.backlog_count()) == (10, 0)

    assert exit_code(run_in_child(child)) == 0
    assert (spool.pending_count(), spool.backlog_count()) == (2, 1)  # untouched
    # The child exited without closing: its rows are orphans, adopted here after our own.
    assert texts(spool.take_backlog(100)) == ["parent-backlog"] + [f"child-{n}" for n in range(10)]
    spool.remove([parent_row])
    assert spool.pending_count() == 11


def test_a_forked_child_keeps_its_rows_when_the_parent_closes_first(opened, path):
    # The failure this guards against: a child's connection opened next to an inherited one
    # held no real lock, so the parent's close deleted the WAL the child was writing to.
    spool = open_spool(opened, path)
    spool.append(b"parent")
    child_wrote, parent_closed = os.pipe(), os.pipe()

    def child():
        spool.reopen_after_fork()
        for number in range(10):
            spool.append(f"before-{number}".encode())
        os.write(child_wrote[1], b"x")
        os.read(parent_closed[0], 1)
        for number in range(10):
            spool.append(f"after-{number}".encode())
        return True

    pid = run_in_child(child)
    assert os.read(child_wrote[0], 1) == b"x"
    spool.close()
    os.write(parent_closed[1], b"x")
    assert exit_code(pid) == 0
    for descriptor in (*child_wrote, *parent_closed):
        os.close(descriptor)
    later = open_spool(opened, path)
    assert texts(later.take_backlog(100)) == (
        ["parent"] + [f"before-{n}" for n in range(10)] + [f"after-{n}" for n in range(10)]
    )


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_the_parent_keeps_working_across_forks_from_several_threads(opened, path):
    spool = open_spool(opened, path)
    stop = threading.Event()
    appended = []

    def writer():
        while not stop.is_set():
            appended.append(spool.append(b"parent-thread"))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(5):  # forks while another thread is appending
            assert exit_code(run_in_child(lambda: spool.append(b"c") > 0)) == 0
    finally:
        stop.set()
        thread.join(10)
    assert spool.pending_count() == len(appended) > 0
    assert texts(spool.take_backlog(100)) == ["c"] * 5


# -- unusable paths ---------------------------------------------------------------------------


def foreign_database(target):
    connection = sqlite3.connect(target)
    connection.execute("CREATE TABLE users (name TEXT)")
    connection.execute("INSERT INTO users VALUES ('ada')")
    connection.commit()
    connection.close()


def old_shape_database(target):
    connection = sqlite3.connect(target)
    connection.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)")
    connection.commit()
    connection.close()


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing-dir", "does not exist"),
        ("directory", "is a directory"),
        ("text-file", "not a usable SQLite spool"),
        ("foreign-sqlite", "another program's SQLite database"),
        ("other-messages-table", "other columns"),
        ("no-permission", "readonly|unable to open"),
        ("no-permission-for-another-user", "readonly|unable to open"),
    ],
)
def test_unusable_paths_raise_a_spool_error_naming_the_path(tmp_path, kind, reason):
    target = tmp_path / "spool.db"
    if kind == "missing-dir":
        target = tmp_path / "nowhere" / "spool.db"
    elif kind == "directory":
        target.mkdir()
    elif kind == "text-file":
        target.write_text("user,plan\nada,pro\n" * 200)
    elif kind == "foreign-sqlite":
        foreign_database(target)
    elif kind == "other-messages-table":
        old_shape_database(target)
    elif kind == "no-permission":
        target.touch()
        target.chmod(0o400)
        if os.geteuid() == 0:
            # Root ignores file permissions: check as an unprivileged user in a child process.
            return _check_as_nobody(target, reason)
    elif kind == "no-permission-for-another-user":
        target.touch()
        target.chmod(0o600)
        return _check_as_nobody(target, reason) if os.geteuid() == 0 else None
    before = target.read_bytes() if target.is_file() else None
    with pytest.raises(SpoolError) as raised:
        Spool(str(target), KEY)
    assert str(target) in str(raised.value)
    assert re.search(reason, str(raised.value)), str(raised.value)
    if before is not None:
        assert target.read_bytes() == before  # never overwritten, not even its header
        assert not Path(f"{target}-wal").exists()
    assert not Path(f"{target}-owners").exists()


_AS_NOBODY = """
import os, re, sys
from analytics_core.spool import Spool, SpoolError
# Imported first: the interpreter's own files may be closed to nobody (root's home).
os.setgid(65534)
os.setuid(65534)
try:
    Spool(sys.argv[1], "wk")
except SpoolError as error:
    ok = sys.argv[1] in str(error) and re.search(sys.argv[2], str(error))
    sys.exit(0 if ok else 3)
sys.exit(4)
"""


def _check_as_nobody(target, reason):
    """As root: open ``target`` as user nobody, whom its permissions shut out."""
    # nobody must reach the file: a world-traversable directory of its own, outside tmp_path.
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="spool-perm-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        moved = directory / target.name
        os.replace(target, moved)
        before = moved.read_bytes()
        done = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(moved), reason],
            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert moved.read_bytes() == before
        assert not Path(f"{moved}-owners").exists()
    finally:
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


def test_a_platform_without_fcntl_gets_a_spool_error(monkeypatch, path):
    monkeypatch.setattr(spool_module, "fcntl", None)
    with pytest.raises(SpoolError, match="fcntl") as raised:
        Spool(str(path), KEY)
    assert str(path) in str(raised.value)
    assert not path.exists()


def test_a_spool_of_the_earlier_schema_is_taken_over(opened, path):
    # Written by the first version of this class: no owners table, a full index, and the rows
    # of a process that ended (its lock file is gone).
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, key_hash TEXT NOT NULL,"
        " owner TEXT NOT NULL, queued INTEGER NOT NULL, data BLOB NOT NULL)"
    )
    key_hash = hashlib.sha256(KEY.encode()).hexdigest()
    connection.executemany(
        "INSERT INTO messages (key_hash, owner, queued, data) VALUES (?, ?, 1, ?)",
        [(key_hash, "4242-" + "ab" * 16, f"old-{n}".encode()) for n in range(3)],
    )
    connection.commit()
    connection.close()
    spool = open_spool(opened, path)
    assert texts(spool.take_backlog(10)) == ["old-0", "old-1", "old-2"]


# -- threads ----------------------------------------------------------------------------------


def test_appends_from_threads_while_the_uploader_takes_and_removes(opened, path):
    spool = open_spool(opened, path, adopt_interval=0.05)
    errors, taken = [], []
    writers_done = threading.Event()

    def writer(number):
        try:
            for index in range(500):
                spool.append(f"{number}-{index}".encode(), queued=index % 2 == 0)
        except Exception as error:  # pragma: no cover - reported by the assertion below
            errors.append(error)

    def uploader():
        try:
            while True:
                done = writers_done.is_set()
                rows = spool.take_backlog(100)
                spool.remove([row for row, _ in rows])
                taken.extend(data for _, data in rows)
                if done and not rows:
                    return
        except Exception as error:  # pragma: no cover - reported by the assertion below
            errors.append(error)

    taker = threading.Thread(target=uploader)
    taker.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    writers_done.set()
    taker.join(60)
    assert errors == []
    assert len(taken) == len(set(taken)) == 8 * 250  # every spool-only row, once
    assert (spool.pending_count(), spool.backlog_count()) == (8 * 250, 0)  # the queued ones
    for number in range(8):  # each thread's rows in its own order
        mine = [data for data in taken if data.startswith(f"{number}-".encode())]
        assert mine == [f"{number}-{index}".encode() for index in range(1, 500, 2)]


# -- checkpoints: the uploader's, on a connection of its own ---------------------------------


def wal_size(path):
    wal = f"{path}-wal"
    return os.path.getsize(wal) if os.path.exists(wal) else 0


def table_count(path):
    """Rows in the SQLite table, seen from a connection of the test's own."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        connection.close()


def segment_files(path):
    return sorted(p.name for p in Path(f"{path}-owners").glob("*.log"))


def test_writes_to_the_table_checkpoint_the_wal_into_the_database(opened, path):
    spool = open_spool(opened, path)
    # The main connection never checkpoints inside a commit.
    assert spool._connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    size_before = os.path.getsize(path)
    for _ in range(CHECKPOINT_EVERY):
        for _ in range(100):
            spool.append(b"x" * 500, queued=False)
        # Taking the backlog moves its rows into the table; removing them deletes them there.
        spool.remove([row for row, _ in spool.take_backlog(100)])
    # The checkpoint copied the WAL's pages into the database file, which grew.
    assert os.path.getsize(path) > size_before
    assert spool.pending_count() == 0


def test_rows_delivered_while_in_the_journal_never_reach_the_table(opened, path):
    spool = open_spool(opened, path)
    message = b"z" * 500
    batches = 3 * SEGMENT_BYTES // (100 * len(message)) + 1
    for _ in range(batches):  # the uploader keeping up: each batch delivered, then removed
        spool.remove([spool.append(message) for _ in range(100)])
    assert spool.pending_count() == 0
    assert table_count(path) == 0
    # Full segments whose rows are all gone were deleted; only the one taking appends is left.
    assert len(segment_files(path)) == 1


def test_appends_alone_keep_the_journal_and_the_wal_bounded(opened, path):
    # Nothing is removed (the tracking API is down): past MAX_SEGMENTS segments the oldest
    # one's rows move into the table, and the WAL is checkpointed instead of growing.
    spool = open_spool(opened, path)
    appends = (MAX_SEGMENTS + 4) * SEGMENT_BYTES // 500
    most_segments, wal_sizes = 0, []
    for index in range(appends):
        spool.append(f"{index:08d}".encode() + b"y" * 492)
        if index % 250 == 0:
            most_segments = max(most_segments, len(segment_files(path)))
            wal_sizes.append(wal_size(path))
    assert spool.pending_count() == appends  # every row kept
    assert most_segments <= MAX_SEGMENTS + 1, most_segments
    assert table_count(path) >= 3 * SEGMENT_BYTES // 500  # what moved
    assert max(wal_sizes) < 3 * SEGMENT_BYTES, wal_sizes
    spool.close()
    taken = open_spool(opened, path).take_backlog(appends + 1)
    assert [data[:8] for _, data in taken] == [f"{n:08d}".encode() for n in range(appends)]


# -- the journal across a crash -----------------------------------------------------------------


def test_a_killed_owners_journal_is_replayed_without_what_it_delivered(opened, path):
    dead = start(opened, path).ready()
    dead.append(100, "a", queued=True)
    dead.append(30, "b", queued=False)
    dead.ask("remove_first 40")  # delivered: a-0 ... a-39
    assert dead.counts() == (90, 30)
    assert table_count(path) == 0  # all still in its journal
    dead.kill()
    spool = open_spool(opened, path)
    expected = [f"a-{n}" for n in range(40, 100)] + [f"b-{n}" for n in range(30)]
    assert texts(spool.take_backlog(1000)) == expected
    assert segment_files(path) == []  # the adopter deleted the dead owner's segments
    assert spool.take_backlog(1000) == []  # replayed once


def test_rows_moved_into_the_table_then_delivered_are_not_sent_again_after_a_crash(opened, path):
    dead = start(opened, path).ready()
    dead.append(5, "moved", queued=False)
    assert texts(dead.take(10)) == [f"moved-{n}" for n in range(5)]  # now in the table
    dead.ask("remove_first 5")  # delivered: deleted from the table
    dead.append(2, "journaled", queued=True)
    dead.kill()
    spool = open_spool(opened, path)
    assert texts(spool.take_backlog(100)) == ["journaled-0", "journaled-1"]


@pytest.mark.parametrize("damage", ["cut-short", "bad-checksum"])
def test_a_record_the_crash_damaged_ends_the_replay_of_its_segment(opened, path, damage):
    dead = start(opened, path).ready()
    dead.append(3, "whole", queued=True)
    dead.kill()
    [segment] = Path(f"{path}-owners").glob("*.log")
    if damage == "cut-short":  # the process died inside write(): part of a record
        segment.write_bytes(
            segment.read_bytes() + journal.encode(journal.APPEND, 10**6, b"x" * 500)[:40]
        )
    else:  # the last record's bytes are not the ones written
        data = bytearray(segment.read_bytes())
        data[-1] ^= 0xFF
        segment.write_bytes(bytes(data))
    spool = open_spool(opened, path)
    expected = (
        ["whole-0", "whole-1", "whole-2"] if damage == "cut-short" else ["whole-0", "whole-1"]
    )
    assert texts(spool.take_backlog(100)) == expected


def test_a_write_cut_short_is_an_error_and_every_acknowledged_row_survives(opened, path):
    # A file size limit makes the journal's write come back short, as a full disk would.
    import resource

    acknowledged = os.pipe()

    def child():
        spool = Spool(str(path), KEY, adopt_interval=0.0)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a short write instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        count, failures = 0, []
        while len(failures) < 3:
            try:
                spool.append(f"kept-{count}".encode() + b"." * 300)
                count += 1
            except SpoolError as error:
                failures.append(str(error))
        ok = all(str(path) in text and "cut short" in text for text in failures)
        os.write(acknowledged[1], f"{count}".encode())
        return ok and spool.pending_count() == count  # no os._exit cleanup: like a crash

    pid = run_in_child(child)
    count = int(os.read(acknowledged[0], 100))
    assert exit_code(pid) == 0
    for descriptor in acknowledged:
        os.close(descriptor)
    assert count > 100
    taken = open_spool(opened, path).take_backlog(10 * count)
    assert [data.split(b".")[0].decode() for _, data in taken] == [
        f"kept-{n}" for n in range(count)
    ]


def test_ids_stay_unique_across_processes_and_past_plain_inserts(opened, path):
    spool = open_spool(opened, path)
    drivers = [start(opened, path).ready() for _ in range(2)]
    mine = [spool.append(b"mine") for _ in range(5)]
    for number, driver in enumerate(drivers):
        driver.append(5, f"d{number}")
    # A row inserted the way the previous version did (AUTOINCREMENT) lands past every block.
    connection = sqlite3.connect(path)
    connection.execute(
        "INSERT INTO messages (key_hash, owner, queued, data) VALUES ('x', 'gone', 0, x'00')"
    )
    connection.commit()
    (plain,) = connection.execute("SELECT MAX(id) FROM messages").fetchone()
    connection.close()
    for driver in drivers:
        driver.kill()
    theirs = [row for row, _ in spool.take_backlog(100)]
    assert len(theirs) == 10
    assert len(set(mine + theirs + [plain])) == 16
    assert plain > max(mine + theirs)


def test_rows_being_moved_keep_their_segment_whatever_is_removed_meanwhile(
    opened, path, monkeypatch
):
    # A move into the table waits for SQLite's write lock (another process holds it) while the
    # uploader removes the other row of the same segment. The segment file must stay until the
    # move commits: deleted now, a crash before the commit would lose the row being moved.
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 200)  # two 117-byte records each
    spool = open_spool(opened, path)
    spool.append(b"b" * 100, queued=False)  # the first segment: a spool-only row...
    delivered = spool.append(b"q" * 100)  # ...and one in the memory queue
    for _ in range(4):
        spool.append(b"later" * 20)  # the next segments
    first = sorted(Path(f"{path}-owners").glob("*.1.log"))
    assert len(first) == 1 and len(segment_files(path)) > 1
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    taken = []
    taker = threading.Thread(target=lambda: taken.extend(spool.take_backlog(10)))
    taker.start()
    try:
        deadline = time.monotonic() + 5
        while not spool._moving:  # the move has read its rows and waits for the write lock
            assert time.monotonic() < deadline
            time.sleep(0.005)
        spool.remove([delivered])
        assert first[0].exists()
    finally:
        blocker.rollback()
        blocker.close()
        taker.join(10)
    assert texts(taken) == ["b" * 100]
    assert spool.pending_count() == 5  # the one taken, and the four later ones


def test_threads_with_tiny_segments_lose_nothing_and_resend_nothing_delivered(
    opened, path, monkeypatch
):
    # Segments of two records and at most two of them: rotations, deletions of emptied
    # segments and moves into the table all the time, while 4 threads append (half of them
    # spool-only), an uploader takes and removes, and another removes what the queue holds.
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 100)
    monkeypatch.setattr(spool_module, "MAX_SEGMENTS", 2)
    spool = open_spool(opened, path, adopt_interval=3600.0)
    queued, removed, errors = [], set(), []
    lock = threading.Lock()
    writers_done = threading.Event()

    def writer(number):
        try:
            for index in range(300):
                in_queue = index % 2 == 0
                row = spool.append(f"{number}-{index}".encode(), queued=in_queue)
                if in_queue:
                    with lock:
                        queued.append(row)
        except Exception as error:  # pragma: no cover - reported by the assertion below
            errors.append(error)

    def deliver_queued():  # the uploader's removals of what the memory queue held
        try:
            while not writers_done.is_set() or queued:
                with lock:
                    batch, queued[:7] = queued[:7], []
                spool.remove(batch)
                with lock:
                    removed.update(batch)
        except Exception as error:  # pragma: no cover
            errors.append(error)

    def take_backlog():  # and of what it took from the spool, every other batch
        try:
            keep = False
            while not writers_done.is_set():
                rows = spool.take_backlog(5)
                ids = [row for row, _ in rows]
                if keep:
                    spool.requeue(ids)  # could not be sent: spool-only again
                else:
                    spool.remove(ids)
                    with lock:
                        removed.update(ids)
                keep = not keep
        except Exception as error:  # pragma: no cover
            errors.append(error)

    helpers = [threading.Thread(target=deliver_queued), threading.Thread(target=take_backlog)]
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in helpers + writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    writers_done.set()
    for thread in helpers:
        thread.join(60)
    assert errors == []
    left = spool.pending_count()
    spool.close()
    assert len(segment_files(path)) == 0  # all moved into the table at close
    rows = open_spool(opened, path).take_backlog(10_000)  # adopted: exactly what was not removed
    assert len(rows) == left == 4 * 300 - len(removed)
    assert not {row for row, _ in rows} & removed
    assert len({data for _, data in rows}) == len(rows)


STRESS = DRIVER.parent / "spool_stress.py"


@pytest.mark.parametrize("after", [0.0, 0.4, 1.0])
def test_a_process_killed_mid_stream_loses_no_row_and_resends_no_removed_one(
    opened, path, tmp_path, after
):
    log = tmp_path / "operations.log"
    process = subprocess.Popen(
        [sys.executable, str(STRESS), str(path), KEY, str(log)], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout.readline() == b"running\n"
        deadline = time.monotonic() + 30
        while log.read_bytes().count(b"a ") < 200:  # under way, whatever the machine's load
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(after)
    finally:
        process.kill()
        process.wait(10)
        process.stdout.close()
    acknowledged, removing, removed = set(), set(), set()
    for line in log.read_text().splitlines():
        kind, *ids = line.split()
        {"a": acknowledged, "r?": removing, "r": removed}[kind].update(map(int, ids))
    assert len(acknowledged) >= 200 and removed
    found = {row for row, _ in open_spool(opened, path).take_backlog(10**6)}
    assert acknowledged - removing <= found  # nothing acknowledged and not removed is lost
    assert not found & removed  # nothing whose removal returned comes back
    assert segment_files(path) == []  # the dead process's journal was replayed and deleted
