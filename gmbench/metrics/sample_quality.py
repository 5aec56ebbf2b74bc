"""Sample-quality metrics on images: ``inception_score``, ``fid``, ``kid``, ``precision``,
``recall`` (computed by torch-fidelity's own functions) and ``density``, ``coverage``
(Naeem et al. 2020), all on the features of one shared extractor pass (SPEC sections 4-5).

Samples are compared with the test split. Every interval here covers what changes between runs
(the model's samples and gmbench's own randomness); the test split is the fixed reference that
every run and every baseline on a board shares. Features come from ``ev.features`` (the bundled
classifier's 128-d penultimate layer by default; test features cached on disk) and logits from
the same pass (``ev.logits``), so each input goes through the extractor once for every metric
here and for the divergence and memorization metrics that share it.

Definitions (each record's ``details`` repeats them):

- ``inception_score``: ``exp(E_x KL(p(y|x) || p(y)))`` per split, mean over 10 disjoint splits of
  the shuffled samples (torch-fidelity ``isc_features_to_metric``); stderr = split std /
  sqrt(9) (normal interval).
- ``fid``: Fréchet distance between Gaussians fitted to sample and test features (torch-fidelity
  ``fid_features_to_statistics`` + ``fid_statistics_to_metric``); stderr from a bootstrap of
  the samples (normal interval around the value).
- ``kid``: unbiased MMD² with the cubic polynomial kernel ``(x.y/F + 1)^3``, mean over 100 random
  subsets of ``min(1000, n)`` per set (torch-fidelity ``kid_features_to_metric``); stderr from
  the samples' U-statistic first-order variance plus torch-fidelity's subset spread / sqrt(100).
- ``precision`` / ``recall``: Kynkäänniemi et al. 2019 with k = 3 and ``<=`` (torch-fidelity
  ``calculate_precision_recall_part``, chunked).
- ``density`` / ``coverage``: Naeem et al. 2020, k = 5, with ``<=`` (see :mod:`gmbench.estimators.prdc`).
- the intervals of these four: normal, with a delete-a-group jackknife standard error over both
  the samples and the test points (:func:`gmbench.estimators.prdc.prdc`), since the k-NN balls of either
  set move when its points change.

References:
    Salimans et al. 2016 (IS); Heusel et al. 2017 (FID); Bińkowski et al. 2018 (KID);
    Kynkäänniemi et al. 2019 (precision/recall); Naeem et al. 2020 (density/coverage);
    Obukhov et al., torch-fidelity (https://github.com/toshas/torch-fidelity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from gmbench.errors import MetricError
from gmbench.estimators.frechet import frechet_distance, gaussian_statistics
from gmbench.estimators.prdc import (
    LIST_MARGIN,
    NeighbourLists,
    PRDCResult,
    jackknife_se,
    prdc,
    self_neighbours,
)
from gmbench.estimators.uncertainty import Z95, Estimate, clopper_pearson
from gmbench.features.classifier import BUNDLED_DATASETS, classifier_available
from gmbench.metrics.context import Context
from gmbench.metrics.registry import Measurement, Metric, register
from gmbench.rng import child_seed

if TYPE_CHECKING:
    from gmbench.datasets import Dataset

__all__ = [
    "ISC_SPLITS",
    "KID_SUBSETS",
    "KID_SUBSET_SIZE",
    "PRC_K",
    "PRDC_K",
    "SampleQuality",
    "fid_estimate",
    "inception_score_estimate",
    "kid_estimate",
    "kid_first_order_variance",
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
FID_BOOT_SMALL, FID_BOOT_LARGE = 20, 5  # bootstrap resamples for F <= 512 / F > 512
# torch-fidelity (and the torchvision it imports) loads on first use, not with gmbench.metrics


def _t(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x)).to(dtype)


def _normal(value: float, se: float, n: int, method: str) -> Estimate:
    return Estimate(value, se, value - Z95 * se, value + Z95 * se, n, method)


# ---------------------------------------------------------------- pure functions of features
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


def fid_estimate(fake: np.ndarray, real: np.ndarray, *, rng: np.random.Generator,
                 n_boot: int | None = None) -> Estimate:
    """FID of ``fake`` ``(M, F)`` against ``real`` ``(N, F)``: torch-fidelity's value; stderr
    from ``n_boot`` bootstrap resamples of the samples, the test statistics held fixed (our
    closed form, :mod:`gmbench.estimators.frechet`): what changes between runs."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    small = fake.shape[1] <= 512
    n_boot = n_boot or (FID_BOOT_SMALL if small else FID_BOOT_LARGE)
    # one BLAS thread: small eigenproblems only lose time to threading, badly on a busy CPU
    with threadpool_limits(limits=1 if small else None):
        stat_fake = fid_features_to_statistics(_t(fake, torch.float64))
        stat_real = fid_features_to_statistics(_t(real, torch.float64))
        value = fid_statistics_to_metric(stat_fake, stat_real, verbose=False)[
            "frechet_inception_distance"]
        real_stats = gaussian_statistics(real)
        boots = []
        for _ in range(n_boot):
            wf = np.bincount(rng.integers(0, len(fake), len(fake)), minlength=len(fake))
            boots.append(frechet_distance(*gaussian_statistics(fake, wf), *real_stats))
    se = float(np.std(boots, ddof=1))
    return _normal(float(value), se, len(fake),
                   f"normal, bootstrap stderr ({n_boot} resamples of the samples; test split "
                   "fixed)")


def kid_first_order_variance(fake: np.ndarray, real: np.ndarray, *, rng: np.random.Generator,
                             subset_size: int = KID_SUBSET_SIZE, real_side: bool = True
                             ) -> float:
    """Variance of the full-data unbiased MMD^2 from its first-order (Hoeffding) term,
    ``4 Var_x(a(x)) / M + 4 Var_y(b(y)) / N`` with ``a(x) = E k(x, X') - E k(x, Y)`` and
    ``b(y) = E k(y, Y') - E k(X, y)``, estimated from row means on one random subset of each
    set, with KID's kernel ``(x.y / F + 1)^3``. ``real_side=False`` keeps the samples' term
    only (the test split fixed: what changes between runs).

    Exact to first order when the distributions differ; conservative when they are equal
    (the first-order term vanishes and what remains is estimation noise).
    """
    s = min(subset_size, len(fake), len(real))
    x = np.asarray(fake, np.float64)[rng.choice(len(fake), s, replace=False)]
    y = np.asarray(real, np.float64)[rng.choice(len(real), s, replace=False)]
    gamma = 1.0 / x.shape[1]

    def kern(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (u @ v.T * gamma + 1.0) ** 3

    k_xx, k_yy, k_xy = kern(x, x), kern(y, y), kern(x, y)  # (s, s) each
    np.fill_diagonal(k_xx, 0.0)
    np.fill_diagonal(k_yy, 0.0)
    a = k_xx.sum(1) / (s - 1) - k_xy.mean(1)  # (s,)
    b = k_yy.sum(1) / (s - 1) - k_xy.mean(0)  # (s,)
    return float(4 * a.var(ddof=1) / len(fake)
                 + (4 * b.var(ddof=1) / len(real) if real_side else 0.0))


def kid_estimate(fake: np.ndarray, real: np.ndarray, *, seed: int, subsets: int = KID_SUBSETS,
                 subset_size: int = KID_SUBSET_SIZE) -> Estimate:
    """KID via torch-fidelity: mean over ``subsets`` random subsets of
    ``min(subset_size, M, N)`` per set.

    The stderr combines the sampling variance of the samples (:func:`kid_first_order_variance`,
    the test split held fixed) with the spread torch-fidelity reports over its random subsets
    (``std / sqrt(subsets)``);
    torch-fidelity's std alone measures only the subset draw, which is ~0 when the subsets
    cover the data.
    """
    size = min(subset_size, len(fake), len(real))
    if size < 3:
        raise MetricError("KID needs at least 3 samples and 3 test points.")
    from torch_fidelity.metric_kid import kid_features_to_metric

    out = kid_features_to_metric(_t(fake), _t(real), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=seed, verbose=False)
    value, spread = out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]
    var = kid_first_order_variance(fake, real, rng=np.random.default_rng(seed),
                                   subset_size=size, real_side=False)
    se = math.sqrt(var + spread**2 / subsets)
    return _normal(value, se, len(fake),
                   f"normal; the samples' U-statistic first-order variance (test split "
                   f"fixed) + subset spread ({subsets} subsets of {size}, torch-fidelity)")


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
        k = int(round(value * n))
        low, high = clopper_pearson(k, n)
        return Estimate(value, 0.0, low, high, n, "clopper-pearson (all jackknife replicates "
                        "equal)")
    low, high = value - Z95 * se, value + Z95 * se
    if fraction:
        low, high = max(0.0, low), min(1.0, high)
    return Estimate(value, se, low, high, n, method)


def prdc_estimates(fake: np.ndarray, real: np.ndarray, *, seed: int,
                   real_lists: NeighbourLists | None = None
                   ) -> tuple[dict[str, Estimate], dict[str, float]]:
    """Precision, recall (values from torch-fidelity), density and coverage, each with a
    jackknife interval over the samples (:func:`gmbench.estimators.prdc.prdc`; the test split is the
    fixed reference of every run), and each one's jackknife standard error over the test
    points (what a different test split would change), for the record."""
    if len(real) <= PRDC_K:
        raise MetricError(f"density/coverage need more than k = {PRDC_K} test points.")
    precision, recall = precision_recall_values(fake, real)
    res = prdc(real, fake, seed=seed, k_pr=PRC_K, k_dc=PRDC_K, real_lists=real_lists)
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
    import torch_fidelity

    from gmbench.features.fidelity import register_with_torch_fidelity

    register_with_torch_fidelity()
    est: dict[str, Estimate] = {}
    if fake_logits is not None:
        est["inception_score"] = inception_score_estimate(fake_logits,
                                                          seed=child_seed(seed, "isc"))
    est["fid"] = fid_estimate(fake, real, rng=np.random.default_rng(child_seed(seed, "fid")))
    est["kid"] = kid_estimate(fake, real, seed=child_seed(seed, "kid"))
    prdc_est, test_side = prdc_estimates(fake, real, seed=child_seed(seed, "prdc"),
                                         real_lists=real_lists)
    est.update(prdc_est)
    tf = f"torch-fidelity {torch_fidelity.__version__}"
    details: dict[str, dict[str, Any]] = {
        "inception_score": {"splits": ISC_SPLITS, "implementation": f"{tf} isc_features_to_metric"},
        "fid": {"implementation": f"{tf} fid_features_to_statistics + fid_statistics_to_metric"},
        "kid": {"kernel": "polynomial (x.y/F + 1)^3", "subsets": KID_SUBSETS,
                "subset_size": min(KID_SUBSET_SIZE, len(fake), len(real)),
                "estimator": "unbiased MMD^2",
                "implementation": f"{tf} kid_features_to_metric"},
        "precision": {"k": PRC_K, "ball": "closed (<=)",
                      "implementation": f"{tf} calculate_precision_recall_part; interval: "
                                        "gmbench.estimators.prdc jackknife"},
        "recall": {"k": PRC_K, "ball": "closed (<=)",
                   "implementation": f"{tf} calculate_precision_recall_part; interval: "
                                     "gmbench.estimators.prdc jackknife"},
        "density": {"k": PRDC_K, "ball": "closed (<=; the reference code's < drops exact "
                    "duplicates)", "implementation": "gmbench.estimators.prdc (chunked, float64)"},
        "coverage": {"k": PRDC_K, "ball": "closed (<=; the reference code's < drops exact "
                     "duplicates)", "implementation": "gmbench.estimators.prdc (chunked, float64)"},
    }
    for key, se in test_side.items():
        details[key]["stderr_test_split"] = se
    return SampleQuality(est, details)


# ---------------------------------------------------------------- wiring into Context
def images_with_extractor(dataset: Dataset) -> str | None:
    if dataset.info.kind != "image":
        return "defined for image datasets only"
    name = dataset.info.name
    if name in BUNDLED_DATASETS and not classifier_available(name):
        return (f"needs the bundled {name} classifier, which is not trained yet (run `python -m "
                f"gmbench.features.train --dataset {name}`)")
    return None


def _test_lists(ev: Context) -> NeighbourLists:
    """Nearest-neighbour lists of the test features, cached on disk beside them."""
    real = ev.features("test")
    keep = PRDC_K + LIST_MARGIN

    def compute() -> dict[str, np.ndarray]:
        lists = self_neighbours(real, keep=keep)
        return {"dist": lists.dist, "idx": lists.idx}

    arrays = ev.model_independent(f"test-nn{keep}", compute, rows=len(real))
    return NeighbourLists(arrays["dist"], arrays["idx"])


def _results(ev: Context) -> SampleQuality:
    def compute() -> SampleQuality:
        fake, real = ev.features("samples"), ev.features("test")
        outputs = ev.feature_pass("samples")
        lists = ev.memo("prdc/test-lists", lambda: _test_lists(ev))
        return sample_quality(fake, real, fake_logits=outputs.get("logits"), seed=ev.seed,
                              real_lists=lists)
    return ev.memo("sample_quality", compute)


def _measure(key: str):  # noqa: ANN202 - returns a compute function
    def compute(ev: Context) -> Measurement:
        if key == "inception_score":
            ev.logits("samples")  # a clear error when the extractor has no classifier head
        res = _results(ev)
        extractor = ev.extractor
        details = {
            **res.details[key],
            "n_samples": len(ev.features("samples")),
            "n_reference": len(ev.features("test")),
            "reference": "test split",
            "extractor": extractor.name,
            "weights_sha256": extractor.sha256 or None,
            "feature_dim": int(ev.features("test").shape[1]),
            "feature_layer": getattr(extractor, "logits_layer", "logits")
            if key == "inception_score" else "features",
            "comparable_only_with": "the same feature_space and the same n_samples/n_reference",
        }
        return Measurement(res.estimates[key], feature_space=ev.feature_space, details=details)
    return compute


for _key, _desc, _hib, _ideal, _protocol, _unit in (
    ("inception_score", "exp E KL(p(y|x) || p(y)), 10 splits, torch-fidelity", True, None, 1,
     "score"),
    ("fid", "Fréchet distance of Gaussian fits to sample and test features, torch-fidelity",
     False, None, 1, "squared feature units"),
    ("kid", "unbiased MMD^2, cubic polynomial kernel, 100 subsets, torch-fidelity", False,
     None, 1, "squared kernel units"),
    ("precision", "fraction of samples inside test k-NN balls (k=3), torch-fidelity", True,
     None, 1, "fraction"),
    ("recall", "fraction of test points inside sample k-NN balls (k=3), torch-fidelity", True,
     None, 1, "fraction"),
    ("density", "mean count of test k-NN balls (k=5) holding a sample, over k (1 ideal)",
     False, 1.0, 2, "ratio"),
    ("coverage", "fraction of test k-NN balls (k=5) holding a sample", True, None, 1,
     "fraction"),
):
    register(Metric(key=_key, description=_desc, needs=("sample",),
                    higher_is_better=_hib, ideal=_ideal, protocol=_protocol, unit=_unit,
                    compute=_measure(_key), applies=images_with_extractor))
