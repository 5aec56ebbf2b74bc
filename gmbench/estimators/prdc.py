"""Density and coverage (Naeem et al. 2020) from k-nearest-neighbour balls around real points.

With reals ``X_1..X_N``, fakes ``Y_1..Y_M`` and ``r_i`` the distance from ``X_i`` to its
``k``-th nearest *other* real point:

- ``density  = 1/(k M) * sum_j sum_i 1[ ||Y_j - X_i|| <= r_i ]``  (about 1 when fakes are
  distributed like reals; can exceed 1);
- ``coverage = 1/N * sum_i 1[ min_j ||Y_j - X_i|| <= r_i ]``  (fraction of real balls that hold
  at least one fake).

The reference code uses a strict ``<``; gmbench uses ``<=`` so that a fake identical to a real
point lies in that point's ball (with ``<``, identical sets could score coverage 0 when reals
repeat). A real point's own index is excluded from its neighbours, but exact duplicates of it
count, so ``r_i = 0`` when ``X_i`` occurs more than ``k`` times.

:func:`prdc` computes improved precision and recall (Kynkäänniemi et al. 2019, k = 3) and
density and coverage (k = 5) in one chunked pass, with delete-a-group jackknife replicates on
*both* sides: each of ``G`` groups of real points is left out in turn (their balls vanish and
the other real points' radii are recomputed without them), and likewise each group of fake
points. The spread of these replicates gives each metric a standard error that covers both the
model's samples (what changes between runs) and the real points (the test split's sampling).

Memory is ``O(chunk * N)``: distances are computed ``chunk`` fakes at a time and reduced at
once, never stored as an ``M x N`` matrix. Squared distances use the expansion
``|a|^2 + |b|^2 - 2 a.b`` on features centred at the real mean, in float64 by default;
values below ``1e-10 (|a|^2 + |b|^2)`` (round-off of an exact duplicate) are set to 0.

References:
    Naeem, Oh, Uh, Choi, Yoo, "Reliable Fidelity and Diversity Metrics for Generative
    Models", ICML 2020 (https://github.com/clovaai/generative-evaluation-prdc).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from gmbench.estimators.neighbours import DEFAULT_CHUNK, squared_distance_blocks, topk_rows

__all__ = ["JACKKNIFE_GROUPS", "DensityCoverage", "NeighbourLists", "PRDCResult",
           "density_coverage", "jackknife_se", "kth_neighbor_radius", "prdc",
           "radii_without", "self_neighbours"]

SNAP = 1e-10  # relative round-off below which a squared distance is an exact duplicate
JACKKNIFE_GROUPS = 10
LIST_MARGIN = 8  # neighbours kept beyond k, so radii survive leaving a group out
MAX_GROWTH_PAIRS = 20_000_000


def _tensor(x: np.ndarray | torch.Tensor, center: torch.Tensor | None, device: str,
            dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.reshape(t.shape[0], -1).to(device=device, dtype=dtype)
    return t - center if center is not None else t


def center_of(x: torch.Tensor) -> torch.Tensor | None:
    """Where to centre points before the distance expansion: at their mean (far less
    round-off on off-centre data), except for whole-numbered points (pixel levels, counts)
    whose squared distances the expansion computes exactly as they are: centring those would
    turn exact ties at a ball's edge (closed balls, ``<=``) into round-off."""
    if x.dtype == torch.float64 and bool((x == x.round()).all()) and \
            float((x * x).sum(1).max()) < 2.0**50:
        return None
    return x.mean(0)


def _sq_dist_blocks(q: torch.Tensor, r: torch.Tensor, chunk: int
                    ) -> Iterator[tuple[int, torch.Tensor]]:
    return squared_distance_blocks(q, r, chunk=chunk, snap=SNAP)


def kth_neighbor_radius(real: np.ndarray | torch.Tensor, *, k: int, chunk: int = DEFAULT_CHUNK,
                        device: str = "cpu", dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Distance from each real point to its ``k``-th nearest other real point, ``(N,)``.

    The point's own index is excluded; exact duplicates of it count as neighbours at 0.
    """
    x = _tensor(real, None, device, dtype)
    center = center_of(x)
    x = x if center is None else x - center
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k = {k} neighbours need at least {k + 1} real points, got {n}")
    out = np.empty(n, dtype=np.float64)
    for start, d2 in _sq_dist_blocks(x, x, chunk):
        rows = torch.arange(d2.shape[0], device=device)
        d2[rows, rows + start] = torch.inf
        out[start:start + d2.shape[0]] = topk_rows(d2, k, largest=False)[0][:, -1].sqrt(
            ).double().cpu().numpy()
    return out


@dataclass(frozen=True)
class DensityCoverage:
    """Per-example terms of density and coverage.

    Attributes:
        density_terms: ``(M,)``: for each fake, the number of real balls holding it, over k.
            ``density`` is their mean.
        covered: ``(N,)`` bool: whether each real ball holds at least one fake. ``coverage`` is
            their mean.
        k: neighbourhood size.
    """

    density_terms: np.ndarray
    covered: np.ndarray
    k: int

    @property
    def density(self) -> float:
        return float(self.density_terms.mean())

    @property
    def coverage(self) -> float:
        return float(self.covered.mean())


def density_coverage(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *,
                     k: int = 5, radii: np.ndarray | None = None, chunk: int = DEFAULT_CHUNK,
                     device: str = "cpu", dtype: torch.dtype = torch.float64
                     ) -> DensityCoverage:
    """Density and coverage of ``fake`` ``(M, F)`` against ``real`` ``(N, F)``.

    Args:
        real, fake: feature arrays.
        k: neighbourhood size (the paper's default, 5).
        radii: precomputed :func:`kth_neighbor_radius` of ``real`` for this ``k`` (reused
            across models scored against the same reals).
        chunk: fakes per block of distances.
        device, dtype: where and in what precision to compute.
    """
    r_real = _tensor(real, None, device, dtype)
    center = center_of(r_real)
    r_real = r_real if center is None else r_real - center
    q_fake = _tensor(fake, center, device, dtype)
    if radii is None:
        radii = kth_neighbor_radius(real, k=k, chunk=chunk, device=device, dtype=dtype)
    # balls compared in distances, not squares: the radii are square roots of the same
    # kernel's squared distances, so an exact tie stays a tie
    r = torch.as_tensor(radii, device=device, dtype=dtype)  # (N,)
    counts = np.empty(q_fake.shape[0], dtype=np.float64)
    nearest = torch.full((r_real.shape[0],), torch.inf, device=device, dtype=dtype)  # (N,)
    for start, d2 in _sq_dist_blocks(q_fake, r_real, chunk):
        d = d2.sqrt_()
        counts[start:start + d.shape[0]] = (d <= r[None]).sum(1).double().cpu().numpy()
        nearest = torch.minimum(nearest, d.min(0).values)
    covered = (nearest <= r).cpu().numpy()
    return DensityCoverage(density_terms=counts / k, covered=covered, k=k)


# ---------------------------------------------------------------------------- jackknife pass
@dataclass(frozen=True)
class NeighbourLists:
    """Each point's nearest *other* points of its own set, sorted: ``dist``, ``idx``
    ``(n, K)`` (float64 distances; exact duplicates at 0)."""

    dist: np.ndarray
    idx: np.ndarray

    def radius(self, k: int) -> np.ndarray:
        """The ``k``-th nearest-neighbour distance of every point, ``(n,)``."""
        return self.dist[:, k - 1]


def self_neighbours(x: np.ndarray | torch.Tensor, *, keep: int, chunk: int = DEFAULT_CHUNK,
                    device: str = "cpu", dtype: torch.dtype = torch.float64,
                    centered: bool = False) -> NeighbourLists:
    """The ``keep`` nearest other points of every point of ``x`` ``(n, F)`` (its own index
    excluded; exact duplicates of it count, at distance 0). ``centered``: ``x`` is already in
    the coordinates the caller measures every other distance in (see :func:`center_of`)."""
    t = _tensor(x, None, device, dtype)
    if not centered:
        center = center_of(t)
        t = t if center is None else t - center
    n = t.shape[0]
    keep = min(keep, n - 1)
    if keep < 1:
        raise ValueError(f"nearest neighbours need at least 2 points, got {n}")
    dist = np.empty((n, keep), dtype=np.float64)
    idx = np.empty((n, keep), dtype=np.int64)
    for start, d2 in _sq_dist_blocks(t, t, chunk):
        rows = torch.arange(d2.shape[0], device=device)
        d2[rows, rows + start] = torch.inf
        vals, ids = topk_rows(d2, keep, largest=False)
        dist[start:start + d2.shape[0]] = vals.sqrt().double().cpu().numpy()
        idx[start:start + d2.shape[0]] = ids.cpu().numpy()
    return NeighbourLists(dist, idx)


def radii_without(lists: NeighbourLists, k: int, removed: np.ndarray) -> np.ndarray:
    """The ``k``-th nearest-neighbour distance of every point once the points flagged in
    ``removed`` ``(n,)`` are gone, from the sorted lists (a row whose list runs out keeps its
    last listed distance, a slight under-estimate that the list margin makes rare)."""
    kept = ~removed[lists.idx]  # (n, K)
    count = np.cumsum(kept, axis=1)
    pos = (count >= k).argmax(axis=1)
    enough = count[:, -1] >= k
    rows = np.arange(len(pos))
    return np.where(enough, lists.dist[rows, pos], lists.dist[:, -1])


def jackknife_se(replicates: np.ndarray) -> float:
    """Delete-a-group jackknife standard error from ``G`` leave-one-group-out values:
    ``sqrt((G - 1) / G * sum (v_g - mean)^2)``."""
    v = np.asarray(replicates, dtype=np.float64)
    g = len(v)
    return float(math.sqrt((g - 1) / g * ((v - v.mean()) ** 2).sum())) if g > 1 else math.nan


@dataclass(frozen=True)
class PRDCResult:
    """Precision, recall, density and coverage with their jackknife replicates.

    Attributes:
        values: ``{"precision", "recall", "density", "coverage"}`` on all points.
        real_replicates, fake_replicates: ``{metric: (G,)}`` values with each group of real
            (resp. fake) points left out.
        density_terms: ``(M,)`` per fake point, the real balls holding it over k.
        covered: ``(N,)`` whether each real ``k_dc``-ball holds a fake point.
        approximate: replicates where the growth of radii was not tracked (very many
            candidate pairs); their balls keep their full-data radii.
    """

    values: dict[str, float]
    real_replicates: dict[str, np.ndarray]
    fake_replicates: dict[str, np.ndarray]
    density_terms: np.ndarray
    covered: np.ndarray
    approximate: bool = False

    def stderr(self, metric: str) -> float:
        """Both sides in quadrature: ``sqrt(se_real^2 + se_fake^2)``."""
        return math.hypot(jackknife_se(self.real_replicates[metric]),
                          jackknife_se(self.fake_replicates[metric]))


def prdc(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, *, seed: int,
         k_pr: int = 3, k_dc: int = 5, groups: int = JACKKNIFE_GROUPS,
         real_lists: NeighbourLists | None = None, chunk: int = DEFAULT_CHUNK,
         device: str = "cpu", dtype: torch.dtype = torch.float64) -> PRDCResult:
    """Precision/recall (``k_pr``) and density/coverage (``k_dc``) of ``fake`` ``(M, F)``
    against ``real`` ``(N, F)``, with two-sided delete-a-group jackknife replicates.

    Definitions (closed balls, ``<=``): with ``r_i`` the ``k``-th nearest other real point of
    real ``i`` and ``s_j`` that of fake ``j`` among fakes, precision is the fraction of fakes
    inside some real ``k_pr``-ball, recall the fraction of reals inside some fake
    ``k_pr``-ball, density ``1/(k M) sum_j #{i: |y_j - x_i| <= r_i}`` (``k_dc``-balls) and
    coverage the fraction of real ``k_dc``-balls holding a fake.

    Args:
        real, fake: features.
        seed: seeds the assignment of points to jackknife groups.
        k_pr, k_dc: neighbourhood sizes.
        groups: jackknife groups per side.
        real_lists: precomputed :func:`self_neighbours` of ``real`` with at least
            ``k_dc + LIST_MARGIN`` neighbours (model-independent: cached beside the features).
        chunk: fakes per block of distances.
        device, dtype: where and in what precision to compute.
    """
    rng = np.random.default_rng(seed)
    r_t = _tensor(real, None, device, dtype)
    center = center_of(r_t)  # both sets in the same coordinates, and ties kept exact
    r_t = r_t if center is None else r_t - center
    f_t = _tensor(fake, center, device, dtype)
    n_real, n_fake = r_t.shape[0], f_t.shape[0]
    if n_real <= k_dc or n_fake <= k_pr:
        raise ValueError(f"precision/recall/density/coverage need more than {k_dc} real and "
                         f"{k_pr} fake points, got {n_real} and {n_fake}")
    if real_lists is None or real_lists.dist.shape[1] < min(k_dc + LIST_MARGIN, n_real - 1):
        real_lists = self_neighbours(r_t, keep=k_dc + LIST_MARGIN, chunk=chunk, device=device,
                                     dtype=dtype, centered=True)
    fake_lists = self_neighbours(f_t, keep=k_pr + LIST_MARGIN, chunk=chunk, device=device,
                                 dtype=dtype, centered=True)
    gr = rng.permutation(n_real) % groups  # (N,) group of each real point
    gf = rng.permutation(n_fake) % groups  # (M,)
    r_pr, r_dc, s_pr = real_lists.radius(k_pr), real_lists.radius(k_dc), fake_lists.radius(k_pr)
    r_pr_g = np.stack([radii_without(real_lists, k_pr, gr == g) for g in range(groups)])
    r_dc_g = np.stack([radii_without(real_lists, k_dc, gr == g) for g in range(groups)])
    s_pr_g = np.stack([radii_without(fake_lists, k_pr, gf == g) for g in range(groups)])
    r_grow = np.maximum(r_pr_g.max(0), r_dc_g.max(0))  # (N,) largest radius in any replicate
    s_grow = s_pr_g.max(0)  # (M,)

    # One sweep over the blocks of fake-real squared distances keeps, sparsely, every pair
    # close enough to matter in any replicate: inside a real ball or a fake ball at its
    # largest radius over the replicates (balls only grow when points are left out). Every
    # count is then made from those pairs, in distances (each radius is the square root of
    # the same kernel's squared distance, so a point exactly on a ball's edge stays inside).
    slack = 1 + 1e-9  # the squared thresholds only select candidates; the test is exact
    r_grow2 = torch.as_tensor(r_grow ** 2 * slack, device=device, dtype=dtype)  # (N,)
    s_grow2 = torch.as_tensor(s_grow ** 2 * slack, device=device, dtype=dtype)  # (M,)
    cnt_pr = np.zeros(n_fake * groups)  # fake j: real k_pr-balls holding it, per real group
    cnt_dc = np.zeros(n_fake * groups)  # ... real k_dc-balls
    cnt_rec = np.zeros(n_real * groups)  # real i: fake k_pr-balls holding it, per fake group
    cnt_cov = np.zeros(n_real * groups)  # real k_dc-ball i: fakes inside it, per fake group
    nearest2 = torch.full((n_real,), torch.inf, device=device, dtype=dtype)
    grow_r: list[np.ndarray] = []  # (j, i, d) with r_i < d <= r_grow_i: real radii growth
    grow_f: list[np.ndarray] = []  # (j, i, d) with s_j < d <= s_grow_j: fake radii growth
    stored, approximate = 0, False
    for start, d2 in _sq_dist_blocks(f_t, r_t, chunk):
        stop = start + d2.shape[0]
        nearest2 = torch.minimum(nearest2, d2.min(0).values)
        near = (d2 <= r_grow2[None]) | (d2 <= s_grow2[start:stop, None])
        j_t, i_t = torch.nonzero(near, as_tuple=True)
        dist = d2[j_t, i_t].sqrt().cpu().numpy()
        j, i = j_t.cpu().numpy() + start, i_t.cpu().numpy()
        in_pr, in_dc, in_rec = dist <= r_pr[i], dist <= r_dc[i], dist <= s_pr[j]
        cnt_pr += np.bincount(j[in_pr] * groups + gr[i[in_pr]], minlength=len(cnt_pr))
        cnt_dc += np.bincount(j[in_dc] * groups + gr[i[in_dc]], minlength=len(cnt_dc))
        cnt_rec += np.bincount(i[in_rec] * groups + gf[j[in_rec]], minlength=len(cnt_rec))
        cnt_cov += np.bincount(i[in_dc] * groups + gf[j[in_dc]], minlength=len(cnt_cov))
        if not approximate:
            for band, out in (((dist <= r_grow[i]) & ~in_pr, grow_r),
                              ((dist <= s_grow[j]) & ~in_rec, grow_f)):
                stored += int(band.sum())
                if stored > MAX_GROWTH_PAIRS:
                    approximate = True
                    grow_r.clear()
                    grow_f.clear()
                    break
                out.append(np.stack([j[band], i[band], dist[band]]))
    cnt_pr_g, cnt_dc_g = cnt_pr.reshape(n_fake, groups), cnt_dc.reshape(n_fake, groups)
    cnt_rec_np, cnt_cov_np = cnt_rec.reshape(n_real, groups), cnt_cov.reshape(n_real, groups)
    nearest_np = nearest2.sqrt().cpu().numpy()

    prec_j = cnt_pr_g.sum(1) > 0  # (M,)
    dens_j = cnt_dc_g.sum(1) / k_dc  # (M,)
    rec_i = cnt_rec_np.sum(1) > 0  # (N,)
    cov_i = nearest_np <= r_dc  # (N,)
    values = {"precision": float(prec_j.mean()), "recall": float(rec_i.mean()),
              "density": float(dens_j.mean()), "coverage": float(cov_i.mean())}

    def pairs(chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not chunks:
            return (np.empty(0, np.int64),) * 2 + (np.empty(0),)
        a = np.concatenate(chunks, axis=1)
        return a[0].astype(np.int64), a[1].astype(np.int64), a[2]

    gj, gi, gd = pairs(grow_r)  # real-radius growth pairs
    fj, fi, fd = pairs(grow_f)  # fake-radius growth pairs
    real_rep: dict[str, list[float]] = {k: [] for k in values}
    fake_rep: dict[str, list[float]] = {k: [] for k in values}
    for g in range(groups):
        # ---- real group g left out: its balls vanish, the other real radii grow
        keep_r = gr != g
        cov_pr = cnt_pr_g.sum(1) - cnt_pr_g[:, g] > 0
        dens = cnt_dc_g.sum(1) - cnt_dc_g[:, g]
        sel = keep_r[gi]
        jj, ii, dd = gj[sel], gi[sel], gd[sel]
        newly = dd <= r_pr_g[g, ii]
        cov_pr = cov_pr.copy()
        cov_pr[jj[newly]] = True
        grown_dc = (dd <= r_dc_g[g, ii]) & (dd > r_dc[ii])
        dens = dens + np.bincount(jj[grown_dc], minlength=n_fake)
        real_rep["precision"].append(float(cov_pr.mean()))
        real_rep["density"].append(float(dens.mean() / k_dc))
        real_rep["recall"].append(float(rec_i[keep_r].mean()))
        real_rep["coverage"].append(float((nearest_np[keep_r] <= r_dc_g[g, keep_r]).mean()))
        # ---- fake group g left out: its points and balls vanish, other fake radii grow
        keep_f = gf != g
        rec = cnt_rec_np.sum(1) - cnt_rec_np[:, g] > 0
        sel = keep_f[fj]
        jj, ii, dd = fj[sel], fi[sel], fd[sel]
        rec = rec.copy()
        rec[ii[dd <= s_pr_g[g, jj]]] = True
        fake_rep["recall"].append(float(rec.mean()))
        fake_rep["coverage"].append(float((cnt_cov_np.sum(1) - cnt_cov_np[:, g] > 0).mean()))
        fake_rep["precision"].append(float(prec_j[keep_f].mean()))
        fake_rep["density"].append(float(dens_j[keep_f].mean()))
    return PRDCResult(values=values,
                      real_replicates={k: np.array(v) for k, v in real_rep.items()},
                      fake_replicates={k: np.array(v) for k, v in fake_rep.items()},
                      density_terms=dens_j, covered=cov_i, approximate=approximate)
