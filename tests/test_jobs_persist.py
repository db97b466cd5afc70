"""What no hook can save, and what ``persist=`` does about it: a job process that leaves
through ``os._exit()`` in its own code (or is killed with SIGKILL) delivers nothing; with
``persist=`` its accepted messages stay in the spool, and the next process that opens the
same spool (the next job, the worker's next start) sends them."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.job_apps.harness import delivered_indexes, unique_user
from tests.support.servers import ROOT, python_env

pytestmark = pytest.mark.slow

TRACK_AND_DIE = """
import os, signal, sys
import analytics_core
client = analytics_core.Client("jobs-write-key", host={host!r}, upload_interval=60,
                               persist={persist!r})
for index in range(3):
    assert client.track({user!r}, "Job Done", {{"index": index}})[0]
if sys.argv[1] == "exit":
    os._exit(0)  # the job's own code, as a forked worker's may do
os.kill(os.getpid(), signal.SIGKILL)
"""

NEXT_PROCESS = """
import analytics_core
client = analytics_core.Client("jobs-write-key", host={host!r}, persist={persist!r})
assert client.flush(timeout=10)
print(client.stats()["recovered"])
"""


def run(code, *args, **values):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code.format(**values)), *args],
        env=python_env(),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("how", "persist"),
    [("exit", False), ("exit", True), ("kill", True)],
    ids=["os_exit-memory", "os_exit-persist", "sigkill-persist"],
)
def test_only_the_spool_survives_os_exit_and_sigkill(collector, tmp_path, how, persist):
    user = unique_user()
    spool = str(tmp_path / "spool.db") if persist else None
    died = run(TRACK_AND_DIE, how, host=collector.url, persist=spool, user=user)
    expected = 0 if how == "exit" else -signal.SIGKILL
    assert died.returncode == expected, died.stderr
    assert collector.events(limit=0, user_id=user) == []  # nothing could run before it went
    if not persist:
        return
    nxt = run(NEXT_PROCESS, host=collector.url, persist=spool)
    assert nxt.returncode == 0, nxt.stderr
    assert nxt.stdout.split() == ["3"]
    assert delivered_indexes(collector.events(limit=0, user_id=user)) == [0, 1, 2]
    assert os.path.exists(spool)
