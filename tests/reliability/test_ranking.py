"""How a value is ranked against a board's baselines: noise below an ideal of zero does not rank
above the truth, values that differ only by float32 rounding tie, and baselines measured on
another sample count are not ranked against."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import toy


@pytest.mark.parametrize("key", ["mmd", "mmd_multiscale", "kid", "kl_knn", "kl_exact"])
def test_noise_below_an_ideal_of_zero_does_not_rank_above_the_truth(key):
    """Unbiased and Monte Carlo divergence estimates scatter around 0 for a perfect model: a
    negative value is noise, farther from perfect than a smaller positive one."""
    from gmbench.metrics import get_metric
    from gmbench.present.compare import rank_of

    direction = get_metric(key).direction
    assert rank_of(-0.002, [0.0005], direction=direction) == 2
    assert rank_of(0.0001, [0.0005, -0.002], direction=direction) == 1


def test_float32_rounding_ties():
    from gmbench.core.direction import Direction
    from gmbench.present.compare import rank_of

    value = 0.123456789
    rounded = float(np.float32(value))
    assert rank_of(value, [rounded], direction=Direction(True)) == 1
    assert rank_of(rounded, [value], direction=Direction(True)) == 1


def test_baselines_on_another_sample_count_are_not_ranked(board_and_results, gmbench_cli,
                                                           write_model):
    board, results = board_and_results
    path = write_model(toy('NAME = "toy2"'))
    run = gmbench_cli("evaluate", path, "--metrics", "nll,mmd", "--n-samples", "60",
                      "--boards", board.parent)
    assert run.code == 0, run.err
    from gmbench.present.compare import compare_with_baselines
    from gmbench.storage.leaderboard import read_board

    _, comps = compare_with_baselines(run.results, read_board(board))
    by_key = {c.metric: c for c in comps}
    assert by_key["mmd"].mismatched == {"toy"}  # 50 samples vs 60
    assert by_key["nll"].mismatched == frozenset()  # the test split, whatever the samples
