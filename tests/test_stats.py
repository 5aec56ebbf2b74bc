"""Uncertainty primitives against scipy, and seed derivation properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from gmbench.core.rng import child_seed, forked_rng
from gmbench.estimators.uncertainty import (
    Estimate,
    bootstrap_estimate,
    clopper_pearson,
    difference,
    logmeanexp,
    mean_estimate,
    monotone_transform,
)


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=200))
@settings(max_examples=50, deadline=None)
def test_mean_estimate_matches_scipy(values):
    x = np.array(values)
    est = mean_estimate(x)
    assert est.value == pytest.approx(x.mean(), abs=1e-9)
    assert est.stderr == pytest.approx(sps.sem(x), abs=1e-9)
    assert est.ci_low <= est.value <= est.ci_high


@given(st.integers(0, 60), st.integers(60, 200))
@settings(max_examples=40, deadline=None)
def test_clopper_pearson_matches_scipy(k, n):
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    low, high = clopper_pearson(k, n)
    assert low == pytest.approx(ref.low, abs=1e-10) and high == pytest.approx(ref.high, abs=1e-10)
    one = sps.binomtest(k, n, alternative="greater").proportion_ci(0.95, method="exact")
    assert clopper_pearson(k, n, side="lower")[0] == pytest.approx(one.low, abs=1e-10)


def test_transform_and_difference():
    est = mean_estimate(np.array([1.0, 2.0, 3.0, 4.0]))
    e = monotone_transform(est, math.exp, math.exp)
    assert (e.ci_low, e.ci_high) == (math.exp(est.ci_low), math.exp(est.ci_high))
    assert e.stderr == pytest.approx(math.exp(2.5) * est.stderr)
    d = difference(est, est)
    assert d.value == 0 and d.stderr == pytest.approx(math.sqrt(2) * est.stderr)


def test_logmeanexp_is_stable():
    a = np.array([[1000.0, 1000.0], [1000.0 + math.log(3), 1000.0]])
    np.testing.assert_allclose(logmeanexp(a, axis=0), [1000 + math.log(2), 1000.0])


def test_bootstrap_of_the_mean_agrees_with_the_normal_interval():
    x = np.random.default_rng(0).normal(size=400)
    boot = bootstrap_estimate(lambda idx: float(x[idx].mean()), len(x),
                              rng=np.random.default_rng(1), n_boot=2000)
    assert boot.value == pytest.approx(x.mean())
    assert boot.stderr == pytest.approx(sps.sem(x), rel=0.1)


@given(st.integers(0, 2**31 - 1), st.text(max_size=8))
@settings(max_examples=50, deadline=None)
def test_child_seeds_are_deterministic_and_distinct(seed, name):
    assert child_seed(seed, name) == child_seed(seed, name)
    assert 0 <= child_seed(seed, name) < 2**31
    assert child_seed(seed, name, 0) != child_seed(seed, name, 1)


def test_forked_rng_restores_state():
    """Draws inside are reproducible from the seed; draws outside continue as if nothing ran."""
    import random

    import torch

    torch.manual_seed(123)
    with forked_rng(5):
        inside = torch.rand(3), np.random.rand(), random.random()
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(1))
    with forked_rng(5):
        again = torch.rand(3), np.random.rand(), random.random()
    assert torch.equal(inside[0], again[0]) and inside[1:] == again[1:]


def test_reaching_up_to_widens_only_an_interval_wholly_below_the_floor():
    est = Estimate.normal(-1.0, 0.25, n=10, method="normal")  # [-1.49, -0.51]
    wide = est.reaching_up_to(0.0, why="never negative")
    assert (wide.ci_low, wide.ci_high, wide.value) == (est.ci_low, 0.0, -1.0)
    assert wide.ci_method == "normal; never negative"
    above = Estimate.normal(2.0, 0.25, n=10, method="m")  # wholly above 0: as it is
    assert above.reaching_up_to(0.0, why="w") == above
    inside = Estimate.normal(-0.2, 0.25, n=10, method="normal")  # contains 0: unchanged
    assert inside.reaching_up_to(0.0, why="w") == inside
