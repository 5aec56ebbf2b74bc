"""Memorization metrics: ``nn_distance_ratio``, ``copy_rate``, ``data_copying_ct``
(``docs/CONTRACT.md``, section 4).

Wiring only; the statistics live in :mod:`gmbench.estimators.copying`. Samples are compared with
the train split, with the test split as the held-out yardstick. Nearest-neighbour distances
are computed once per evaluation (exact, chunked: :func:`gmbench.estimators.neighbours.knn`) and shared.
The headline feature space is the evaluation's (``ev.features``: the bundled classifier
where one exists, else pixels); ``nn_distance_ratio`` and ``copy_rate`` also report the
pixel-space value in ``details``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gmbench.core.rng import child_seed
from gmbench.estimators import copying as mem
from gmbench.estimators.neighbours import knn
from gmbench.features.extractors import PixelFeatures
from gmbench.metrics.context import Context
from gmbench.metrics.metric import Measurement, Metric, register

if TYPE_CHECKING:
    from gmbench.datasets import Dataset

# the share of test examples that are training examples above which the test split is no
# yardstick of held-out distances (real datasets: none of MNIST's, Fashion-MNIST's or digits')
MAX_OVERLAP = 0.1

__all__ = ["PAIRS_KEY", "SHARED_K", "nearest_train", "suspicious_pairs"]

CELLS_SEED = 0  # the data-copying cells do not depend on the run seed
SHARED_K = 10  # neighbours kept for samples in feature space (pseudo-labels reuse them)
PAIRS_KEY = "memorization/pairs"
N_PAIRS = 16


def _data(ev: Context, split: str, space: str) -> np.ndarray:
    return ev.features(split) if space == "features" else ev.pixels(split)


def nearest_train(ev: Context, split: str, space: str = "features"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)`` of the nearest train examples of ``split`` (``"samples"`` or
    ``"test"``) in ``space`` (``"features"`` or ``"pixels"``), each ``(n, k)``, computed once
    per evaluation. ``k`` is :data:`SHARED_K` for samples in feature space, else 1."""
    k = SHARED_K if (split, space) == ("samples", "features") else 1

    exact = space == "pixels" and _integer_levels(ev)

    def compute() -> tuple[np.ndarray, np.ndarray]:
        if exact:  # the data's own integer levels: an exact search (integer arithmetic)
            raw = {"samples": ev.samples, "test": ev.dataset.test.x}[split]
            dist, idx = knn(raw, ev.dataset.train.x, k=k, device=ev.config.device)
            assert ev.info.levels is not None
            return dist / (ev.info.levels - 1), idx  # in the units of ev.pixels
        return knn(_data(ev, split, space), _data(ev, "train", space), k=k,
                   device=ev.config.device)

    if split == "test":  # does not depend on the model: once per machine, cached on disk
        arrays = ev.model_independent(
            f"test-train-nn{k}-{space}{'-exact' if exact else ''}",
            lambda: dict(zip(("distances", "indices"), compute(), strict=True)),
            rows=len(ev.dataset.test))
        return arrays["distances"], arrays["indices"]
    return ev.memo(f"nn-train/{split}/{space}", compute)


def _integer_levels(ev: Context) -> bool:
    """Whether the data are integer levels (at most 256 of them: pixels), searched exactly."""
    return ev.info.levels is not None and ev.info.levels <= 256 and ev.info.is_discrete


def _distances(ev: Context, space: str) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-training distances of samples ``(m,)`` and of test points ``(n,)``."""
    sample_dist, sample_idx = nearest_train(ev, "samples", space)
    if space == "features":
        order = mem.most_suspicious(sample_dist[:, 0], count=N_PAIRS)
        ev.memo(PAIRS_KEY, lambda: (order, sample_idx[order, 0]))
    return sample_dist[:, 0], nearest_train(ev, "test", space)[0][:, 0]


def _pixels_differ(ev: Context) -> bool:
    """Whether the headline feature space is a learned one (else pixels *are* the features)."""
    return not isinstance(ev.extractor, PixelFeatures)


def suspicious_pairs(ev: Context) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sample indices, train indices)`` of the samples nearest to a training example and
    their neighbours, if a memorization metric ran in this evaluation; else ``None``."""
    return ev.memo(PAIRS_KEY, lambda: None) if ev.computed(PAIRS_KEY) else None


def _space_note(ev: Context) -> str:
    return ("headline in the evaluation's feature space; pixel-space value in "
            "details.pixels" if _pixels_differ(ev) else "feature space is pixels")


def _nn_distance_ratio(ev: Context) -> Measurement:
    s, t = _distances(ev, "features")
    est = mem.nn_distance_ratio(s, t, rng=ev.rng("nn_distance_ratio"))
    details = {"headline_space": "features", "note": _space_note(ev),
               "median_sample_distance": float(np.median(s)),
               "median_test_distance": float(np.median(t)), "n_test": len(t),
               "n_train": len(ev.dataset.train)}
    if _pixels_differ(ev):
        ps, pt = _distances(ev, "pixels")
        px = mem.nn_distance_ratio(ps, pt, rng=ev.rng("nn_distance_ratio", "pixels"))
        details["pixels"] = {"value": px.value, "ci_low": px.ci_low, "ci_high": px.ci_high,
                             "ci_method": px.ci_method}
    return Measurement(est, feature_space=ev.feature_space, details=details,
                       artifacts=_pairs(ev))


def _pairs(ev: Context) -> dict[str, Any]:
    """The nearest sample-training pairs, for the run's pictures."""
    pairs = suspicious_pairs(ev)
    return {} if pairs is None else {"pairs": pairs}


def _copy_rate(ev: Context) -> Measurement:
    s, t = _distances(ev, "features")
    threshold = mem.copy_threshold(t)
    details = {
        "calibration": (f"threshold = {mem.COPY_QUANTILE:.0%} quantile of test-to-train "
                        "nearest distances, so real held-out data scores about "
                        f"{mem.COPY_QUANTILE:.0%}"),
        "threshold": threshold,
        "quantile": mem.COPY_QUANTILE,
        "test_copy_rate": float((t < threshold).mean()),
        # the contract's literal reading: nearer than the nearest test point is to the training set
        "below_min_test_distance": float((s < t.min()).mean()),
        "n_test": len(t),
    }
    if _pixels_differ(ev):
        ps, pt = _distances(ev, "pixels")
        pth = mem.copy_threshold(pt)
        details["pixels"] = {"value": float((ps < pth).mean()), "threshold": pth}
    return Measurement(mem.copy_rate(s, threshold), feature_space=ev.feature_space,
                       details=details, artifacts=_pairs(ev))


def _data_copying_ct(ev: Context) -> Measurement:
    train = ev.features("train")
    samples, test = ev.features("samples"), ev.features("test")
    n_cells = mem.n_cells_for(len(test), len(samples))
    # The cells partition the training set: a property of the dataset, not of the run, so they
    # are fitted with the protocol's own seed and are the same for every run and model.
    seed = child_seed(CELLS_SEED, "data_copying_ct", "cells")
    device = ev.config.device
    centres = ev.memo(f"ct/centres/{n_cells}",
                      lambda: mem.fit_cells(train, n_cells=n_cells, seed=seed,
                                                         device=device))
    train_cells = ev.memo(f"ct/train-cells/{n_cells}",
                          lambda: mem.assign_cells(train, centres, device=device))
    cells = {}
    dist = {}
    for split, x in (("samples", samples), ("test", test)):
        cells[split] = mem.assign_cells(x, centres, device=device)
        dist[split] = mem.within_cell_distances(x, cells[split], train, train_cells,
                                                device=device)
    est, res = mem.data_copying_ct_estimate(dist["samples"], cells["samples"], dist["test"],
                                            cells["test"], n_cells=n_cells,
                                            rng=ev.rng("data_copying_ct"))
    details: dict[str, Any] = {}
    if not res.kept.any():
        details["not_estimable"] = (f"every one of the {n_cells} cells held fewer than "
                                    f"{mem.MIN_CELL_SAMPLES} samples; raise --n-samples (at "
                                    f"least {2 * mem.MIN_CELL_SAMPLES * n_cells})")
    return Measurement(est, feature_space=ev.feature_space, details={
        **details,
        "cells": n_cells,
        "cells_kept": int(res.kept.sum()),
        "cells_dropped": res.dropped,
        "min_cell_samples": mem.MIN_CELL_SAMPLES,
        "test_mass_kept": float(res.test_mass[res.kept].sum()),
        "partition": (f"k-means++ then Lloyd (k={n_cells}, fitted on <= 10000 training "
                      "features with a fixed seed: the same cells for every run); "
                      "distances to the nearest training point in the same cell"),
        "interpretation": ("about 0: samples as far from the training set as held-out data; "
                           "below -3: data copying; strongly positive: samples farther from "
                           "the training set than real data (underfitting), not better"),
        "n_test": len(test),
    })


_SHARED: dict[str, int] = {}  # test examples that are training examples, by dataset hash


def held_out(dataset: Dataset) -> str | None:
    """Why the memorization checks do not apply: a test split that is (largely) the training
    split, so that held-out distances would be distances to copies."""
    n = len(dataset.test)
    if dataset.sha256 not in _SHARED:
        seen = {row.tobytes() for row in
                np.ascontiguousarray(dataset.train.x).reshape(len(dataset.train), -1)}
        _SHARED[dataset.sha256] = sum(
            row.tobytes() in seen for row in np.ascontiguousarray(dataset.test.x).reshape(n, -1))
    shared = _SHARED[dataset.sha256]
    if n and shared / n > MAX_OVERLAP:
        return (f"the test split is not held out: {shared} of its {n} examples are training "
                "examples; the memorization checks measure samples' distances to the training "
                "split against held-out data's, so give the dataset a test split apart from "
                "its training split")
    return None


for _metric in (
    Metric(key="nn_distance_ratio", description="median sample-to-train NN distance / median test-to-train NN distance "
                       "(1 ideal, near 0 = copying, above 1 = underfitting)",
           needs=("sample",), higher_is_better=False, ideal=1.0, protocol=2, unit="ratio",
           compute=_nn_distance_ratio, applies=held_out),
    Metric(key="copy_rate", description="fraction of samples nearer to a training example than the 1% quantile "
                       "of test-to-train NN distances (0.01 ideal, the data's own rate; only a "
                       "rise regresses)",
           needs=("sample",), higher_is_better=False, ideal=mem.COPY_QUANTILE, protocol=2,
           rise_regresses=True, unit="fraction", compute=_copy_rate, n_samples_free=True,
           bounds=(0.0, 1.0), applies=held_out),
    Metric(key="data_copying_ct", description="Meehan et al. 2020 C_T z-statistic (0 ideal, < -3 = copying, > 0 = "
                       "underfitting)",
           needs=("sample",), higher_is_better=False, ideal=0.0, protocol=2, unit="z-score",
           compute=_data_copying_ct, applies=held_out),
):
    register(_metric)
