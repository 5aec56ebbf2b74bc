"""Sample-quality estimators on features: the Inception Score, FID, KID and precision/recall
computed by torch-fidelity's own functions, density and coverage by :mod:`.prdc`, each with
its interval. Pure functions of feature arrays.

References:
    Salimans et al. 2016 (IS); Heusel et al. 2017 (FID); Bińkowski et al. 2018 (KID);
    Kynkäänniemi et al. 2019 (precision/recall); Naeem et al. 2020 (density/coverage);
    Obukhov et al., torch-fidelity (https://github.com/toshas/torch-fidelity).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from gmbench.core.errors import MetricError
from gmbench.core.rng import child_seed
from gmbench.estimators.frechet import frechet_delta_se
from gmbench.estimators.prdc import NeighbourLists, PRDCResult, jackknife_se, prdc
from gmbench.estimators.uncertainty import Estimate

__all__ = [
    "ISC_SPLITS",
    "KID_SUBSETS",
    "KID_SUBSET_SIZE",
    "PRC_K",
    "PRDC_K",
    "SampleQuality",
    "fid_estimate",
    "implementation_details",
    "inception_score_estimate",
    "kid_estimate",
    "kid_kernel",
    "prdc_estimates",
    "precision_recall_values",
    "sample_quality",
]

ISC_SPLITS = 10
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PRC_K = 3
PRDC_K = 5
# rows per block of distances: blocks of about 25M entries (100 MB), at least 1000 rows, so
# memory stays O(max(25M, 1000 n)), never n^2; torch.cdist is slow on small blocks
PRC_BLOCK_ENTRIES, PRC_MIN_ROWS = 25_000_000, 1000
# torch-fidelity (and the torchvision it imports) loads on first use, not with gmbench.metrics


def _t(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x)).to(dtype)


def _normal(value: float, se: float, n: int, method: str) -> Estimate:
    return Estimate.normal(value, se, n=n, method=method)


def inception_score_estimate(logits: np.ndarray, *, seed: int, splits: int = ISC_SPLITS
                             ) -> Estimate:
    """Inception Score of ``(n, classes)`` logits via torch-fidelity (``splits`` disjoint
    splits of a seeded shuffle); stderr = split std (ddof 0) / sqrt(splits - 1)."""
    if len(logits) < splits:
        raise MetricError(f"The Inception Score needs at least {splits} samples (one per "
                          f"split), got {len(logits)}. Raise --n-samples.")
    from torch_fidelity.metric_isc import isc_features_to_metric

    out = isc_features_to_metric(_t(logits), splits=splits, shuffle=True, rng_seed=seed)
    value, std = out["inception_score_mean"], out["inception_score_std"]
    return _normal(value, std / math.sqrt(splits - 1), len(logits),
                   f"normal over {splits} disjoint splits (torch-fidelity split std)")


def fid_estimate(fake: np.ndarray, real: np.ndarray) -> Estimate:
    """FID of ``fake`` ``(M, F)`` against ``real`` ``(N, F)``: torch-fidelity's value; stderr
    between runs by the delta method, the test statistics held fixed
    (:func:`~gmbench.estimators.frechet.frechet_delta_se`)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    # one BLAS thread: small eigenproblems only lose time to threading, badly on a busy CPU
    with threadpool_limits(limits=1 if fake.shape[1] <= 512 else None):
        stat_fake = fid_features_to_statistics(_t(fake, torch.float64))
        stat_real = fid_features_to_statistics(_t(real, torch.float64))
        value = fid_statistics_to_metric(stat_fake, stat_real, verbose=False)[
            "frechet_inception_distance"]
        se = frechet_delta_se(fake, stat_real["mu"], stat_real["sigma"])  # np.cov, as ours
    return _normal(float(value), se, len(fake),
                   "normal, delta-method stderr (the samples' influence; test split fixed)")


def kid_kernel(dim: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """KID's kernel, ``k(a, b) = (a . b / dim + 1)^3`` (torch-fidelity's defaults), on two
    point sets ``(p, dim)``, ``(q, dim)``: the ``(p, q)`` float64 matrix."""
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (np.asarray(a, np.float64) @ np.asarray(b, np.float64).T / dim + 1.0) ** 3
    return k


def kid_estimate(fake: np.ndarray, real: np.ndarray, *, seed: int, subsets: int = KID_SUBSETS,
                 subset_size: int = KID_SUBSET_SIZE) -> tuple[Estimate, float]:
    """KID via torch-fidelity: mean over ``subsets`` random subsets of
    ``min(subset_size, M, N)`` per set; and its standard error between runs.

    KID is the complete unbiased ``MMD^2`` of the two sets (the mean over random subsets has
    it as its expectation) plus the noise of the subset draw. Its variance over a new test
    split and new samples is the complete statistic's (second-order Hoeffding decomposition,
    :func:`gmbench.estimators.mmd.mmd2_conditional_variances`) plus torch-fidelity's spread
    over its subsets divided by their number: the returned interval covers the population
    value (0 when the model's distribution is the data's). Between runs on one test split only
    the samples' part changes: that standard error is returned beside it.
    """
    from gmbench.estimators.mmd import mmd2_conditional_variances

    size = min(subset_size, len(fake), len(real))
    if size < 4:
        raise MetricError("KID needs at least 4 samples and 4 test points.")
    from torch_fidelity.metric_kid import kid_features_to_metric

    out = kid_features_to_metric(_t(fake), _t(real), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    value, spread = out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]
    var_runs, _, var_total = mmd2_conditional_variances(
        real, fake, kid_kernel(fake.shape[1]), rng=np.random.default_rng(seed))
    draw = spread**2 / subsets
    est = _normal(value, math.sqrt(var_total + draw), len(fake),
                  f"normal; the complete U-statistic's variance over a new test split and new "
                  f"samples (Hoeffding, second order) + the subset draw's ({subsets} subsets "
                  f"of {size}, torch-fidelity's spread)").reaching_up_to(
        0.0, why="extended up to 0, which it lay wholly below: the population KID is never "
                 "negative")
    return est, math.sqrt(var_runs + draw)


def precision_recall_values(fake: np.ndarray, real: np.ndarray, *, k: int = PRC_K,
                            batch_size: int | None = None) -> tuple[float, float]:
    """Improved precision and recall of torch-fidelity (chunked)."""
    if min(len(fake), len(real)) <= k:
        raise MetricError(f"precision/recall need more than k = {k} samples and test points.")
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    if batch_size is None:
        batch_size = max(PRC_MIN_ROWS, PRC_BLOCK_ENTRIES // max(len(fake), len(real)))
    precision, recall = calculate_precision_recall_part(_t(fake), _t(real), neighborhood=k,
                                                        batch_size=batch_size)
    return float(precision), float(recall)


JACKKNIFE_METHOD = ("normal, delete-a-group jackknife stderr over the samples ({g} groups, "
                    "k-NN balls recomputed; test split fixed)")


def _jackknife_estimate(value: float, res: PRDCResult, key: str, n: int, *,
                        fraction: bool) -> Estimate:
    se = jackknife_se(res.fake_replicates[key])
    method = JACKKNIFE_METHOD.format(g=len(res.fake_replicates[key]))
    if se == 0 and fraction:  # every replicate agrees (a value of 0 or 1): exact binomial
        return Estimate.binomial(int(round(value * n)), n,
                                 method="clopper-pearson (all jackknife replicates equal)")
    return Estimate.normal(value, se, n=n, method=method,
                           **({"low": 0.0, "high": 1.0} if fraction else {}))


def prdc_estimates(fake: np.ndarray, real: np.ndarray, *, seed: int,
                   real_lists: NeighbourLists | None = None
                   ) -> tuple[dict[str, Estimate], dict[str, float]]:
    """Precision, recall, density and coverage, each with a jackknife interval over the
    samples (:func:`gmbench.estimators.prdc.prdc`; the test split is the fixed reference of
    every run), and each one's jackknife standard error over the test points (what a
    different test split would change), for the record.

    Precision and recall are torch-fidelity's (``calculate_precision_recall_part``, k = 3,
    closed balls) counted exactly: the same counts over the same features
    (``tests/test_sample_quality.py``), without torch-fidelity's float32 rounding of the
    fraction, and with the test points' radii taken from the cached ``real_lists`` instead of
    recomputed on every call."""
    if len(real) <= PRDC_K or min(len(fake), len(real)) <= PRC_K:
        raise MetricError(f"precision/recall/density/coverage need more than k = {PRDC_K} "
                          f"test points and more than {PRC_K} samples.")
    res = prdc(real, fake, seed=seed, k_pr=PRC_K, k_dc=PRDC_K, real_lists=real_lists)
    precision, recall = res.values["precision"], res.values["recall"]
    test_side = {k: jackknife_se(v) for k, v in res.real_replicates.items()}
    return {
        "precision": _jackknife_estimate(precision, res, "precision", len(fake), fraction=True),
        "recall": _jackknife_estimate(recall, res, "recall", len(real), fraction=True),
        "density": _jackknife_estimate(res.values["density"], res, "density", len(fake),
                                       fraction=False),
        "coverage": _jackknife_estimate(res.values["coverage"], res, "coverage", len(real),
                                        fraction=True),
    }, test_side


@dataclass(frozen=True)
class SampleQuality:
    """All seven estimates, computed together from one feature pass."""

    estimates: dict[str, Estimate]
    details: dict[str, dict[str, Any]]


def sample_quality(fake: np.ndarray, real: np.ndarray, *, fake_logits: np.ndarray | None,
                   seed: int, real_lists: NeighbourLists | None = None) -> SampleQuality:
    """Every sample-quality metric of ``fake`` ``(M, F)`` against ``real`` ``(N, F)``.

    Args:
        fake, real: features (float32).
        fake_logits: ``(M, classes)`` logits for the Inception Score, or ``None`` to skip it.
        seed: run seed (IS shuffle, KID subsets, FID bootstrap and jackknife groups derive
            from it).
        real_lists: precomputed nearest-neighbour lists of ``real``
            (:func:`gmbench.estimators.prdc.self_neighbours`).
    """
    est: dict[str, Estimate] = {}
    if fake_logits is not None:
        est["inception_score"] = inception_score_estimate(fake_logits,
                                                          seed=child_seed(seed, "isc"))
    est["fid"] = fid_estimate(fake, real)
    est["kid"] = kid_estimate(fake, real, seed=child_seed(seed, "kid"))[0]
    prdc_est, test_side = prdc_estimates(fake, real, seed=child_seed(seed, "prdc"),
                                         real_lists=real_lists)
    est.update(prdc_est)
    details = {key: implementation_details(key, len(fake), len(real)) for key in est}
    return SampleQuality(est, details)



def implementation_details(key: str, n_fake: int, n_real: int) -> dict[str, Any]:
    """What computed metric ``key`` (recorded in its ``details``)."""
    import torch_fidelity

    tf = f"torch-fidelity {torch_fidelity.__version__}"
    closed = "closed (<=; the reference code's < drops exact duplicates)"
    details: dict[str, dict[str, Any]] = {
        "inception_score": {"splits": ISC_SPLITS,
                            "implementation": f"{tf} isc_features_to_metric"},
        "fid": {"implementation": f"{tf} fid_features_to_statistics + "
                                  "fid_statistics_to_metric"},
        "kid": {"kernel": "polynomial (x.y/F + 1)^3", "subsets": KID_SUBSETS,
                "subset_size": min(KID_SUBSET_SIZE, n_fake, n_real),
                "estimator": "unbiased MMD^2", "implementation": f"{tf} kid_features_to_metric"},
        "precision": {"k": PRC_K, "ball": "closed (<=)",
                      "implementation": "gmbench.estimators.prdc (exact counts, float64; "
                                        f"the counts of {tf} calculate_precision_recall_part)"},
        "recall": {"k": PRC_K, "ball": "closed (<=)",
                   "implementation": "gmbench.estimators.prdc (exact counts, float64; "
                                     f"the counts of {tf} calculate_precision_recall_part)"},
        "density": {"k": PRDC_K, "ball": closed,
                    "implementation": "gmbench.estimators.prdc (chunked, float64)"},
        "coverage": {"k": PRDC_K, "ball": closed,
                     "implementation": "gmbench.estimators.prdc (chunked, float64)"},
    }
    return details[key]
