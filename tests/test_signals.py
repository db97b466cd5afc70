"""SIGTERM with analytics_core in the process (analytics_core/signals.py), in real child processes.

Each test starts a program from ``tests/signal_scripts/``, waits until it queued its events and
is doing what it does when stopped, sends SIGTERM from outside, and checks what the program
would show without analytics_core (how it ended, how fast, what ran), plus what reached the
local collector. Events wait in the queue (a minute's upload interval) until the stop.
"""

import signal
import subprocess
import sys
import time
import uuid
from typing import Dict, List, NamedTuple, Optional

import pytest

from analytics_core import signals
from analytics_core.signals import install_sigterm_handler, uninstall_sigterm_handler

from .support.servers import ROOT, ServerProcess, executable, free_port, python_env

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signals only"),
    pytest.mark.analytics_send,
]

SCRIPTS = ROOT / "tests" / "signal_scripts"
DIES_BY_SIGTERM = -signal.SIGTERM  # what subprocess reports for a death by the signal
# Delivering five events to the local collector takes a few tens of milliseconds; this is the
# margin for a loaded CI machine, still far below the shutdown_timeout of a hung delivery.
QUICK = 3.0


class Stopped(NamedTuple):
    returncode: int
    lines: List[str]  # what the program printed, "ready" included
    seconds: float  # from the (first) SIGTERM to the end of the process
    after_second: Optional[float]  # from the second SIGTERM, when one was sent
    delivered: List[Dict]


def child_env(collector, user: str, host: Optional[str], events: int, timeout: float) -> Dict:
    return python_env(
        {
            "SIGNAL_TEST_HOST": host or collector.url,
            "SIGNAL_TEST_USER": user,
            "SIGNAL_TEST_EVENTS": str(events),
            "SIGNAL_TEST_SHUTDOWN_TIMEOUT": str(timeout),
        }
    )


def stop(
    collector,
    scenario: str,
    *,
    host: Optional[str] = None,
    events: int = 5,
    shutdown_timeout: float = 5.0,
    second_after: Optional[float] = None,
    extra_env: Optional[Dict[str, str]] = None,
    send: bool = True,
) -> Stopped:
    """Run ``stopped.py scenario``, SIGTERM it once it is ready (again ``second_after`` s
    later; not at all without ``send``: it signals itself), and wait for it to end."""
    user = "signals-" + uuid.uuid4().hex[:12]
    env = child_env(collector, user, host, events, shutdown_timeout)
    env.update(extra_env or {})
    child = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "stopped.py"), scenario],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline().rstrip("\n")]
        assert lines == ["ready"], lines + child.communicate(timeout=30)[1].splitlines()
        time.sleep(0.1)  # into the call it makes when ready (a sleep, a read, a loop)
        sent = time.monotonic()
        if send:
            child.send_signal(signal.SIGTERM)
        second = None
        if second_after is not None:
            time.sleep(second_after)
            second = time.monotonic()
            child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
        ended = time.monotonic()
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    lines += out.splitlines()
    return Stopped(
        child.returncode,
        lines,
        ended - sent,
        None if second is None else ended - second,
        collector.events(limit=0, user_id=user),
    )


def indices(stopped: Stopped) -> List[int]:
    return sorted(event["properties"]["index"] for event in stopped.delivered)


# -- the default disposition: delivered, then killed by the signal -----------------------------


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param("sleep", id="in-a-long-sleep"),
        pytest.param("socket", id="in-a-blocking-read"),
        pytest.param("busy", id="in-pure-python"),
        pytest.param("except", id="inside-except-BaseException"),
        pytest.param("thread", id="non-daemon-thread-running"),
    ],
)
def test_the_default_disposition_delivers_then_dies_by_the_signal(collector, scenario):
    stopped = stop(collector, scenario)
    # Killed by the signal as without analytics_core, not an exit status: no exception went
    # through the program (its `except BaseException` printed nothing), a C call was cut
    # short, a non-daemon thread did not keep the process alive.
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.lines == ["ready"], stopped
    assert stopped.seconds < QUICK, stopped
    assert indices(stopped) == [0, 1, 2, 3, 4]


def test_a_sigterm_the_main_thread_holds_back_waits_for_it(collector):
    # The kernel gives a process's signal to any thread that does not block it. Taken by an
    # uploader thread, it was flagged for the main thread behind the back of its mask (and a
    # main thread asleep in a blocking call was never woken: Pool.terminate() hung on such a
    # worker). analytics_core's threads block it: it waits for the main thread.
    stopped = stop(collector, "held")
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.lines == ["ready", "held"], stopped
    assert indices(stopped) == [0, 1, 2, 3, 4]


def test_a_sigterm_taken_by_another_thread_still_wakes_the_main_thread(collector):
    # The handler runs on the main thread only, and a main thread asleep in C code that the
    # signal did not interrupt never gets to it: without the wake-up the process ran on for
    # good (a multiprocessing worker waiting for its queue's lock made Pool.terminate() hang).
    stopped = stop(collector, "elsewhere", send=False)
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.lines == ["ready"], stopped
    assert stopped.seconds < QUICK, stopped
    assert indices(stopped) == [0, 1, 2, 3, 4]


def run_watched(collector, case: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "watched.py"), case],
        env=python_env({"SIGNAL_TEST_HOST": collector.url}),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_forked_child_is_woken_by_its_own_watch_and_the_parents_never_hears(collector):
    result = run_watched(collector, "fork")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["child -15", "parent alive"], result.stderr


@pytest.mark.parametrize("case", ["asyncio", "taken"])
def test_the_wakeup_descriptor_stays_with_whoever_else_takes_it(collector, case):
    result = run_watched(collector, case)
    assert result.returncode == 0, result.stderr
    assert all(line.endswith(" True") for line in result.stdout.splitlines()), result.stdout
    assert result.stdout.strip(), result.stderr


def test_delivery_is_bounded_by_shutdown_timeout(collector):
    # A server that accepts and never answers: the delivery gives up after shutdown_timeout.
    stopped = stop(collector, "sleep", host="blackhole", shutdown_timeout=0.5)
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert 0.45 < stopped.seconds < 0.5 + signals._GRACE + 1.0, stopped


def test_a_second_sigterm_kills_at_once(collector):
    stopped = stop(collector, "sleep", host="blackhole", shutdown_timeout=20.0, second_after=0.3)
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.after_second is not None and stopped.after_second < 0.5, stopped


@pytest.mark.parametrize(
    "slow",
    [
        # track() returns before _LEAVE_LIMIT: the main thread delivers as it leaves it.
        pytest.param(0.4, id="leaves-soon"),
        # It does not: a helper thread delivers, waiting for the lock; the main thread stops
        # when it leaves track().
        pytest.param(signals._LEAVE_LIMIT + 0.7, id="leaves-late"),
    ],
)
def test_the_signal_coming_while_track_holds_the_queues_lock(collector, slow):
    # The main thread is stopped inside track(), holding the lock the delivery needs: it is
    # let leave track() (never to run the program's next line), and the queue is delivered.
    stopped = stop(collector, "locked", extra_env={"SIGNAL_TEST_SLOW": str(slow)})
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.lines == ["ready"], stopped  # not "returned from track"
    assert stopped.seconds < QUICK, stopped
    assert len({event["messageId"] for event in stopped.delivered}) == 6
    assert len(stopped.delivered) == 6  # the five and the one being queued, once each


def test_a_tight_track_loop_delivers_everything_it_queued(collector):
    for _ in range(3):
        stopped = stop(collector, "tight", events=0)
        assert stopped.returncode == DIES_BY_SIGTERM, stopped
        assert stopped.seconds < QUICK, stopped
        delivered = indices(stopped)
        assert len(delivered) >= 2000
        assert delivered == list(range(len(delivered)))  # no gap, nothing twice


def test_the_signal_coming_while_the_main_thread_waits_in_flush(collector):
    # flush() with no timeout would wait for ever on a server that never answers: the
    # delivery starts anyway after _LEAVE_LIMIT, and the whole stop stays bounded.
    stopped = stop(collector, "in_flush", host="blackhole", shutdown_timeout=0.5)
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.seconds < 0.5 + signals._GRACE + 1.0, stopped


def test_the_signal_during_the_delivery_at_exit_lets_it_finish(collector):
    # The delivery at exit started when the program printed "ready", 0.1 s before the signal.
    stopped = stop(collector, "ends", host="blackhole", shutdown_timeout=0.6)
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert 0.3 < stopped.seconds < 0.6 + signals._GRACE + 1.0, stopped

    stopped = stop(collector, "ends", host="blackhole", shutdown_timeout=20.0, second_after=0.3)
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.after_second is not None and stopped.after_second < 0.5, stopped


def test_an_ignored_sigterm_stays_ignored(collector):
    user = "signals-" + uuid.uuid4().hex[:12]
    child = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "stopped.py"), "ignored"],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(collector, user, None, 1, 5.0),
        cwd=str(ROOT),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert child.poll() is None
    finally:
        child.kill()
        child.communicate()


def test_the_hook_can_be_turned_off_with_the_environment(collector):
    env = {signals.OPT_OUT_VARIABLE: "0"}
    stopped = stop(collector, "sleep", extra_env=env)
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.delivered == []  # nothing stood between the signal and the process


# -- the program's own handler ------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param("idiom", id="installed-before-the-client"),
        pytest.param("idiom_after", id="installed-after-restoring-ours"),
    ],
)
def test_the_programs_re_raise_still_kills(collector, scenario):
    # "Clean up, restore the default, signal.raise_signal(SIGTERM)": the handler runs, its
    # re-raise ends the program by the signal, and the queue is delivered first.
    stopped = stop(collector, scenario)
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert "app handler ran" in stopped.lines, stopped
    assert "slept to the end" not in stopped.lines, stopped
    assert stopped.seconds < QUICK, stopped
    assert indices(stopped) == [0, 1, 2, 3, 4]


def test_the_programs_kill_of_itself_still_kills(collector):
    # The variant with os.kill(os.getpid(), SIGTERM): the queue is delivered first too, then
    # the program dies by the signal.
    stopped = stop(collector, "idiom_kill")
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.lines[:2] == ["ready", "app handler ran"], stopped
    assert "still alive after the app's re-raise" not in stopped.lines, stopped
    assert stopped.seconds < QUICK, stopped
    assert indices(stopped) == [0, 1, 2, 3, 4]


def test_a_subprocess_the_programs_handler_starts_can_be_terminated(collector):
    # Found by a trial of our own: SIGTERM was blocked while the program's handler ran, and a
    # cleanup helper it started inherited the mask and ignored terminate() for good.
    stopped = stop(collector, "idiom_subprocess")
    assert "blocked []" in stopped.lines, stopped
    [child] = [line.split() for line in stopped.lines if line.startswith("child ")]
    assert int(child[1]) == DIES_BY_SIGTERM and float(child[2]) < 1.0, stopped
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert indices(stopped) == [0, 1, 2, 3, 4]


def test_a_handler_that_returns_leaves_no_signal_blocked(collector):
    stopped = stop(collector, "flag")
    assert stopped.returncode == 0, stopped
    assert "blocked []" in stopped.lines, stopped
    # A subprocess started afterwards inherits the mask: terminate() must still end it.
    [child] = [line.split() for line in stopped.lines if line.startswith("child ")]
    assert int(child[1]) == DIES_BY_SIGTERM and float(child[2]) < 1.0, stopped
    assert len(stopped.delivered) == 6  # at exit, as usual: the five and "After Stop"


def test_a_second_sigterm_the_program_made_fatal_kills_at_once(collector):
    # The first SIGTERM stops the program gracefully and puts the default back; its event is
    # queued after that (the uploader thread starts then), and the delivery at exit hangs.
    stopped = stop(
        collector, "flag", host="blackhole", events=0, shutdown_timeout=20.0, second_after=0.3
    )
    assert stopped.returncode == DIES_BY_SIGTERM, stopped
    assert stopped.after_second is not None and stopped.after_second < 0.5, stopped


# -- uvicorn -----------------------------------------------------------------------------------


def serve(collector, command: List[str], port: int, *, host=None, timeout=5.0) -> tuple:
    user = "signals-" + uuid.uuid4().hex[:12]
    env = child_env(collector, user, host, 5, timeout)
    return user, ServerProcess(command, port, env=env)


def uvicorn_cli(port: int) -> List[str]:
    # The command line imports the app before uvicorn installs its handler.
    return executable("uvicorn") + [
        "tests.signal_scripts.uvicorn_app:app",
        *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"),
    ]


def uvicorn_embedded(port: int, *options: str) -> List[str]:
    # uvicorn.Server imports the app while its own handler is installed.
    return [sys.executable, str(SCRIPTS / "uvicorn_embedded.py"), str(port), *options]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(uvicorn_cli, id="app-imported-before-uvicorn-handles-signals"),
        pytest.param(uvicorn_embedded, id="app-imported-inside-uvicorns-capture"),
    ],
)
def test_uvicorns_re_raise_delivers_then_kills(collector, command):
    port = free_port()
    user, server = serve(collector, command(port), port)
    with server:
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        returncode = server.wait(30)
        seconds = time.monotonic() - sent
        assert returncode == DIES_BY_SIGTERM, server.output()
    assert seconds < QUICK
    assert len(collector.events(limit=0, user_id=user)) == 5


def test_uvicorn_puts_back_the_programs_handler_and_nothing_stays_blocked(collector):
    port = free_port()
    user, server = serve(collector, uvicorn_embedded(port, "own-handler"), port)
    with server:
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output()
        lines = server.output().splitlines()
    assert "uvicorn returned [15]" in lines  # the program's handler got uvicorn's re-raise
    assert "blocked []" in lines
    [child] = [line.split() for line in lines if line.startswith("child ")]
    assert int(child[1]) == DIES_BY_SIGTERM and float(child[2]) < 1.0, lines
    assert len(collector.events(limit=0, user_id=user)) == 5


def test_a_second_sigterm_during_the_delivery_after_uvicorn_kills_at_once(collector):
    port = free_port()
    command = uvicorn_embedded(port)
    user, server = serve(collector, command, port, host="blackhole", timeout=20.0)
    with server:
        server.signal(signal.SIGTERM)
        time.sleep(1.0)  # uvicorn's graceful shutdown is over (0.1 s), the delivery hangs
        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(30) == DIES_BY_SIGTERM, server.output()
        assert time.monotonic() - sent < 0.5


# -- installing and undoing, in this process ---------------------------------------------------


@pytest.fixture
def saved_sigterm():
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def test_uninstall_puts_back_what_was_there(saved_sigterm, monkeypatch):
    monkeypatch.delenv(signals.OPT_OUT_VARIABLE, raising=False)

    def own(signum, frame):
        pass

    signal.signal(signal.SIGTERM, own)
    assert install_sigterm_handler() is True
    assert signal.getsignal(signal.SIGTERM) is not own
    assert install_sigterm_handler() is False  # ours already: not wrapped twice
    assert uninstall_sigterm_handler() is True
    assert signal.getsignal(signal.SIGTERM) is own
    assert uninstall_sigterm_handler() is False

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert install_sigterm_handler() is True
    assert uninstall_sigterm_handler() is True
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("value", ["0", "false", "off", "No"])
def test_the_environment_opt_out_leaves_sigterm_alone(saved_sigterm, monkeypatch, value):
    monkeypatch.setenv(signals.OPT_OUT_VARIABLE, value)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert install_sigterm_handler() is False
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
