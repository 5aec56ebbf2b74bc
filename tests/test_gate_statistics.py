"""The regression gate's statistics as pure functions, against hand-computed values: Holm's
procedure (plain and weighted), Welch–Satterthwaite degrees of freedom, the one-sided t-test,
the detectable size at 80% power, the paired difference of per-example values, and the
permutation test of two samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gmbench.estimators.hypothesis import detectable, holm, one_sided_p, welch_df
from gmbench.estimators.mmd import mmd2_permutation_test, mmd2_unbiased, multiscale_bandwidths
from gmbench.storage.per_example import PerExample, Term, differences


# ------------------------------------------------------------------ Holm
def test_holm_by_hand():
    # sorted: 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop
    assert holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    # the first that is not rejected ends it, though a later one would pass its own level
    assert holm([0.02, 0.011], 0.05) == [True, True]  # 0.011 <= 0.025, then 0.02 <= 0.05
    assert holm([0.03, 0.026], 0.05) == [False, False]  # 0.026 > 0.025
    assert holm([], 0.05) == []


def test_weighted_holm_by_hand():
    # p/w orders 0.004, 0.06, 0.16: 0.001 <= 0.05 * 0.25 / 1; 0.03 <= 0.05 * 0.5 / 0.75;
    # 0.04 <= 0.05 * 0.25 / 0.25
    assert holm([0.03, 0.001, 0.04], 0.05, [0.5, 0.25, 0.25]) == [True, True, True]
    # 0.02 <= 0.05 * 0.5; then 0.2 > 0.05 * 0.5 / 0.5
    assert holm([0.02, 0.2], 0.05, [0.5, 0.5]) == [True, False]
    # a heavy weight lets a test through that equal weights would not: 0.03 vs 0.05/2
    assert holm([0.03, 0.9], 0.05, [0.9, 0.1]) == [True, False]
    assert holm([0.03, 0.9], 0.05) == [False, False]


@pytest.mark.parametrize("seed", range(5))
def test_equal_weights_are_the_classical_procedure(seed):
    p = np.random.default_rng(seed).uniform(0, 0.06, size=12).tolist()
    classical, m = [False] * 12, 12
    for rank, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        if p[i] > 0.05 / (m - rank):
            break
        classical[i] = True
    assert holm(p, 0.05) == classical == holm(p, 0.05, [3.0] * 12)


def test_holm_controls_the_family_wise_rate_under_the_null():
    """10,000 families of 20 independent null p-values, weights 1/2 and 1/38 each: the
    family-wise rate stays below alpha (Holm's guarantee), and near it (no great waste)."""
    rng = np.random.default_rng(0)
    weights = [0.5] + [0.5 / 19] * 19
    alarms = sum(any(holm(rng.uniform(size=20).tolist(), 0.05, weights))
                 for _ in range(10_000))
    assert 0.04 <= alarms / 10_000 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 10_000)


# ------------------------------------------------------------------ the t-test of a difference
def test_welch_satterthwaite_by_hand():
    assert welch_df(1.0, 4, 1.0, 4) == pytest.approx(8.0)  # (1 + 1)^2 / (1/4 + 1/4)
    assert welch_df(1.0, 4, 1.0, None) == pytest.approx(16.0)  # the exact one adds no noise
    assert welch_df(2.0, 9, 1.0, 19) == pytest.approx(25.0 / (16 / 9 + 1 / 19))
    assert welch_df(1.0, None, 1.0, math.inf) == math.inf


def test_one_sided_p_and_detectable_size():
    assert one_sided_p(1.959963984540054, 1.0, math.inf) == pytest.approx(0.025)
    assert one_sided_p(stats.t.ppf(0.975, 10), 1.0, 10) == pytest.approx(0.025)
    assert one_sided_p(0.0, 0.0, math.inf) == 1.0 and one_sided_p(1e-9, 0.0, 8) == 0.0
    # the test at 5% one-sided catches 1.645 + 0.842 standard errors 80% of the time
    assert detectable(1.0, math.inf, 0.05) == pytest.approx(1.6449 + 0.8416, abs=1e-4)
    assert detectable(2.0, 5, 0.01) == pytest.approx(2 * (stats.t.ppf(0.99, 5)
                                                          + stats.t.ppf(0.8, 5)))


def test_the_detectable_size_is_caught_with_80_percent_probability():
    rng = np.random.default_rng(1)
    size = detectable(1.0, math.inf, 0.0025)
    hits = np.mean([one_sided_p(size + rng.normal(), 1.0, math.inf) <= 0.0025
                    for _ in range(20_000)])
    assert hits == pytest.approx(0.8, abs=0.01)


# ------------------------------------------------------------------ paired differences
def test_paired_difference_by_hand():
    new = PerExample({"test_log_prob": np.array([-1.0, -2.0, -4.0]),
                      "train_log_prob": np.array([-1.0, -1.0]),
                      "train_index": np.array([3, 5])})
    ref = PerExample({"test_log_prob": np.array([-1.5, -2.0, -3.0]),
                      "train_log_prob": np.array([-2.0, -1.0, -1.0]),
                      "train_index": np.array([1, 3, 5])})
    # nll: -(new - ref) per example = [-0.5, 0, 1]: mean 1/6, sd 0.7638, se sd/sqrt(3)
    diff, se, df = differences(new, ref, [Term("test_log_prob", -1.0)])
    assert diff == pytest.approx(1 / 6) and df == 2
    assert se == pytest.approx(np.std([-0.5, 0, 1], ddof=1) / math.sqrt(3))
    # the gap pairs the train examples both scored (3 and 5: differences 0 and 0)
    diff, se, df = differences(new, ref, [Term("test_log_prob", -1.0),
                                          Term("train_log_prob", 1.0)])
    assert diff == pytest.approx(1 / 6) and df == 1
    assert se == pytest.approx(np.std([-0.5, 0, 1], ddof=1) / math.sqrt(3))
    assert differences(new, PerExample({}), [Term("test_log_prob", -1.0)]) is None


def test_per_example_files_are_deterministic_and_validated(tmp_path):
    from gmbench.errors import BoardError

    values = PerExample({"test_log_prob": np.linspace(-3, -1, 5),
                         "sample_features": np.ones((4, 3), np.float16)},
                        {"dataset_sha256": "ab", "feature_space": "pixels"})
    data = values.to_bytes()
    assert data == PerExample(dict(values.arrays), dict(values.meta)).to_bytes()
    back = PerExample.from_bytes(data, where="x")
    assert back.meta == {"dataset_sha256": "ab", "feature_space": "pixels"}
    np.testing.assert_array_equal(back.arrays["test_log_prob"], values.arrays["test_log_prob"])
    path = tmp_path / "per_example.npz"
    path.write_bytes(data)
    assert PerExample.read(path, sha256=values.sha256).sha256 == values.sha256
    with pytest.raises(BoardError, match="does not match the sha256"):
        PerExample.read(path, sha256="0" * 64)
    path.write_bytes(data[:100])
    with pytest.raises(BoardError, match="not a gmbench per-example file"):
        PerExample.read(path)
    with pytest.raises(BoardError, match="does not exist"):
        PerExample.read(tmp_path / "missing.npz")


# ------------------------------------------------------------------ the samples' test
def test_permutation_statistic_is_the_unbiased_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 3)), rng.normal(size=(80, 3)) + 0.2
    widths = multiscale_bandwidths(1.5)
    test = mmd2_permutation_test(x, y, bandwidth=widths, rng=np.random.default_rng(1),
                                 permutations=50)
    assert test.statistic == pytest.approx(mmd2_unbiased(x, y, bandwidth=widths, rng=rng,
                                                         n_boot=0).value, rel=1e-5)


def test_permutation_p_values_are_uniform_under_the_null_and_small_otherwise():
    """200 pairs of samples of one distribution: the p-values are uniform (KS test), so the
    gate's samples test false-alarms at its level; a 10% contamination is found."""
    p_null = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(100, 4)), rng.normal(size=(120, 4))
        p_null.append(mmd2_permutation_test(x, y, bandwidth=multiscale_bandwidths(2.5),
                                            rng=rng, permutations=99).p_value)
    assert stats.kstest(p_null, "uniform").pvalue > 0.01
    assert np.mean(np.array(p_null) <= 0.05) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 4))
    y = np.where(rng.uniform(size=(400, 1)) < 0.1, rng.uniform(-6, 6, size=(400, 4)),
                 rng.normal(size=(400, 4)))
    assert mmd2_permutation_test(x, y, bandwidth=multiscale_bandwidths(2.5), rng=rng,
                                 permutations=199).p_value <= 0.01
