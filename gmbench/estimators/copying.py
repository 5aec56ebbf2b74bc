"""Memorization statistics: how close samples sit to the training set, measured against the
distance of real held-out data to it.

Pure functions of nearest-neighbour distances (computed elsewhere with
:func:`gmbench.estimators.neighbours.knn`); :mod:`gmbench.metrics.memorization` wires them to an
evaluation. Three views:

* :func:`nn_distance_ratio`: median sample-to-train distance over the median test-to-train
  distance (about 1 for a model that generalizes, near 0 for a copier);
* :func:`copy_rate`: fraction of samples nearer to a training example than a threshold that
  real held-out data falls under about 1% of the time (:func:`copy_threshold`);
* :func:`data_copying_ct`: the C_T statistic of Meehan, Chaudhuri and Dasgupta (2020): per
  k-means cell of the training set, a Mann-Whitney U z-score of sample-to-train against
  test-to-train distances, averaged with the cells' test mass as weights.

:func:`verdict` turns the recorded metrics into the one-line flag printed under the table.

References:
    Meehan, Chaudhuri, Dasgupta. "A Non-Parametric Test to Detect Data-Copying in Generative
    Models." AISTATS 2020. https://arxiv.org/abs/2004.05675
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gmbench.estimators.neighbours import knn
from gmbench.estimators.uncertainty import Estimate

__all__ = [
    "COPY_QUANTILE",
    "CT_FLAG",
    "COPY_RATE_FLAG",
    "MIN_CELL_SAMPLES",
    "RATIO_FLAG",
    "CopyingTest",
    "assign_cells",
    "copy_rate",
    "copy_threshold",
    "data_copying_ct",
    "data_copying_ct_estimate",
    "fit_cells",
    "mann_whitney_z",
    "most_suspicious",
    "n_cells_for",
    "nn_distance_ratio",
    "two_sample_bootstrap",
    "within_cell_distances",
]

COPY_QUANTILE = 0.01  # real held-out data scores about this copy rate by construction
MIN_CELL_SAMPLES = 20  # Meehan et al.'s tau = 20 / m: cells with fewer samples are dropped
MAX_CELLS = 50
TEST_PER_CELL = 100  # aim for about this many held-out points per cell
# Verdict thresholds (also the acceptance thresholds of the memorization tests).
COPY_RATE_FLAG = 0.05  # 5x the calibrated rate of real data, and the CI must exclude it
CT_FLAG = -3.0
RATIO_FLAG = 0.5
GAP_FLAG = 0.1  # generalization_gap above 10% of nll, with the CI above 0


def two_sample_bootstrap(statistic: Callable[[np.ndarray, np.ndarray], float], n1: int,
                         n2: int, *, rng: np.random.Generator, n_boot: int = 500,
                         value: float | None = None, label: str = "",
                         resample_second: bool = True) -> Estimate:
    """Percentile bootstrap resampling two independent sets of units (or the first only).

    Args:
        statistic: maps index arrays ``(n1,)`` and ``(n2,)`` (resamples of ``range(n1)`` and
            ``range(n2)``) to a number.
        n1, n2: sizes of the two sets (e.g. samples and held-out test points).
        rng: generator for the resampling (derive it from the run seed).
        n_boot: number of resamples.
        value: the point estimate, if already computed.
        label: what was resampled, for ``ci_method``.
        resample_second: resample the second set too (``False``: it is held fixed).

    Returns:
        The estimate with ``n = n1`` (the number of samples, the model's side).
    """
    point = statistic(np.arange(n1), np.arange(n2)) if value is None else value
    fixed = np.arange(n2)
    boots = np.array([statistic(rng.integers(0, n1, size=n1),
                                rng.integers(0, n2, size=n2) if resample_second else fixed)
                      for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    low, high = np.quantile(boots, [0.025, 0.975])
    what = f" of {label}" if label else ""
    return Estimate(value=float(point), stderr=float(boots.std(ddof=1)), ci_low=float(low),
                    ci_high=float(high), n=n1, ci_method=
                    f"bootstrap-percentile ({n_boot} resamples{what})")


def nn_distance_ratio(sample_dist: np.ndarray, test_dist: np.ndarray, *,
                      rng: np.random.Generator, n_boot: int = 500) -> Estimate:
    """``median(sample_dist) / median(test_dist)``, with a bootstrap interval over the samples
    (the test split is the fixed yardstick of every run).

    Args:
        sample_dist: ``(m,)`` distance of each sample to its nearest training example.
        test_dist: ``(n,)`` distance of each held-out test example to its nearest training
            example (the yardstick).
        rng: generator for the bootstrap.
        n_boot: bootstrap resamples.

    Returns:
        About 1 when samples are as far from the training set as unseen real data; near 0
        for a model that replays training examples.
    """
    s = np.asarray(sample_dist, dtype=np.float64)
    t = np.asarray(test_dist, dtype=np.float64)

    def ratio(i: np.ndarray, j: np.ndarray) -> float:
        den = float(np.median(t[j]))
        return float(np.median(s[i])) / den if den > 0 else math.nan

    return two_sample_bootstrap(ratio, len(s), len(t), rng=rng, n_boot=n_boot,
                                label="the samples; test split fixed", resample_second=False)


def copy_threshold(test_dist: np.ndarray, *, quantile: float = COPY_QUANTILE) -> float:
    """The ``quantile`` of held-out test-to-train distances: real data falls under it with
    probability about ``quantile``."""
    return float(np.quantile(np.asarray(test_dist, dtype=np.float64), quantile))


def copy_rate(sample_dist: np.ndarray, threshold: float) -> Estimate:
    """Fraction of samples strictly nearer to a training example than ``threshold``, with a
    Clopper-Pearson 95% interval.

    Args:
        sample_dist: ``(m,)`` sample-to-nearest-training distances.
        threshold: from :func:`copy_threshold`.
    """
    d = np.asarray(sample_dist)
    n = int(d.size)
    k = int((d < threshold).sum())
    return Estimate.binomial(k, n)


# ------------------------------------------------------------------------- C_T (Meehan 2020)
def n_cells_for(n_test: int, n_samples: int) -> int:
    """Number of k-means cells: about :data:`TEST_PER_CELL` held-out points per cell, at
    least 2, at most :data:`MAX_CELLS`, and few enough that a cell can hold
    :data:`MIN_CELL_SAMPLES` samples on average."""
    by_test = n_test // TEST_PER_CELL
    by_samples = n_samples // (2 * MIN_CELL_SAMPLES)
    return int(max(2, min(MAX_CELLS, by_test, by_samples)))


def fit_cells(train: np.ndarray, *, n_cells: int, seed: int, max_fit: int = 10_000,
              max_iter: int = 50, device: str = "cpu") -> np.ndarray:
    """k-means centres ``(n_cells, F)`` fitted on (a seeded subset of at most ``max_fit``
    rows of) the training features ``(N, F)``.

    k-means++ seeding (Arthur and Vassilvitskii 2007), then Lloyd iterations until no point
    changes cell or ``max_iter``; assignments use the exact chunked search of
    :func:`gmbench.estimators.neighbours.knn` (torch, so CPU or CUDA); a cell that empties keeps its
    previous centre.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(train, dtype=np.float32).reshape(len(train), -1)
    if len(x) > max_fit:
        x = x[np.sort(rng.choice(len(x), max_fit, replace=False))]
    if n_cells > len(x):
        raise ValueError(f"{n_cells} cells requested from {len(x)} training points")
    xt = torch.as_tensor(x, device=device)  # (N, F)
    centres = xt[[int(rng.integers(len(x)))]]  # (1, F)
    d2 = ((xt - centres[0]) ** 2).sum(1).double()  # (N,) squared distance to nearest centre
    for _ in range(1, n_cells):
        p = (d2 / d2.sum()).cpu().numpy() if float(d2.sum()) > 0 else None
        new = xt[[int(rng.choice(len(x), p=p))]]
        centres = torch.cat([centres, new])
        d2 = torch.minimum(d2, ((xt - new[0]) ** 2).sum(1).double())
    cells = None
    for _ in range(max_iter):
        new_cells = torch.as_tensor(knn(xt, centres, k=1, device=device)[1][:, 0],
                                    device=device)
        if cells is not None and bool((new_cells == cells).all()):
            break
        cells = new_cells
        sums = torch.zeros_like(centres).index_add_(0, cells, xt)
        counts = torch.bincount(cells, minlength=n_cells).to(sums.dtype)[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return centres.cpu().numpy()


def assign_cells(x: np.ndarray, centres: np.ndarray, *, device: str = "cpu") -> np.ndarray:
    """Index of the nearest centre of every row of ``x`` ``(n, F)``, shape ``(n,)``."""
    return knn(x, centres, k=1, device=device)[1][:, 0]


def within_cell_distances(queries: np.ndarray, query_cells: np.ndarray, train: np.ndarray,
                          train_cells: np.ndarray, *, device: str = "cpu") -> np.ndarray:
    """Distance from each query to its nearest training point *in the same cell*, ``(n,)``
    (as in Meehan et al.'s reference code; ``inf`` if the cell holds no training point)."""
    out = np.full(len(queries), np.inf)
    for c in np.unique(query_cells):
        rows = np.flatnonzero(query_cells == c)
        refs = train[train_cells == c]
        if len(refs):
            out[rows] = knn(queries[rows], refs, k=1, device=device)[0][:, 0]
    return out


def mann_whitney_z(q: np.ndarray, p: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of ``q`` (samples) against ``p`` (test), as Meehan et al.

    ``U`` counts pairs with ``q > p`` (ties count one half), the U of ``scipy.stats.
    mannwhitneyu(q, p)``; ``Z = (U - m n / 2 + 1/2) / sqrt(m n (m + n + 1) / 12)`` (null
    moments, continuity correction toward the "less" alternative, no tie correction).
    Negative: samples nearer to the training set than held-out data.
    """
    q = np.asarray(q, dtype=np.float64)
    p = np.sort(np.asarray(p, dtype=np.float64))
    m, n = len(q), len(p)
    less = np.searchsorted(p, q, side="left")
    less_equal = np.searchsorted(p, q, side="right")
    u = float(less.sum() + 0.5 * (less_equal - less).sum())
    return (u - m * n / 2 + 0.5) / math.sqrt(m * n * (m + n + 1) / 12)


@dataclass(frozen=True)
class CopyingTest:
    """Result of :func:`data_copying_ct`.

    Attributes:
        value: C_T, the test-mass-weighted mean of the kept cells' z-scores.
        cell_z: ``(k,)`` z-score per cell (``nan`` for dropped cells).
        kept: ``(k,)`` whether each cell had at least ``min_cell_samples`` samples (and a
            test point).
        test_mass: ``(k,)`` fraction of test points per cell.
    """

    value: float
    cell_z: np.ndarray
    kept: np.ndarray
    test_mass: np.ndarray

    @property
    def dropped(self) -> int:
        return int((~self.kept).sum())


def data_copying_ct(sample_dist: np.ndarray, sample_cells: np.ndarray, test_dist: np.ndarray,
                    test_cells: np.ndarray, *, n_cells: int,
                    min_cell_samples: int = MIN_CELL_SAMPLES) -> CopyingTest:
    """The C_T statistic of Meehan, Chaudhuri and Dasgupta (2020).

    Args:
        sample_dist, sample_cells: ``(m,)`` sample-to-train distances and cell indices.
        test_dist, test_cells: ``(n,)`` the same for held-out test points.
        n_cells: number of cells ``k``.
        min_cell_samples: cells with fewer samples are dropped (Meehan's ``tau * m``).

    Returns:
        A :class:`CopyingTest`; ``value`` is ``nan`` if every cell was dropped. Strongly
        negative (below about -3): data copying; near 0: samples as far from the training
        set as held-out data; strongly positive: samples farther (underfitting).
    """
    cell_z = np.full(n_cells, np.nan)
    q_count = np.bincount(sample_cells, minlength=n_cells)
    p_count = np.bincount(test_cells, minlength=n_cells)
    kept = (q_count >= min_cell_samples) & (p_count > 0)
    for c in np.flatnonzero(kept):
        cell_z[c] = mann_whitney_z(sample_dist[sample_cells == c], test_dist[test_cells == c])
    mass = p_count / max(len(test_dist), 1)
    w = mass[kept]
    value = float(w @ cell_z[kept] / w.sum()) if w.sum() > 0 else math.nan
    return CopyingTest(value, cell_z, kept, mass)


def data_copying_ct_estimate(sample_dist: np.ndarray, sample_cells: np.ndarray,
                             test_dist: np.ndarray, test_cells: np.ndarray, *, n_cells: int,
                             rng: np.random.Generator, n_boot: int = 200,
                             min_cell_samples: int = MIN_CELL_SAMPLES
                             ) -> tuple[Estimate, CopyingTest]:
    """:func:`data_copying_ct` with a percentile bootstrap interval over the samples (test
    points, cells and distances held fixed)."""
    point = data_copying_ct(sample_dist, sample_cells, test_dist, test_cells, n_cells=n_cells,
                            min_cell_samples=min_cell_samples)

    def stat(i: np.ndarray, j: np.ndarray) -> float:
        return data_copying_ct(sample_dist[i], sample_cells[i], test_dist[j], test_cells[j],
                               n_cells=n_cells, min_cell_samples=min_cell_samples).value

    if not math.isfinite(point.value):
        est = Estimate.not_estimable(n=len(sample_dist))
        return est, point
    est = two_sample_bootstrap(stat, len(sample_dist), len(test_dist), rng=rng, n_boot=n_boot,
                               value=point.value, label="the samples; test split and cells "
                               "fixed", resample_second=False)
    return est, point


def most_suspicious(sample_dist: np.ndarray, *, count: int = 16) -> np.ndarray:
    """Indices of the ``count`` samples nearest to a training example, nearest first."""
    return np.argsort(np.asarray(sample_dist), kind="stable")[:count]
