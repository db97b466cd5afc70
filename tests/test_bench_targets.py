"""The targets of ``bench.rows``: a context row (``Target("none")``) shows values and no verdict."""

from bench.rows import ROWS, Target


def test_a_context_row_has_no_verdict_whatever_the_values():
    target = Target("none")
    assert target.describe() == "(context)"
    assert target.met(64_256.0, 7_093.0) is None
    assert target.met(1.0, 1_000_000.0) is None
    assert target.met(None, None) is None


def test_the_upload_size_500_row_is_context_and_runs_both_libraries_at_500():
    [row] = [row for row in ROWS if row.key == "throughput_500"]
    assert row.target.kind == "none"
    assert row.args == ("--upload-size", "500")
    assert row.libraries == ("core", "segment")


def test_a_ratio_target_still_gives_a_verdict():
    assert Target("min_ratio", 12).met(65_127.0, 6_136.0) is False
    assert Target("max_ratio", 0.5).met(508.0, 2_155.0) is True
