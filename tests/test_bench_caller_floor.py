"""The summary's caller CPU floor line: the floor against what the row's target allows.

The measurement itself runs in ``test_bench_smoke.py`` (against a real collector); here the
results are given, so the line can be checked exactly.
"""

from bench.summary import caller_floor_lines


def _cpu_row(segment_us, call_us=4.0, queue_us=2.25):
    core = {
        "value": 8.0,
        "runs": [
            {
                "value": 8.0,
                "floor": {
                    "call_us": call_us,
                    "queue_us": queue_us,
                    "floor_us": call_us + queue_us,
                },
            }
        ],
    }
    results = {"analytics-core": core}
    if segment_us is not None:
        results["analytics-python"] = {"value": segment_us, "runs": [{"value": segment_us}]}
    return {"key": "cpu", "results": results}


def test_a_floor_above_what_the_target_allows_says_so():
    [(metric, value, peer, ratio, target)] = caller_floor_lines(_cpu_row(70.0))
    assert metric.startswith("caller CPU floor (µs)")
    assert value == "4.00 + 2.25 = 6.25"
    assert peer == ""
    assert ratio == "0.089×"
    assert target == "≤ 0.08× is 5.60 µs: the floor is above it"


def test_a_floor_below_what_the_target_allows_says_so():
    [line] = caller_floor_lines(_cpu_row(100.0))
    assert line[4] == "≤ 0.08× is 8.00 µs: the floor is below it"


def test_without_analytics_python_the_floor_is_shown_alone():
    [line] = caller_floor_lines(_cpu_row(None))
    assert line[1] == "4.00 + 2.25 = 6.25"
    assert line[3:] == ("", "")


def test_results_without_a_floor_add_no_line():
    row = _cpu_row(70.0)
    del row["results"]["analytics-core"]["runs"][0]["floor"]
    assert caller_floor_lines(row) == []
