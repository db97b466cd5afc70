"""``python -m bench.inprocess [--quick]``: what each integration adds to a request that sends
nothing, measured in-process, without a server or a network in the way.

For each framework the hello-world apps of :mod:`bench.middleware_apps` (``plain``: no
analytics; ``integration``: the one-line set-up; ``empty``: the framework's hook point with
code that does nothing, the floor of any integration) are called directly, a WSGI call for
Django and Flask and an ASGI call for Starlette, all of a framework's variants in one process.
Django's settings are one per process, so its variants are three ``WSGIHandler`` objects of one
configured project (``analytics_django`` installed), each built with its own ``MIDDLEWARE``:
the plain one without the analytics middleware, which is the only part of the integration a
request runs. The variants are timed in interleaved blocks of ``BLOCK`` requests, the order
reversed every block, so that a moment's slowdown of the machine slows every variant alike.
The figure is the median, over all blocks, of the difference between the integration's block
and the plain block timed beside it (µs over the bare framework), and that difference as a share
of the bare request (the median of the plain blocks); the middle half of those differences is
given too, and the same median for the empty hooks (the floor).

Before, each Django round was a fresh process per variant, and whole rounds were compared:
process-to-process variation moved the figure by more than the 2% budget (9.0% in one run where
the instruction count said 1.6%), and medians of whole rounds still moved by several points.
Results go to ``bench/results/inprocess.json``.

``python -m bench.inprocess --round FRAMEWORK VARIANT N`` is one round (used by the above).
"""

import argparse
import asyncio
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .collector import ROOT

TARGET_SHARE = 0.02
"""What the integration may add to a request that sends nothing: 2% of the bare request."""

FRAMEWORKS = ("django", "flask", "starlette")
VARIANTS = ("plain", "integration", "empty")
RESULTS = ROOT / "bench" / "results" / "inprocess.json"
BLOCK = 250
"""Requests per variant in turn within a round (see :func:`paired_rounds`)."""
_HEADERS = {
    "HTTP_HOST": "127.0.0.1",
    "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) bench",
    "HTTP_ACCEPT": "text/html,application/xhtml+xml",
    "HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9",
}


def _warmup(n: int, warmup: Optional[int]) -> int:
    # One round's own warm-up (bench.instructions counts on this), unless the caller warmed up.
    return max(200, n // 10) if warmup is None else warmup


def _wsgi_round(app: Any, n: int, warmup: Optional[int] = None) -> float:
    def start_response(status: str, headers: List[Any], exc_info: Any = None) -> None:
        return None

    def one() -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "203.0.113.9",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            **_HEADERS,
        }
        body = app(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    for _ in range(_warmup(n, warmup)):
        one()
    start = time.perf_counter()
    for _ in range(n):
        one()
    return (time.perf_counter() - start) / n * 1e6


def _asgi_round(app: Any, n: int, warmup: Optional[int] = None) -> float:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"user-agent", _HEADERS["HTTP_USER_AGENT"].encode()),
        (b"accept", _HEADERS["HTTP_ACCEPT"].encode()),
        (b"accept-language", _HEADERS["HTTP_ACCEPT_LANGUAGE"].encode()),
    ]

    async def one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("203.0.113.9", 50000),
            "server": ("127.0.0.1", 8000),
        }

        async def receive() -> Dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Dict[str, Any]) -> None:
            return None

        await app(scope, receive, send)

    async def rounds() -> float:
        for _ in range(_warmup(n, warmup)):
            await one()
        start = time.perf_counter()
        for _ in range(n):
            await one()
        return (time.perf_counter() - start) / n * 1e6

    return asyncio.run(rounds())


def one_round(framework: str, variant: str, n: int) -> float:
    """µs per request of ``n`` in-process requests to the ``variant`` app of ``framework``."""
    os.environ.update(
        BENCH_FRAMEWORK=framework,
        BENCH_VARIANT=variant,
        BENCH_COLLECTOR="http://127.0.0.1:9",  # nothing is sent: the endpoint tracks nothing
    )
    from . import middleware_apps

    # The app and everything imported for it are built: out of the collector's way, so that
    # no full collection of them lands in one variant's round (or instruction count) only.
    gc.collect()
    gc.freeze()
    if framework == "starlette":
        return _asgi_round(middleware_apps.asgi, n)
    return _wsgi_round(middleware_apps.wsgi, n)


def _django_handlers() -> Dict[str, Any]:
    # One configured project with analytics_django installed (its ready() adds the middleware
    # to settings.MIDDLEWARE); each variant's handler loads the MIDDLEWARE it is built with.
    os.environ["BENCH_VARIANT"] = "integration"  # read when middleware_apps is imported
    from . import middleware_apps

    integrated = middleware_apps.wsgi
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    installed = list(settings.MIDDLEWARE)
    bare = [name for name in installed if not name.startswith("analytics_django.")]
    if bare == installed:
        raise SystemExit("bench.inprocess: analytics_django installed no middleware")
    handlers = {"integration": integrated}
    settings.MIDDLEWARE = bare
    handlers["plain"] = WSGIHandler()
    settings.MIDDLEWARE = [f"{middleware_apps.__name__}.PassThrough", *bare]
    handlers["empty"] = WSGIHandler()
    settings.MIDDLEWARE = installed
    return handlers


def paired_rounds(framework: str, rounds: int, n: int) -> Dict[str, List[float]]:
    """Every variant of ``framework`` built in one process and timed in interleaved blocks of
    ``BLOCK`` requests; µs per request of each block, per variant, block ``i`` of every
    variant timed side by side. The process (its memory layout, its warm caches) is the same
    for all."""
    os.environ.update(BENCH_FRAMEWORK=framework, BENCH_COLLECTOR="http://127.0.0.1:9")
    if framework == "django":
        apps = _django_handlers()
    else:
        from . import middleware_apps

        apps = {}
        for variant in VARIANTS:
            middleware_apps.INTEGRATED = variant == "integration"
            middleware_apps.EMPTY = variant == "empty"
            build = (
                middleware_apps._flask_wsgi
                if framework == "flask"
                else middleware_apps._starlette_asgi
            )
            apps[variant] = build()
    # Built: out of the collector's way, as in one_round.
    gc.collect()
    gc.freeze()
    timed = _asgi_round if framework == "starlette" else _wsgi_round
    for variant in VARIANTS:
        timed(apps[variant], 1000)
    # Each round interleaves the variants in blocks of BLOCK requests, the order reversed every
    # block: what slows the machine for a moment (a neighbour, a frequency change) then slows
    # every variant alike. Whole rounds of one variant differed by 120-150 µs on Django,
    # ten times the 2% to be shown.
    blocks = max(1, n // BLOCK)
    samples: Dict[str, List[float]] = {variant: [] for variant in VARIANTS}
    for index in range(rounds):
        for block in range(blocks):
            order = VARIANTS if (index + block) % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                samples[variant].append(timed(apps[variant], BLOCK, warmup=0))
    return samples


def _last_line_of(*args: str) -> str:
    """The last line ``python -m bench.inprocess ARGS`` prints, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.inprocess {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def _run_paired(framework: str, rounds: int, n: int) -> Dict[str, List[float]]:
    return json.loads(_last_line_of("--paired", framework, str(rounds), str(n)))


def measure(framework: str, rounds: int, n: int) -> Dict[str, Any]:
    """Alternating rounds of every variant of ``framework`` in one process; medians and the
    overhead."""
    samples = _run_paired(framework, rounds, n)
    plain = statistics.median(samples["plain"])
    integrated = statistics.median(samples["integration"])
    # The difference is taken block by block, between blocks timed side by side, and the
    # median of those differences is the figure: a moment's slowdown of the machine moves a
    # block of every variant alike, and an outlying block is one sample of hundreds.
    added = _median_difference(samples["integration"], samples["plain"])
    floor = _median_difference(samples["empty"], samples["plain"])
    low, high = _quartiles(
        [with_ - bare for with_, bare in zip(samples["integration"], samples["plain"])]
    )
    return {
        "framework": framework,
        "rounds": rounds,
        "requests_per_round": n,
        "blocks": len(samples["plain"]),
        "plain_us": plain,
        "integration_us": integrated,
        "added_us": added,
        "added_share": added / plain,
        "added_quartiles_us": [low, high],
        # What empty hooks at the same place cost: below it no integration can go.
        "floor_us": floor,
        "floor_share": floor / plain,
        "target_met": added / plain <= TARGET_SHARE,
        "samples": samples,
    }


def _median_difference(variant: List[float], plain: List[float]) -> float:
    return statistics.median(with_ - bare for with_, bare in zip(variant, plain))


def _quartiles(values: List[float]) -> List[float]:
    if len(values) < 2:
        return [values[0], values[0]]
    low, _, high = statistics.quantiles(values, n=4)
    return [low, high]


def format_table(results: List[Dict[str, Any]]) -> str:
    """The results as a text table."""
    lines = [
        "in-process overhead of the integration, a request that sends nothing "
        f"(median difference of {results[0]['blocks']} pairs of interleaved blocks of {BLOCK}):",
        f"{'framework':<10} {'plain µs':>9} {'with µs':>9} {'added µs':>9} {'share':>7}"
        f" {'floor µs':>9} {'floor':>7}  target",
    ]
    for result in results:
        verdict = "met" if result["target_met"] else "MISSED"
        lines.append(
            f"{result['framework']:<10} {result['plain_us']:>9.1f} {result['integration_us']:>9.1f}"
            f" {result['added_us']:>9.1f} {result['added_share']:>7.1%}"
            f" {result['floor_us']:>9.1f} {result['floor_share']:>7.1%}  "
            f"≤ {TARGET_SHARE:.0%} {verdict}"
        )
    return "\n".join(lines)


def chosen_frameworks(only: Optional[str]) -> List[str]:
    """The frameworks ``--only`` names (comma-separated), or all of them."""
    return [name for name in (only or ",".join(FRAMEWORKS)).split(",") if name]


def report(table: str, results: List[Dict[str, Any]], output: Path) -> None:
    """Print ``table`` and write ``results`` as JSON to ``output``."""
    print(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results: {output}")


def main(argv: Optional[List[str]] = None) -> int:
    """Measure every framework (or run one round with ``--round``) and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 500 requests")
    parser.add_argument("--round", nargs=3, metavar=("FRAMEWORK", "VARIANT", "N"))
    parser.add_argument("--paired", nargs=3, metavar=("FRAMEWORK", "ROUNDS", "N"))
    parser.add_argument("--only", help="comma-separated frameworks")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.paired:
        framework, rounds, n = args.paired
        print(json.dumps(paired_rounds(framework, int(rounds), int(n))))
        return 0
    if args.round:
        framework, variant, n = args.round
        print(f"{one_round(framework, variant, int(n)):.3f}")
        return 0
    rounds, n = (3, 500) if args.quick else (11, 10_000)
    results = [measure(framework, rounds, n) for framework in chosen_frameworks(args.only)]
    report(format_table(results), results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
