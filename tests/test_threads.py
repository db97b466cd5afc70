"""analytics_core's threads leave the program's signals to the program's threads.

The behaviour this protects (a SIGTERM the main thread holds back waits for it; Pool.terminate()
ends its workers) is tested end to end in tests/test_signals.py and
tests/test_jobs_multiprocessing.py; these read the masks themselves, for every kind of thread
the library starts, from the kernel's own account (/proc).
"""

import signal
import threading
from pathlib import Path

import pytest

import analytics_core
from analytics_core.collector import Collector
from analytics_core.shutdown import shutdown_clients
from analytics_core.threads import ASYNC_SIGNALS, start_bare_thread, start_thread

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="reads thread masks from Linux's /proc"
)


def blocked_signals(thread: "threading.Thread | None" = None) -> "set[int]":
    """The signals ``thread`` (None: the calling one) blocks, as the kernel says (SigBlk, a hex
    bit mask)."""
    native_id = threading.get_native_id() if thread is None else thread.native_id
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")]
    bits = int(mask, 16)
    return {signum for signum in range(1, 65) if bits & (1 << (signum - 1))}


def our_threads() -> "list[threading.Thread]":
    return [thread for thread in threading.enumerate() if thread.name.startswith("analytics")]


def test_the_uploaders_and_an_in_process_collector_block_the_process_signals(
    tmp_path, analytics_send
):
    collector = Collector(port=0, db=str(tmp_path / "events.db")).start()
    client = analytics_core.Client("wk-threads", host=collector.url, upload_interval=60)
    try:
        assert client.track("u", "Threads")[0]
        assert client.flush(timeout=5)
        threads = our_threads()
        names = {thread.name.rsplit("-", 1)[0] for thread in threads}
        assert {"analytics-uploader", "analytics-core-collector"} <= names, names
        for thread in threads:
            blocked = blocked_signals(thread)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                assert signum in blocked, (thread.name, signum)
            # Those the kernel sends to the thread that caused them stay open: a fault must
            # still crash, not hang.
            for signum in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGPIPE):
                assert signum not in blocked, (thread.name, signum)
    finally:
        client.shutdown(timeout=2)
        collector.stop()


def test_starting_one_leaves_the_callers_mask_as_it_was():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    seen = []
    done = threading.Event()

    def record() -> None:
        seen.append(blocked_signals())
        done.set()

    thread = start_thread(record, (), "analytics-test")
    assert done.wait(5)
    thread.join(5)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    assert seen[0] >= {int(signum) for signum in ASYNC_SIGNALS}


class RecordingClient(analytics_core.Client):
    """A client whose shutdown notes which thread runs it and what that thread blocks."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen = []

    def shutdown(self, timeout=None):
        self.seen.append((threading.current_thread().name, blocked_signals()))
        return super().shutdown(timeout)


def test_the_threads_of_a_shutdown_block_them_too(collector):
    client = RecordingClient("wk-threads", host=collector.url, upload_interval=60)
    client.track("u", "Threads")
    assert shutdown_clients([client], timeout=5)
    ((name, blocked),) = client.seen
    assert name == "analytics-shutdown"
    assert signal.SIGTERM in blocked and signal.SIGSEGV not in blocked


def test_the_bare_threads_of_a_signal_handler_block_them_too():
    seen = []
    done = threading.Event()

    def record() -> None:
        seen.append(blocked_signals())
        done.set()

    start_bare_thread(record)
    assert done.wait(5)
    assert signal.SIGTERM in seen[0] and signal.SIGSEGV not in seen[0]
