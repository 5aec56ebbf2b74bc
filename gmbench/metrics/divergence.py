"""Divergence metrics: ``kl_exact``, ``tv_exact``, ``c2st_accuracy``, ``tv_lower_bound``,
``kl_knn``, ``mmd``, ``mmd_multiscale`` (the contract, section 4; ``entropy_gap`` lives with the likelihoods).

Thin wiring: each metric pulls shared arrays from the :class:`Context`, calls a pure
function of :mod:`gmbench.estimators`, and records how the number was made (estimator, interval
method, sample sizes, stated bias) in the record's details. Metrics that share a computation
(KL and TV share their draws; the C2ST accuracy and the TV bound share one classifier) compute
it once through ``ev.memo``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gmbench.core.rng import child_seed
from gmbench.estimators.c2st import C2STClassifier, C2STResult, c2st
from gmbench.estimators.knn_kl import WKVResult, knn_dimension_warning, wkv_kl_knn
from gmbench.estimators.mmd import (
    MULTISCALE_FACTORS,
    median_bandwidth,
    mmd2_conditional_variances,
    mmd2_unbiased_many,
    multiscale_bandwidths,
    rbf_kernel,
)
from gmbench.estimators.montecarlo import (
    MonteCarloKLTV,
    MonteCarloTarget,
    lr_test_samples,
    monte_carlo_kl_tv,
)
from gmbench.estimators.uncertainty import Estimate
from gmbench.metrics.context import Context
from gmbench.metrics.likelihood import (
    TRUTH_ROUND,
    likelihood_details,
    truth_draws,
    unless_unnormalised,
)
from gmbench.metrics.metric import Measurement, Metric, register

if TYPE_CHECKING:
    from gmbench.datasets import Dataset

__all__ = ["C2ST_CLASSIFIER", "EXACT_TARGET", "KNN_K", "exact_kl_tv"]

EXACT_TARGET = MonteCarloTarget(round_size=TRUTH_ROUND)  # rounds of 10k fresh draws, at most 100k
C2ST_CLASSIFIER = C2STClassifier()
KNN_K = 5
KNN_GROUPS = 10  # delete-a-group jackknife groups of each set


def known_truth(dataset: Dataset) -> str | None:
    if dataset.truth is None:
        return "needs a dataset with a known ground truth (generated data)"
    return None


# ------------------------------------------------------------------ exact KL and TV
def exact_kl_tv(ev: Context) -> MonteCarloKLTV:
    """KL and TV by Monte Carlo over fresh draws from the dataset's ground truth."""
    return ev.memo("divergence/exact", lambda: monte_carlo_kl_tv(
        truth_draws(ev).round, target=EXACT_TARGET))


def _exact_details(ev: Context, mc: MonteCarloKLTV) -> dict[str, Any]:
    kind = ev.model.log_prob_kind
    if kind == "exact" and ev.model.log_prob_space == "data":
        bias = "none: unbiased Monte Carlo mean over exact draws from P"
    else:
        bias = ("upward: the model's log_prob is a lower bound on log q (ELBO, IWAE estimate or "
                "dequantized Jensen bound), so KL and TV are over-estimated by the bound's gap")
    return {
        **likelihood_details(ev),
        "draws_from": "dataset ground truth P (fresh draws, not the test split)",
        "rounds": mc.rounds,
        "target": mc.target.describe(),
        "target_met": mc.target_met,
        "bias": bias,
        **({"dropped_draws": mc.dropped} if mc.dropped else {}),
    }


def _kl_exact(ev: Context) -> Measurement:
    mc = exact_kl_tv(ev)
    kl = mc.kl
    details = _exact_details(ev, mc)
    details.update({
        "lr_test_samples_approx": lr_test_samples(kl.value),
        "lr_test_samples_range": [lr_test_samples(kl.ci_high), lr_test_samples(kl.ci_low)],
        "lr_test_samples_note": "approximation: ln(20)/KL draws from P for a likelihood-ratio "
                                "test to tell the model from the data at 95% (mean evidence "
                                "grows by KL nats per draw); not a power calculation",
        "note": "KL(P||Q) = E_P[log p(x) - log q(x)]",
    })
    if kl.ci_high is not None and kl.ci_high < 0:
        # KL(P||Q) >= 0 for any normalised Q: a whole interval below 0 means the model's
        # log_prob is not a normalised log-density (or log-mass) of the data.
        details["not_estimable"] = (
            f"KL(P||Q) = {kl.value:.4g} with its whole interval below 0, which a KL divergence "
            "cannot be: the model's log_prob does not integrate (sum) to 1 over the data space "
            "(an unnormalised density, a density scored on discrete data, or log_prob in the "
            "wrong space); fix log_prob or log_prob_space")
        details["value_if_estimable"] = kl.value
        kl = Estimate.not_estimable(n=kl.n, method="not estimable (see not_estimable)")
    return unless_unnormalised(ev, Measurement(kl, feature_space="data",
                                               kind=ev.model.log_prob_kind, details=details))


def _tv_exact(ev: Context) -> Measurement:
    mc = exact_kl_tv(ev)
    details = _exact_details(ev, mc)
    details["note"] = ("TV(P, Q) = E_P[max(0, 1 - q(x)/p(x))]; terms with log p - log q <= "
                       "1e-5 nats count as 0 (float rounding), changing TV by at most 1e-5")
    return unless_unnormalised(ev, Measurement(mc.tv, feature_space="data",
                                               kind=ev.model.log_prob_kind, details=details))


# ------------------------------------------------------------------ classifier two-sample test
def _c2st_compute(ev: Context) -> Callable[[], C2STResult]:
    real, fake = ev.features("test"), ev.features("samples")
    return lambda: c2st(real, fake, seed=child_seed(ev.seed, "c2st"), classifier=C2ST_CLASSIFIER)


def _c2st_prepare(ev: Context) -> None:
    """Samples and features on the main thread, then the classifiers' training (one thread,
    arrays only) in the background while the other metrics run."""
    ev.background("divergence/c2st", _c2st_compute(ev))


def c2st_result(ev: Context) -> C2STResult:
    return ev.memo("divergence/c2st", lambda: _c2st_compute(ev)())


def _c2st_details(res: C2STResult) -> dict[str, Any]:
    return {
        "real": "test split",
        "classifier": C2ST_CLASSIFIER.describe(),
        "split": "balanced: equal numbers of real and model points, two folds; each point is "
                 "predicted by a classifier trained on the other fold (accuracy = balanced "
                 "accuracy over all held-out points)",
        "fold_accuracy": [c / n for c, n in zip(res.fold_correct, res.fold_n, strict=True)],
        "chosen": [{"hidden": list(h), "best_step": s} for h, s in res.chosen],
    }


def _c2st_accuracy(ev: Context) -> Measurement:
    res = c2st_result(ev)
    details = _c2st_details(res)
    details["bias"] = ("downward for the divergence: a trained classifier is at best the Bayes "
                       "classifier (accuracy (1 + TV)/2); 0.5 means it found no difference")
    details["df_runs"] = res.degrees_of_freedom()
    return Measurement(res.accuracy_estimate(), feature_space=ev.feature_space, details=details)


def _tv_lower_bound(ev: Context) -> Measurement:
    res = c2st_result(ev)
    acc = res.accuracy_estimate()
    bound = res.tv_lower_bound()
    est = Estimate(value=bound, stderr=2 * acc.stderr, ci_low=bound, ci_high=1.0, n=acc.n,
                   ci_method=
                   "one-sided 95%: 2 * (exact Clopper-Pearson lower bound on held-out accuracy, "
                   "one fold's worth of trials) - 1, floored at 0; the value is the bound")
    details = _c2st_details(res)
    details.update({
        "accuracy": acc.value,
        "tv_plugin": max(0.0, 2 * acc.value - 1),
        "bias": "conservative by design: TV >= 2*acc - 1 holds for any classifier, and the "
                "value is a 95% lower confidence bound on that",
    })
    return Measurement(est, feature_space=ev.feature_space, details=details)


# ------------------------------------------------------------------ k-NN KL
def wkv_result(ev: Context) -> WKVResult:
    return ev.memo("divergence/wkv", lambda: wkv_kl_knn(
        ev.features("test"), ev.features("samples"), k=KNN_K))


def _kl_knn(ev: Context) -> Measurement:
    res = wkv_result(ev)
    jack_seed = child_seed(ev.seed, "kl_knn", "jackknife")
    se_test, se_samples = res.jackknife(seed=jack_seed, groups=KNN_GROUPS)
    est = Estimate.normal(res.value, math.hypot(se_test, se_samples), n=len(res.terms), method=
                          f"normal, delete-a-group jackknife stderr over both the test points "
                          f"and the samples ({KNN_GROUPS} groups each, neighbours recounted)")
    n_q = len(ev.features("samples"))
    details: dict[str, Any] = {
        "estimator": f"Wang-Kulkarni-Verdu 2009, bias-corrected (adaptive neighbour counts, "
                     f"sec. III-B), k = {res.k}; KL(P||Q) with P = test split, Q = samples",
        "value_fixed_k": res.value_fixed_k,
        "n_samples_q": n_q,
        "dim": res.dim,
        "largest_atom": res.largest_atom,
        "stderr_test_split": se_test,
        "stderr_runs": se_samples,
        "df_runs": KNN_GROUPS - 1,
        "stderr_runs_note": "the jackknife over the samples alone, the test split fixed: "
                            "what changes between runs (the regression gate compares it)",
        "ci_note": "covers the KL a new test split and new samples would give (both sets' "
                   "jackknife); the delete-a-group jackknife is conservative for k-NN "
                   "distances in high dimension",
        "bias": "consistent, but biased at finite n and not in the interval; see the measured "
                "bias table in docs/metrics.md (it can be tens of % either way); when the two "
                "sets barely overlap the bias-corrected value saturates while value_fixed_k "
                "keeps growing",
    }
    warning = knn_dimension_warning(res.dim, min(est.n, n_q))
    if warning:
        details["warning"] = warning
    if res.zero_distances:
        details["zero_distances"] = res.zero_distances
        details["warning_duplicates"] = (f"{res.zero_distances} neighbour distances were 0 "
                                         "(duplicate points) and were floored; the estimate "
                                         "assumes continuous data")
    reason = None
    if res.atoms:
        reason = (f"the samples repeat one point {res.largest_atom} times (more than k = "
                  f"{res.k}): the model has atoms (collapsed or replaying), so KL(P||Q) has no "
                  "density to estimate and the k-NN estimator's assumptions fail")
    elif est.ci_high < 0:
        reason = (f"the estimate {est.value:.4g} has its whole interval below 0, which a KL "
                  "divergence cannot be: the estimator's assumptions fail on these samples "
                  "(near-duplicates or a collapsed model)")
    if reason is not None:
        details["not_estimable"] = reason
        details["value_if_estimable"] = est.value
        est = Estimate.not_estimable(n=est.n, method=
                       "not estimable (see not_estimable)")
    return Measurement(est, feature_space=ev.feature_space, details=details)


# ------------------------------------------------------------------ MMD
MMD_KEYS = {False: "mmd", True: "mmd_multiscale"}
NEVER_BELOW_ZERO = ("extended up to 0, which it lay wholly below: the population MMD^2 "
                    "is never negative")


@dataclass(frozen=True)
class _MMD:
    """One MMD metric's value, its variances and its kernel."""

    value: float
    n_test: int
    n_samples: int
    bandwidth: float | tuple[float, ...]
    var_runs: float  # over new samples, the test split fixed
    var_total: float  # over a new test split and new samples

    def estimate(self) -> Estimate:
        return Estimate.normal(self.value, math.sqrt(self.var_total),
                               n=min(self.n_test, self.n_samples), method=
                               "normal, analytic U-statistic variance over a new test split "
                               "and new samples (Hoeffding decomposition, second order)"
                               ).reaching_up_to(0.0, why=NEVER_BELOW_ZERO)


def _mmd_pass(ev: Context, kinds: list[bool]) -> dict[bool, _MMD]:
    """``mmd`` (``False``) and/or ``mmd_multiscale`` (``True``): the values from one pass over
    the distances, then each one's variances from seeded subsets."""
    x, y = ev.features("test"), ev.features("samples")
    sigma = ev.memo("divergence/mmd-median", lambda: median_bandwidth(
        x, y, rng=ev.rng("mmd", "bandwidth")))
    widths = [multiscale_bandwidths(sigma) if ms else sigma for ms in kinds]
    values = mmd2_unbiased_many(x, y, bandwidths=widths, rngs=[ev.rng("mmd", "unused")] * len(
        kinds), n_boot=0)
    out = {}
    for ms, width, res in zip(kinds, widths, values, strict=True):
        var_runs, _, var_total = mmd2_conditional_variances(
            x, y, rbf_kernel(width), rng=ev.rng(MMD_KEYS[ms], "variance"))
        out[ms] = _MMD(res.value, len(x), len(y), width, var_runs, var_total)
    return out


def _mmd_result(ev: Context, multiscale: bool) -> _MMD:
    # the first MMD metric of a run computes every MMD metric the run wants in its pass
    shared = ev.memo("divergence/mmd", lambda: _mmd_pass(
        ev, [ms for ms in (False, True) if ms == multiscale or ev.wanted(MMD_KEYS[ms])]))
    if multiscale in shared:
        return shared[multiscale]
    return ev.memo(f"divergence/mmd/{multiscale}", lambda: _mmd_pass(ev, [multiscale])[
        multiscale])


def _mmd_details(res: _MMD) -> dict[str, Any]:
    return {
        "statistic": "unbiased U-statistic MMD^2_u (Gretton et al. 2012, eq. 3); P = test "
                     "split, Q = samples",
        "n_samples_q": res.n_samples,
        "bias": "none for MMD^2 at the chosen bandwidths (it is below 0 about half the time "
                "when P = Q); the interval does not include the randomness of the bandwidth",
        "interval": "covers the population MMD^2 (a new test split and new samples): 0 lies "
                    "in it about 95% of the time when P = Q (at least: an interval wholly "
                    "below 0 is extended up to 0)",
        "stderr_runs": math.sqrt(res.var_runs),
        "stderr_runs_note": "between runs on this test split (new samples): what the "
                            "regression gate compares",
    }


def _mmd(ev: Context) -> Measurement:
    res = _mmd_result(ev, multiscale=False)
    details = {
        "kernel": "RBF exp(-|a-b|^2 / (2 sigma^2))",
        "bandwidth": res.bandwidth,
        "bandwidth_rule": "median heuristic: sigma = median Euclidean distance between pooled "
                          "test and sample points (seeded subset of 2000)",
        **_mmd_details(res),
    }
    return Measurement(res.estimate(), feature_space=ev.feature_space, details=details)


def _mmd_multiscale(ev: Context) -> Measurement:
    res = _mmd_result(ev, multiscale=True)
    details = {
        "kernel": "sum over sigma of RBF exp(-|a-b|^2 / (2 sigma^2))",
        "bandwidth": list(res.bandwidth) if isinstance(res.bandwidth, tuple)
        else [res.bandwidth],
        "bandwidth_rule": "the median heuristic (as mmd) times "
                          + ", ".join(f"{f:g}" for f in MULTISCALE_FACTORS),
        **_mmd_details(res),
    }
    return Measurement(res.estimate(), feature_space=ev.feature_space, details=details)


for _metric in (
    Metric(key="kl_exact", description="KL(P||Q) by Monte Carlo over fresh draws from the true P",
           needs=("log_prob",), higher_is_better=False, ideal=0.0, protocol=2, unit="nats",
           compute=_kl_exact, applies=known_truth, interval="population"),
    Metric(key="tv_exact", description="TV(P,Q) = E_P[(1 - q/p)_+] over fresh draws from P",
           needs=("log_prob",), higher_is_better=False, protocol=2, unit="total variation",
           compute=_tv_exact, applies=known_truth, bounds=(0.0, 1.0), interval="population"),
    Metric(key="c2st_accuracy", description="held-out accuracy of a classifier telling test data from samples "
                       "(0.5 ideal = indistinguishable)",
           needs=("sample",), higher_is_better=False, ideal=0.5, protocol=2, unit="accuracy",
           compute=_c2st_accuracy, prepare=_c2st_prepare, bounds=(0.0, 1.0),
           interval="population"),
    Metric(key="tv_lower_bound", description="one-sided 95% lower bound on TV from the C2ST", needs=("sample",),
           higher_is_better=False, protocol=2, unit="total variation",
           compute=_tv_lower_bound, prepare=_c2st_prepare, judged_with="c2st_accuracy",
           bounds=(0.0, 1.0), interval="bound"),
    Metric(key="kl_knn", description="Wang-Kulkarni-Verdu k-NN estimate of KL(test || samples)",
           needs=("sample",), higher_is_better=False, ideal=0.0, protocol=3, unit="nats",
           compute=_kl_knn, interval="population", unestimable_by_chance=True),
    Metric(key="mmd", description="unbiased MMD^2, RBF kernel, median-heuristic bandwidth",
           needs=("sample",), higher_is_better=False, ideal=0.0, protocol=3, unit="MMD^2",
           compute=_mmd, n_samples_free=True, interval="population"),
    Metric(key="mmd_multiscale", description="unbiased MMD^2, sum of RBF kernels at 1/16 to 4 times the median "
                       "heuristic",
           needs=("sample",), higher_is_better=False, ideal=0.0, protocol=2, unit="MMD^2",
           compute=_mmd_multiscale, n_samples_free=True, interval="population"),
):
    register(_metric)
