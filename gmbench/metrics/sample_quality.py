"""Sample-quality metrics on images: ``inception_score``, ``fid``, ``kid``, ``precision``,
``recall`` (computed by torch-fidelity's own functions) and ``density``, ``coverage``
(Naeem et al. 2020), all on the features of one shared extractor pass
(``docs/CONTRACT.md``, sections 4-5).

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
  ``fid_features_to_statistics`` + ``fid_statistics_to_metric``); stderr by the delta method
  over the samples (:func:`gmbench.estimators.frechet.frechet_delta_se`; normal interval
  around the value).
- ``kid``: unbiased MMD² with the cubic polynomial kernel ``(x.y/F + 1)^3``, mean over 100 random
  subsets of ``min(1000, n)`` per set (torch-fidelity ``kid_features_to_metric``); stderr from
  the samples' U-statistic first-order variance plus torch-fidelity's subset spread / sqrt(100).
- ``precision`` / ``recall``: Kynkäänniemi et al. 2019 with k = 3 and ``<=`` (torch-fidelity
  ``calculate_precision_recall_part``: the same counts, computed exactly with the test radii
  cached; see :func:`gmbench.estimators.image_quality.prdc_estimates`).
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
from typing import TYPE_CHECKING, Any

import numpy as np

from gmbench.core.rng import child_seed
from gmbench.estimators.image_quality import (
    ISC_SPLITS,
    PRDC_K,
    fid_estimate,
    implementation_details,
    inception_score_estimate,
    kid_estimate,
    prdc_estimates,
)
from gmbench.estimators.prdc import (
    JACKKNIFE_GROUPS,
    LIST_MARGIN,
    NeighbourLists,
    self_neighbours,
)
from gmbench.estimators.uncertainty import Estimate
from gmbench.features.classifier import BUNDLED_DATASETS, classifier_available
from gmbench.metrics.context import Context
from gmbench.metrics.metric import Measurement, Metric, register

if TYPE_CHECKING:
    from gmbench.datasets import Dataset

__all__: list[str] = []

def images_with_extractor(dataset: Dataset) -> str | None:
    if dataset.info.kind != "image":
        return "defined for image datasets only"
    name = dataset.info.name
    if name in BUNDLED_DATASETS and not classifier_available(name):
        return (f"needs the bundled {name} classifier, which is not trained yet (run `python -m "
                f"gmbench.features.train_classifier --dataset {name}`)")
    return None


def _test_lists(ev: Context) -> NeighbourLists:
    """Nearest-neighbour lists of the test features, cached on disk beside them."""
    real = ev.features("test")
    keep = PRDC_K + LIST_MARGIN

    def compute() -> dict[str, np.ndarray]:
        lists = self_neighbours(real, keep=keep)
        return {"dist": lists.dist, "idx": lists.idx}

    # v2: whole-numbered features (pixels) are no longer centred (exact ties)
    arrays = ev.model_independent(f"test-nn{keep}-v2", compute, rows=len(real))
    return NeighbourLists(arrays["dist"], arrays["idx"])


def _prdc(ev: Context) -> tuple[dict[str, Estimate], dict[str, float]]:
    """Precision, recall, density and coverage with their jackknife intervals: one shared
    k-NN pass for the four."""
    def compute() -> tuple[dict[str, Estimate], dict[str, float]]:
        lists = ev.memo("prdc/test-lists", lambda: _test_lists(ev))
        return prdc_estimates(ev.features("samples"), ev.features("test"),
                              seed=child_seed(ev.seed, "prdc"), real_lists=lists)
    return ev.memo("sample-quality/prdc", compute)


def _estimate(ev: Context, key: str) -> tuple[Estimate, dict[str, Any]]:
    """Metric ``key`` and its extra details, computing only what ``key`` reports."""
    fake, real = ev.features("samples"), ev.features("test")
    if key == "inception_score":
        logits = ev.logits("samples")  # a clear error when the extractor has no classifier
        return inception_score_estimate(logits, seed=child_seed(ev.seed, "isc")), {
            "df_runs": ISC_SPLITS - 1}
    if key == "fid":
        return fid_estimate(fake, real), {}
    if key == "kid":
        est, se_runs = kid_estimate(fake, real, seed=child_seed(ev.seed, "kid"))
        return est, {"stderr_runs": se_runs, "interval": "covers the population KID (a new "
                     "test split and new samples): 0 lies in it about 95% of the time when "
                     "the model's distribution is the data's (at least: an interval wholly "
                     "below 0 is extended up to 0); stderr_runs is the standard "
                     "error between runs on this test split (what the regression gate "
                     "compares)"}
    estimates, test_side = _prdc(ev)
    return estimates[key], {"stderr_test_split": test_side[key],
                            "df_runs": JACKKNIFE_GROUPS - 1}


def _measure(key: str):  # noqa: ANN202 - returns a compute function
    def compute(ev: Context) -> Measurement:
        # imported here: torch-fidelity brings torchvision (about 1.5 s), which runs that
        # need no sample-quality metric should not pay
        from gmbench.features.fidelity import register_with_torch_fidelity

        register_with_torch_fidelity()
        estimate, extra = _estimate(ev, key)
        extractor = ev.extractor
        n_fake, n_real = len(ev.features("samples")), len(ev.features("test"))
        details = {
            **implementation_details(key, n_fake, n_real),
            **extra,
            "n_samples": n_fake,
            "n_reference": n_real,
            "reference": "test split",
            "extractor": extractor.name,
            "weights_sha256": extractor.sha256 or None,
            "feature_dim": int(ev.features("test").shape[1]),
            "feature_layer": getattr(extractor, "logits_layer", "logits")
            if key == "inception_score" else "features",
            "comparable_only_with": "the same feature_space and the same n_samples/n_reference",
        }
        return Measurement(estimate, feature_space=ev.feature_space, details=details)
    return compute


for _key, _desc, _hib, _ideal, _protocol, _unit in (
    ("inception_score", "exp E KL(p(y|x) || p(y)), 10 splits, torch-fidelity", True, None, 1,
     "score"),
    ("fid", "Fréchet distance of Gaussian fits to sample and test features, torch-fidelity",
     False, None, 2, "squared feature units"),
    ("kid", "unbiased MMD^2, cubic polynomial kernel, 100 subsets, torch-fidelity (0 ideal)",
     False, 0.0, 3, "squared kernel units"),
    ("precision", "fraction of samples inside test k-NN balls (k=3), torch-fidelity", True,
     None, 2, "fraction"),
    ("recall", "fraction of test points inside sample k-NN balls (k=3), torch-fidelity", True,
     None, 2, "fraction"),
    ("density", "mean count of test k-NN balls (k=5) holding a sample, over k (1 ideal)",
     False, 1.0, 2, "ratio"),
    ("coverage", "fraction of test k-NN balls (k=5) holding a sample", True, None, 2,
     "fraction"),
):
    register(Metric(key=_key, description=_desc, needs=("sample",),
                    higher_is_better=_hib, ideal=_ideal, protocol=_protocol, unit=_unit,
                    compute=_measure(_key), applies=images_with_extractor,
                    needs_logits=_key == "inception_score", n_samples_free=_key == "kid",
                    interval="population" if _key == "kid" else "runs",
                    bounds=(0.0, 1.0) if _unit == "fraction" else (-math.inf, math.inf)))
