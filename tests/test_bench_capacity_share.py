"""The delivered row's second target: its events/s as a share of the collector's capacity, read
just before each of analytics-core's runs (``bench.run._paired_capacity``).

The reading itself runs in ``test_bench_smoke.py`` against a real collector; here the results
are given, so the statistic and the lines can be checked exactly.
"""

import pytest

from bench.report import format_report
from bench.rows import ROWS, Outcome, capacity_share_of
from bench.summary import capacity_share_lines

THROUGHPUT = next(row for row in ROWS if row.key == "throughput")


def _core(pairs):
    """analytics-core's result: one run per (delivered, capacity) pair."""
    runs = [{"value": value, "capacity": capacity} for value, capacity in pairs]
    return {"value": sorted(value for value, _ in pairs)[len(pairs) // 2], "runs": runs}


def test_the_delivered_row_asks_for_85_percent_of_the_capacity():
    assert THROUGHPUT.capacity_share == 0.85
    assert all(row.capacity_share == 0 for row in ROWS if row.key != "throughput")


def test_the_share_is_the_median_of_each_runs_own_share():
    # The machine moved between runs: the second run's capacity read half the first's. Each run
    # is judged against its own reading, not against one reading for all.
    found = capacity_share_of(_core([(60_000, 80_000), (36_000, 40_000), (70_000, 100_000)]))
    assert found["shares"] == [0.75, 0.9, 0.7]
    assert found["share"] == pytest.approx(0.75)
    assert found["capacities"] == [80_000, 40_000, 100_000]


def test_runs_without_a_reading_give_no_share():
    assert capacity_share_of({"value": 1.0, "runs": [{"value": 1.0}]}) is None
    assert capacity_share_of(None) is None


def _summary_row(pairs):
    return {"key": "throughput", "results": {"analytics-core": _core(pairs)}}


def test_the_summary_line_shows_the_median_the_spread_and_the_verdict():
    [line] = capacity_share_lines(_summary_row([(60_000, 80_000), (36_000, 40_000)]))
    metric, value, peer, ratio, target = line
    assert metric.startswith("delivered / the collector's capacity")
    assert value == "82% (75%-90%)"
    assert (peer, ratio) == ("", "")
    assert target == "≥ 85% MISSED"
    [line] = capacity_share_lines(_summary_row([(90_000, 100_000)]))
    assert line[4] == "≥ 85% met"


def test_rows_without_the_target_add_no_summary_line():
    row = {"key": "cpu", "results": {"analytics-core": _core([(8.0, 1.0)])}}
    assert capacity_share_lines(row) == []


def test_the_report_names_each_runs_reading():
    outcome = Outcome(THROUGHPUT, {"core": _core([(60_000, 80_000), (36_000, 40_000)])})
    meta = {
        "libraries": ["core"],
        "python": "3.11",
        "cpus": 2,
        "load_average_at_start": 0.1,
        "load_average_at_end": 0.2,
        "seconds": 1.0,
        "quick": False,
    }
    text = format_report([outcome], None, meta, [])
    [line] = [line for line in text.splitlines() if "capacity read just before" in line]
    assert "82% of the collector's capacity" in line
    assert "(75% of 80,000, 90% of 40,000)" in line
    assert line.endswith("target ≥ 85%: MISSED")
