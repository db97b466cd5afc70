"""``bench.inprocess``'s figure: the median of block-by-block differences.

The timing itself is exercised by ``test_bench_smoke.py``; here the samples are given, so the
statistic can be checked exactly.
"""

import pytest

from bench import inprocess
from bench.summary import inprocess_lines


@pytest.fixture
def samples_of(monkeypatch):
    def given(samples):
        monkeypatch.setattr(inprocess, "_run_paired", lambda framework, rounds, n: samples)
        return inprocess.measure("flask", 1, 1250)

    return given


def test_the_overhead_is_read_block_by_block_whatever_the_machine_did_between_blocks(samples_of):
    # The machine's speed moves from block to block by far more than the overhead; each
    # integration block is 1.5 µs over the plain block timed beside it.
    plain = [100.0, 140.0, 90.0, 300.0, 110.0]
    result = samples_of(
        {
            "plain": plain,
            "integration": [value + 1.5 for value in plain],
            "empty": [value - 0.5 for value in plain],
        }
    )
    assert result["added_us"] == pytest.approx(1.5)
    assert result["floor_us"] == pytest.approx(-0.5)
    assert result["plain_us"] == 110.0
    assert result["added_share"] == pytest.approx(1.5 / 110.0)
    assert result["added_quartiles_us"] == pytest.approx([1.5, 1.5])
    assert result["blocks"] == 5
    assert result["target_met"] is True


def test_one_slow_block_moves_neither_the_figure_nor_its_spread(samples_of):
    plain = [100.0] * 9
    integration = [103.0] * 8 + [400.0]  # a neighbour ran during one integration block
    result = samples_of({"plain": plain, "integration": integration, "empty": plain})
    assert result["added_us"] == pytest.approx(3.0)
    assert result["target_met"] is False  # 3% of a 100 µs request
    line = inprocess_lines([result])[0]
    assert line[1] == "+3.0 µs over 100.0 (3.0%, blocks +3.0 to +3.0); empty hooks +0.0 µs (0.0%)"
    assert "MISSED" in line[4]
