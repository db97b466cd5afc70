"""``python -m bench.middleware [--quick] [--frameworks django,flask,starlette]``.

Middleware overhead on a hello-world endpoint: requests per second with and without the
integration, measured over loopback against real servers in one run. For each framework three
servers run side by side (:mod:`bench.middleware_apps`): ``plain``, ``integration`` (the one-line
set-up; the endpoint only says hello) and ``tracking`` (the endpoint also tracks one event).
Django and Flask are served by gunicorn (one gthread worker, 4 threads), Starlette by uvicorn
(one process): one server process, so the server gets one core and the load generator
(:mod:`bench.load`) the other.

The variants take turns, round after round, so drift in the machine's speed hits them alike;
the medians are compared (a median of each round's own overhead was tried: it moved more, as
a round's noise then counts twice). Honesty checks: every counted response was a 200 with the
hello body, and after the tracking server is stopped (SIGTERM, so it delivers at shutdown) the
collector holds exactly one event per request that server answered.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .collector import ROOT, CollectorProcess
from .load import median, run_load

VARIANTS = ("plain", "integration", "tracking")
FRAMEWORKS = ("django", "flask", "starlette")
TARGET_OVERHEAD = 0.02
"""Issue 15's bound on what the one-line set-up may cost a request that sends nothing."""
RESULTS = ROOT / "bench" / "results" / "middleware.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_command(framework: str, port: int) -> List[str]:
    if framework == "starlette":
        server = ["uvicorn", "bench.middleware_apps:asgi", "--host", "127.0.0.1"]
        server += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    else:
        server = ["gunicorn", "bench.middleware_apps:wsgi", "--bind", f"127.0.0.1:{port}"]
        server += ["--workers", "1", "--worker-class", "gthread", "--threads", "4"]
        server += ["--no-control-socket", "--log-level", "warning"]
    return [sys.executable, "-m", *server]


class _Server:
    """One hello-world server variant in its own process (and process group)."""

    def __init__(self, framework: str, variant: str, collector_url: str) -> None:
        self.framework, self.variant = framework, variant
        self.port = _free_port()
        self.answered = 0  # every 200 it gave the load generator, warm-up included
        env = dict(os.environ)
        search = [str(ROOT), str(ROOT / "integrations"), env.get("PYTHONPATH", "")]
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, search)),
            PYTHONUNBUFFERED="1",
            NO_PROXY="127.0.0.1,localhost",
            BENCH_FRAMEWORK=framework,
            BENCH_VARIANT=variant,
            BENCH_COLLECTOR=collector_url,
        )
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            _server_command(framework, self.port),
            cwd=str(ROOT),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.framework}/{self.variant} exited:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.framework}/{self.variant} did not listen:\n{self.output()}")

    def output(self) -> str:
        """What the server printed, to explain a failure."""
        if self._log.closed:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-3000:]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a graceful stop: queued events are delivered), SIGKILL if it hangs."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def measure_framework(
    framework: str, collector: CollectorProcess, rounds: int, seconds: float, warmup: float
) -> Dict[str, Any]:
    """Rounds of every variant in turn; medians, overheads and the delivery check."""
    collector.clear()
    servers = {variant: _Server(framework, variant, collector.url) for variant in VARIANTS}
    samples: Dict[str, List[float]] = {variant: [] for variant in VARIANTS}
    failures = 0
    try:
        for server in servers.values():
            result = run_load(server.port, seconds=warmup)
            server.answered += result.responses
            failures += result.failures
        for index in range(rounds):
            # Rotate the order so no variant always runs first (or right after the tracker).
            order = VARIANTS[index % 3 :] + VARIANTS[: index % 3]
            for variant in order:
                result = run_load(servers[variant].port, seconds=seconds)
                servers[variant].answered += result.responses
                failures += result.failures
                samples[variant].append(result.per_second)
    finally:
        for server in servers.values():
            server.stop()
    tracked = servers["tracking"].answered
    stored = collector.stats()["messages"]
    rps = {variant: median(values) for variant, values in samples.items()}

    return {
        "framework": framework,
        "server": "uvicorn" if framework == "starlette" else "gunicorn gthread",
        "rps": rps,
        "samples": samples,
        "overhead": 1 - rps["integration"] / rps["plain"],
        "tracking_overhead": 1 - rps["tracking"] / rps["plain"],
        "failures": failures,
        "tracked": tracked,
        "stored": stored,
        "check_passed": failures == 0 and stored == tracked,
    }


def format_table(results: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    """The report: one row per framework."""
    lines = [
        "middleware overhead on a hello-world endpoint (requests/s, median of "
        f"{meta['rounds']} rounds of {meta['seconds']:g} s, {meta['concurrency']} keep-alive "
        "connections over loopback)",
        "",
        f"{'framework':<10} {'server':<17} {'without':>9} {'with':>9} {'overhead':>9}  "
        f"{'target':<12} {'+track()':>9} {'overhead':>9}",
        "-" * 94,
    ]
    for row in results:
        rps = row["rps"]
        met = "met" if row["overhead"] < TARGET_OVERHEAD else "MISSED"
        lines.append(
            f"{row['framework']:<10} {row['server']:<17} {rps['plain']:>9,.0f} "
            f"{rps['integration']:>9,.0f} {row['overhead']:>8.1%}  {'< 5% ' + met:<12} "
            f"{rps['tracking']:>9,.0f} {row['tracking_overhead']:>8.1%}"
        )
    lines.append("")
    lines.append(
        "without = no analytics; with = the one-line set-up, endpoint unchanged; +track() = the "
        "set-up and one track() per request."
    )
    checks = [
        f"{row['framework']}: {row['stored']} of {row['tracked']} tracked events stored, "
        f"{row['failures']} bad responses"
        for row in results
    ]
    passed = all(row["check_passed"] for row in results)
    lines.append(f"delivery check: {'passed' if passed else 'FAILED'} ({'; '.join(checks)})")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark, print the table, write ``bench/results/middleware.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.middleware", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short rounds, for a smoke test")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    frameworks = [name.strip() for name in args.frameworks.split(",") if name.strip()]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        parser.error(f"unknown framework(s): {', '.join(unknown)}")
    meta = {
        "rounds": 1 if args.quick else 7,
        "seconds": 0.5 if args.quick else 3.0,
        "warmup": 0.3 if args.quick else 1.0,
        "concurrency": 8,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    results = []
    with CollectorProcess() as collector:
        for framework in frameworks:
            print(f"bench: {framework} ...", file=sys.stderr, flush=True)
            results.append(
                measure_framework(
                    framework, collector, meta["rounds"], meta["seconds"], meta["warmup"]
                )
            )
    print(format_table(results, meta))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"results: {args.output}")
    return 0 if all(row["check_passed"] for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
