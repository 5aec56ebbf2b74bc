"""Likelihood metrics: ``nll``, ``nll_train``, ``generalization_gap``, ``bits_per_dim``,
``perplexity``, ``cross_entropy``, ``entropy_gap`` (``docs/CONTRACT.md``, section 4).

All are functions of the per-example log-likelihoods that :class:`Context` computes once;
the interval is the normal (CLT) interval of a mean of i.i.d. test examples, transformed
exactly through monotone maps (bits/dim, perplexity).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gmbench.core.rng import COMMON_SEED, child_seed, generator
from gmbench.estimators.montecarlo import MASS_DELTA, importance_mass, markov_mass_excess
from gmbench.estimators.uncertainty import Estimate, difference, mean_estimate, monotone_transform
from gmbench.metrics.context import Context
from gmbench.metrics.metric import Measurement, Metric, register

if TYPE_CHECKING:
    from gmbench.datasets import Dataset

__all__ = ["MASS_ROUNDING_TOL", "TRUTH_ROUND", "TruthDraws", "likelihood_details", "nll_estimate",
           "normalisation_problem", "truth_draws", "unless_unnormalised"]

TRUTH_ROUND = 10_000  # fresh draws from the ground truth per Monte Carlo round
# An exact log-mass in the data space may exceed 1 in total only by float rounding.
MASS_ROUNDING_TOL = 1e-3  # nats
# A stochastic log-mass (IWAE, an ELBO, dequantization draws) has exp(log_prob) unbiased or
# biased low for each point's mass, so its sum over distinct points has expectation at most 1,
# and by Markov's inequality exceeds 1/MASS_DELTA with probability at most MASS_DELTA, however
# heavy its tail (dequantization and importance weights are unbounded).
UNIFORM_DRAWS = 512  # uniform draws over all L^D points of a discrete data space
def discrete_only(dataset: Dataset) -> str | None:
    return None if dataset.info.is_discrete else "defined for discrete data only"


def continuous_only(dataset: Dataset) -> str | None:
    return None if not dataset.info.is_discrete else "defined for continuous data only"


def known_entropy(dataset: Dataset) -> str | None:
    if dataset.truth is None or getattr(dataset.truth, "entropy", None) is None:
        return ("needs a closed-form entropy of the data (gauss-<d>, markov-<v>, "
                "toy2d-checkerboard, toy2d-banana)")
    return None


def likelihood_details(ev: Context) -> dict[str, Any]:
    """How the likelihood was obtained: space, dequantization draws and estimator."""
    model = ev.model
    details: dict[str, Any] = {"log_prob_space": model.log_prob_space}
    if model.log_prob_space == "dequantized":
        k = ev.config.dequant_samples
        details.update({
            "dequantization": "uniform",
            "dequant_samples": k,
            "dequant_estimator": (
                "mean over draws of log p((x+u)/L) - D log L (Jensen bound on the log-mass)"
                if k == 1 else
                f"importance-weighted log-mean-exp over {k} draws (tighter bound on the log-mass)"
            ),
        })
    return details


class TruthDraws:
    """Rounds of fresh draws ``x ~ P`` from the dataset's ground truth, with ``log p(x)`` and the
    model's ``log q(x)``, drawn once per evaluation in order and shared by the normalisation
    check and the exact KL/TV."""

    def __init__(self, ev: Context) -> None:
        self._ev = ev
        self._rng = ev.rng("kl_exact", "truth")
        self._seed = child_seed(ev.seed, "kl_exact", "model")
        self._rounds: list[tuple[np.ndarray, np.ndarray]] = []

    def round(self, r: int, n: int = TRUTH_ROUND) -> tuple[np.ndarray, np.ndarray]:
        """``(log_p, log_q)`` of round ``r``, each ``(n,)`` nats (rounds drawn in order)."""
        ev, truth = self._ev, self._ev.dataset.truth
        assert truth is not None
        while len(self._rounds) <= r:
            x = truth.sample(n, self._rng)
            log_q = ev.model.log_prob(x, seed=self._seed, split=f"truth-draws-{len(self._rounds)}",
                                      batch_size=ev.config.batch_size,
                                      dequant_samples=ev.config.dequant_samples)
            self._rounds.append((np.asarray(truth.log_prob(x), np.float64),
                                 np.asarray(log_q, np.float64)))
        log_p, log_q = self._rounds[r]
        assert len(log_p) == n
        return log_p, log_q


def truth_draws(ev: Context) -> TruthDraws:
    return ev.memo("likelihood/truth-draws", lambda: TruthDraws(ev))


def _distinct_rows(x: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row of ``x``."""
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    first: dict[bytes, int] = {}
    for i, row in enumerate(flat):
        first.setdefault(row.tobytes(), i)
    return np.fromiter(first.values(), dtype=np.int64, count=len(first))


def _stochastic(ev: Context) -> bool:
    return not (ev.model.log_prob_kind == "exact" and ev.model.log_prob_space == "data")


def _mass_on_test(ev: Context) -> str | None:
    """A log-mass sums to at most 1 over distinct points: check it on the test split (exactly
    for an exact log-mass; by Markov's inequality for a stochastic one)."""
    idx = _distinct_rows(ev.dataset.test.x)
    stochastic = _stochastic(ev)
    total = markov_mass_excess(ev.test_log_prob[idx], stochastic=stochastic,
                               rounding=MASS_ROUNDING_TOL)
    if total is None:
        return None
    shown = f"{total:.4g}" if total < 1e300 else "more than e^700"
    return (f"the model's log_prob sums to {shown} in probability over the "
            f"{len(idx)} distinct test examples, but a probability mass sums to at most 1 over "
            "any set of distinct points"
            + (f" (a stochastic estimate exceeds {1 / MASS_DELTA:g} with probability at most "
               f"{MASS_DELTA:g})" if stochastic else "")
            + ": log_prob is not a normalised log-mass (an unnormalised model, or a density "
              "scored as a mass: set log_prob_space = \"dequantized\" for a density on [0,1)^D)")


def _excess(log_w: np.ndarray) -> tuple[str, float, int] | None:
    """``(mean, lower bound, draws)`` of a total mass from importance weights when the bound
    shows it above 1 (:func:`~gmbench.estimators.montecarlo.importance_mass`), else ``None``."""
    mean, bound, n = importance_mass(log_w)
    if not bound > 1 + MASS_ROUNDING_TOL:  # also when nan
        return None
    return ("more than e^700" if not math.isfinite(mean) else f"{mean:.4g}"), bound, n


def _mass_on_uniform(ev: Context) -> str | None:
    """The total mass over the whole discrete data space, ``L^D E_U[q(x)]`` by importance
    sampling from the uniform distribution over all ``L^D`` points: far above 1 for a model
    whose per-point masses do not sum to 1 over the space (a constant, a product of factors
    that ignore most levels), which no set of test examples can show in high dimensions."""
    info = ev.info
    assert info.levels is not None
    rng = generator(COMMON_SEED, "normalisation", "uniform")
    x = rng.integers(0, info.levels, size=(UNIFORM_DRAWS, *info.shape))
    log_q = ev.model.log_prob(x, seed=COMMON_SEED, split="uniform draws",
                              batch_size=ev.config.batch_size,
                              dequant_samples=ev.config.dequant_samples)
    excess = _excess(np.asarray(log_q, np.float64) + info.dim * math.log(info.levels))
    if excess is None:
        return None
    shown, bound, n = excess
    return (f"the model's log_prob sums to about {shown} over all {info.levels}^{info.dim} "
            f"points of the data space ({n} uniform draws x: {info.levels}^{info.dim} times "
            f"the mean of q(x); a {1 - MASS_DELTA:g} lower bound on the total is "
            f"{bound:.4g}), but a normalised mass sums to 1: log_prob is not normalised (a "
            "constant or unnormalised score, or per-dimension factors that do not sum to 1 "
            "over the levels)")


def _mass_on_truth(ev: Context) -> str | None:
    """``E_P[q/p]`` is the model's mass on P's support, at most 1: check it on draws of P."""
    log_p, log_q = truth_draws(ev).round(0)
    keep = np.isfinite(log_p)  # a float draw rounded onto the edge of P's support
    excess = _excess(log_q[keep] - log_p[keep])
    if excess is None:
        return None
    shown, bound, n = excess
    return (f"the model's log_prob integrates to about {shown} (mean of q(x)/p(x) over "
            f"{n} draws x ~ P from the ground truth; a {1 - MASS_DELTA:g} lower bound on the "
            f"total is {bound:.4g}), but a normalised density or mass has total at most 1: "
            "log_prob is not normalised (a constant added to it, or a density scored as a "
            "mass)")


def normalisation_problem(ev: Context) -> str | None:
    """Why the model's ``log_prob`` cannot be a normalised log-density/mass, or ``None``.

    Checked where the data allow it: on discrete data, the mass over the distinct test
    examples and the total mass over the whole space by uniform importance sampling; with a
    known ground truth, the model's mass on its support by importance sampling. Each check
    refuses a normalised model with probability at most
    :data:`~gmbench.estimators.montecarlo.MASS_DELTA`, whatever its log_prob's noise.
    """
    def compute() -> str | None:
        if ev.info.is_discrete:
            problem = _mass_on_test(ev) or _mass_on_uniform(ev)
            if problem:
                return problem
        truth = ev.dataset.truth
        if truth is not None and callable(getattr(truth, "log_prob", None)):
            return _mass_on_truth(ev)
        return None
    return ev.memo("likelihood/normalisation", compute)


def unless_unnormalised(ev: Context, m: Measurement) -> Measurement:
    """``m``, or its not-estimable form when the model's log_prob is not normalised."""
    problem = normalisation_problem(ev)
    if problem is None:
        return m
    return replace(m, estimate=Estimate.not_estimable(
        n=m.estimate.n, method="not estimable (see not_estimable)"),
        details={**m.details, "not_estimable": problem,
                 "value_if_estimable": m.details.get("value_if_estimable", m.estimate.value)})


def nll_estimate(ev: Context) -> Estimate:
    return ev.memo("nll", lambda: mean_estimate(-ev.test_log_prob))


def nll_train_estimate(ev: Context) -> Estimate:
    return ev.memo("nll_train", lambda: mean_estimate(-ev.train_log_prob))


def _measure(ev: Context, est: Estimate, **extra: Any) -> Measurement:
    return unless_unnormalised(ev, Measurement(
        est, feature_space="data", kind=ev.model.log_prob_kind,
        details={**likelihood_details(ev), **extra}))


# how each value is an affine function of per-example means: the paired test of `gmbench
# check` (gmbench.storage.per_example)
TEST_NLL = [["test_log_prob", -1.0]]


def _nll(ev: Context) -> Measurement:
    return _measure(ev, nll_estimate(ev), split="test", paired=TEST_NLL)


def _nll_train(ev: Context) -> Measurement:
    n_train = len(ev.dataset.train)
    subset = len(ev.train_index)
    return _measure(ev, nll_train_estimate(ev), split="train",
                    train_subset=f"{subset} of {n_train} (a fixed subset)" if subset < n_train
                    else "all", paired=[["train_log_prob", -1.0]])


def _gap(ev: Context) -> Measurement:
    return _measure(ev, difference(nll_estimate(ev), nll_train_estimate(ev)),
                    paired=[*TEST_NLL, ["train_log_prob", 1.0]], note="nll(test) - nll(train); a large positive gap means the model fits "
                         "its training examples far better than unseen ones (memorization)")


def _bits_per_dim(ev: Context) -> Measurement:
    scale = ev.info.dim * math.log(2)
    return _measure(ev, monotone_transform(nll_estimate(ev), lambda v: v / scale,
                                           lambda v: 1 / scale),
                    paired=[["test_log_prob", -1.0 / scale]])


def _perplexity(ev: Context) -> Measurement:
    d = ev.info.dim
    per = "token" if ev.info.kind == "sequence" else "dimension"
    return _measure(ev, monotone_transform(nll_estimate(ev), lambda v: _exp(v / d),
                                           lambda v: _exp(v / d) / d), per=per)


def _exp(v: float) -> float:
    """``exp(v)``, ``inf`` past the float range (a perplexity beyond 1e308 is not a number
    gmbench can report: the record says so)."""
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _cross_entropy(ev: Context) -> Measurement:
    return _measure(ev, nll_estimate(ev), split="test", paired=TEST_NLL)


def _entropy_gap(ev: Context) -> Measurement:
    h = float(ev.dataset.truth.entropy)  # type: ignore[union-attr, arg-type]
    est = nll_estimate(ev)
    shifted = est.shifted(-h)
    return _measure(ev, shifted, entropy=h, paired=TEST_NLL,
                    note="nll - H(P) = KL(P||Q) for exact log_prob")


# protocol 2: dequantization noise is keyed on each example's index (results no longer depend
# on --batch-size); generalization_gap is judged by its distance from 0.
LIKELIHOOD_PROTOCOL = 2

for _metric in (
    Metric(key="nll", description="mean -log P(x) over the test split",
           needs=("log_prob",), higher_is_better=False, unit="nats", compute=_nll,
           protocol=LIKELIHOOD_PROTOCOL, interval="population"),
    Metric(key="nll_train", description="mean -log P(x) over the train split (subset <= 10k)",
           needs=("log_prob",), higher_is_better=False, unit="nats", compute=_nll_train,
           protocol=LIKELIHOOD_PROTOCOL, interval="population"),
    Metric(key="generalization_gap", description="nll - nll_train (about 0 ideal; large positive = memorization)",
           needs=("log_prob",), higher_is_better=False, ideal=0.0, unit="nats", compute=_gap,
           protocol=LIKELIHOOD_PROTOCOL, interval="population"),
    Metric(key="bits_per_dim", description="nll / (D ln 2)",
           needs=("log_prob",), higher_is_better=False, unit="bits/dim",
           compute=_bits_per_dim, applies=discrete_only, protocol=LIKELIHOOD_PROTOCOL, interval="population",
           judged_with="nll"),
    Metric(key="perplexity", description="exp(nll / D), per token or per pixel", needs=("log_prob",),
           higher_is_better=False, unit="exp(nats/dim)", compute=_perplexity,
           applies=discrete_only, protocol=LIKELIHOOD_PROTOCOL, interval="population", judged_with="nll"),
    Metric(key="cross_entropy", description="nll for continuous data",
           needs=("log_prob",), higher_is_better=False, unit="nats", compute=_cross_entropy,
           applies=continuous_only, protocol=LIKELIHOOD_PROTOCOL, interval="population", judged_with="nll"),
    Metric(key="entropy_gap", description="nll - H(P) = KL(P||Q), generated data", needs=("log_prob",),
           higher_is_better=False, unit="nats", compute=_entropy_gap, applies=known_entropy,
           protocol=LIKELIHOOD_PROTOCOL, interval="population", judged_with="nll"),
):
    register(_metric)
