"""Intervals that cover what changes between runs on one test split (``Metric.interval ==
"runs"``) are as wide as the spread between runs: a property of every such metric.

A fixed model (an independent categorical of digits with a PCA autoencoder; for text, a
text-markov model copying 30% of its passages) is evaluated at every seed on a fixed test
split; with ``z_s = (value_s - mean) / se_s``, ``sum z_s^2``
must lie in the central 99.8% of chi-square with ``S - 1`` degrees of freedom: too narrow and
too wide both fail, and so does a value that never moves (see ``test_coverage.py`` for the
population intervals and the test's power).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scenarios import SEEDS, DigitsModel, PartlyCopies, chi_square_verdict, wrap

from gmbench.datasets import get_dataset
from gmbench.metrics import METRICS
from gmbench.run.evaluation import run_evaluation
from gmbench.run.request import RunRequest

RUNS = [k for k, m in METRICS.items() if m.interval == "runs"]
# metrics whose value this fixed model never moves (their interval is tested elsewhere); the
# test still asserts that they do not move and that their interval holds the value
NEVER_MOVES = {"copy_rate": "the independent categorical never copies a training image; the "
                            "Clopper-Pearson interval is tested in test_memorization.py"}


# the fixed models: digits (every image and vector metric), text-markov (the text checks)
FIXED = (("digits", DigitsModel, None), ("text-markov", PartlyCopies, 500))


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """The metrics records of the fixed models at seeds 0..SEEDS-1, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out: list[dict] = [{} for _ in range(SEEDS)]
    try:
        for name, factory, n in FIXED:
            model, dataset = wrap(factory(), name, "fixed"), get_dataset(name)
            wanted = [k for k in RUNS if METRICS[k].not_applicable(dataset) is None
                      and METRICS[k].missing(model.capabilities) is None]
            for s in range(SEEDS):
                out[s] |= run_evaluation(model, dataset, RunRequest(seed=s, n_samples=n),
                                         wanted).to_dict()["metrics"]
        return out
    finally:
        torch.set_num_threads(before)


def gate_stderr(record: dict) -> float:
    """The standard error between runs that ``gmbench check`` uses: ``stderr_runs``, else the
    larger of ``stderr`` and the 95% interval's half-width / 1.96 (an exact binomial interval
    at a rate of 0 has stderr 0 but a positive width)."""
    if record.get("stderr_runs") is not None:
        return float(record["stderr_runs"])
    return max(record["stderr"] or 0.0, (record["ci_high"] - record["ci_low"]) / 2 / 1.959963984540054)


@pytest.mark.slow
@pytest.mark.parametrize("key", RUNS)
def test_each_runs_interval_is_as_wide_as_the_spread_between_runs(key, records):
    assert key in records[0], f"{key} applies to no scenario here: add one"
    recs = [r[key] for r in records]
    assert all(r["interval_covers"] == "runs" for r in recs)
    values = np.array([r["value"] for r in recs], dtype=float)
    assert np.isfinite(values).all(), (key, values)
    if key in NEVER_MOVES:
        assert (values == values[0]).all() and all(
            r["ci_low"] <= r["value"] <= r["ci_high"] for r in recs), (key, NEVER_MOVES[key])
        return
    se = np.array([gate_stderr(r) for r in recs], dtype=float)
    problem = chi_square_verdict((values - values.mean()) / se, SEEDS - 1)
    assert problem is None, (f"{key}: {problem}; values {np.round(values[:6], 5)}, "
                             f"se {np.round(se[:6], 5)}")
