"""The Wang–Kulkarni–Verdú k-nearest-neighbour estimators of ``KL(P||Q)`` from two samples,
with a delete-a-group jackknife over either sample.

References:
    Wang, Kulkarni & Verdú, "Divergence estimation for multidimensional densities via
    k-nearest-neighbor distances", IEEE Trans. Inf. Theory 55(5), 2009.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from gmbench.estimators.neighbours import DEFAULT_CHUNK, squared_distance_blocks, topk_rows
from gmbench.estimators.prdc import jackknife_se
from gmbench.estimators.uncertainty import Estimate

__all__ = ["WKVResult", "knn_dimension_warning", "wkv_kl_knn"]

def _ball_statistics(d2: torch.Tensor, top: torch.Tensor, eps2: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: points with squared distance ``<= eps2`` and the largest such squared distance.

    ``top`` holds the ``K`` smallest squared distances of each row of ``d2`` (sorted); rows
    whose ball holds all ``K`` of them are recounted on the full row.
    """
    inside = top <= eps2[:, None]  # (B, K)
    count = inside.sum(1)
    far = torch.where(inside, top, torch.zeros_like(top)).amax(1)
    full = torch.nonzero(count == top.shape[1]).flatten()
    if full.numel():
        rows = d2[full]
        inside_rows = rows <= eps2[full, None]
        count[full] = inside_rows.sum(1)
        far[full] = torch.where(inside_rows, rows, torch.zeros_like(rows)).amax(1)
    return count, far


@dataclass(frozen=True)
class _WKVLists:
    """Per ``P`` point: its sorted nearest ``Q`` distances and indices ``(n, K)`` and its
    sorted nearest other ``P`` distances and indices ``(n, Kp)`` (what the jackknife recounts
    from)."""

    q_dist: np.ndarray
    q_idx: np.ndarray
    p_dist: np.ndarray
    p_idx: np.ndarray


def _wkv_distances(x: torch.Tensor, y: torch.Tensor, *, k: int, keep: int, chunk: int
                   ) -> tuple[np.ndarray, _WKVLists]:
    """One chunked pass over ``x`` as queries: ``rho_k, nu_k`` (the ``k``-th neighbour
    distances in ``x`` minus the query, and in ``y``), then the adaptive counts ``k_i, l_i`` of
    points within ``eps = max(rho_k, nu_k)`` and the largest distances inside that ball; and
    the ``keep`` nearest neighbours of each query in both sets.

    Computing the ball statistics from the same distance block as the neighbours keeps them
    consistent bit for bit (the ``k``-th neighbour is always inside its own ball). Memory is
    ``O(chunk * (n + m))``.

    Returns:
        ``(6, n)`` float64: ``rho_k, nu_k, k_i, l_i, rho_{k_i}, nu_{l_i}``, and the lists.
    """
    n, m = x.shape[0], y.shape[0]
    kx, ky = min(max(keep, k), n - 1), min(max(keep, k), m)
    out = np.empty((6, n), dtype=np.float64)
    q_dist = np.empty((n, ky), dtype=np.float64)
    q_idx = np.empty((n, ky), dtype=np.int64)
    p_dist = np.empty((n, kx), dtype=np.float64)
    p_idx = np.empty((n, kx), dtype=np.int64)
    blocks = zip(squared_distance_blocks(x, x, chunk=chunk),
                 squared_distance_blocks(x, y, chunk=chunk), strict=True)
    for (start, dxx), (_, dxy) in blocks:  # (B, n), (B, m)
        rows = torch.arange(dxx.shape[0])
        dxx[rows, rows + start] = torch.inf  # a point is not its own neighbour
        top_x, idx_x = topk_rows(dxx, kx, largest=False)
        top_y, idx_y = topk_rows(dxy, ky, largest=False)
        rho2, nu2 = top_x[:, k - 1], top_y[:, k - 1]
        eps2 = torch.maximum(rho2, nu2)
        k_i, rho_ball = _ball_statistics(dxx, top_x, eps2)
        l_i, nu_ball = _ball_statistics(dxy, top_y, eps2)
        block = torch.stack([rho2.sqrt(), nu2.sqrt(), k_i.to(rho2.dtype), l_i.to(rho2.dtype),
                             rho_ball.sqrt(), nu_ball.sqrt()])
        stop = start + dxx.shape[0]
        out[:, start:stop] = block.double().numpy()
        q_dist[start:stop] = top_y.sqrt().double().numpy()
        q_idx[start:stop] = idx_y.numpy()
        p_dist[start:stop] = top_x.sqrt().double().numpy()
        p_idx[start:stop] = idx_x.numpy()
    return out, _WKVLists(q_dist, q_idx, p_dist, p_idx)


def _wkv_terms(d: int, rho_ball: np.ndarray, nu_ball: np.ndarray, k_i: np.ndarray,
               l_i: np.ndarray, floor: float) -> np.ndarray:
    """Bias-corrected terms ``d log(nu_l / rho_k) + psi(k_i) - psi(l_i)``."""
    return (d * (np.log(np.maximum(nu_ball, floor)) - np.log(np.maximum(rho_ball, floor)))
            + special.digamma(k_i) - special.digamma(l_i))


@dataclass(frozen=True)
class WKVResult:
    """Per-point terms of the Wang–Kulkarni–Verdú estimators; ``KL = mean(terms) + offset``.

    Attributes:
        terms: ``(n,)`` bias-corrected terms ``d log(nu_l / rho_k) + psi(k_i) - psi(l_i)``
            with the adaptive neighbour counts (WKV 2009, section III-B, the reported value).
        terms_fixed_k: ``(n,)`` fixed-``k`` terms ``d log(nu_k / rho_k)`` (WKV 2009, eq. 5).
        offset: ``log(m / (n - 1))``.
        k: the neighbour count.
        dim: the dimension ``d``.
        zero_distances: distances that were 0 (duplicates) and were floored.
        largest_atom: the most copies of one point in the ``Q`` sample (1: no duplicates).
        base: ``(6, n)`` ``rho_k, nu_k, k_i, l_i, rho_{k_i}, nu_{l_i}``.
        lists: nearest-neighbour lists for the jackknife.
        floor: the distance floor applied before logarithms.
        n_q: the size ``m`` of the ``Q`` sample.
    """

    terms: np.ndarray
    terms_fixed_k: np.ndarray
    offset: float
    k: int
    dim: int
    zero_distances: int
    largest_atom: int = 1
    base: np.ndarray | None = None
    lists: _WKVLists | None = None
    floor: float = 1e-12
    n_q: int = 0

    @property
    def value(self) -> float:
        return float(self.terms.mean() + self.offset)

    @property
    def value_fixed_k(self) -> float:
        return float(self.terms_fixed_k.mean() + self.offset)

    @property
    def atoms(self) -> bool:
        """Whether the ``Q`` sample holds a point repeated more than ``k`` times: ``Q`` then
        has atoms (a collapsed or replaying model), ``KL(P||Q)`` for a continuous ``P`` is
        not defined by densities, and the k-NN estimator's assumptions fail."""
        return self.largest_atom > self.k

    def _replicate_value(self, p_out: np.ndarray, q_out: np.ndarray) -> float:
        """The bias-corrected estimate with the ``P`` points flagged in ``p_out`` ``(n,)`` and
        the ``Q`` points flagged in ``q_out`` ``(m,)`` left out: every remaining ``P`` point's
        radii, ball and neighbour counts recomputed from its sorted neighbour lists."""
        assert self.base is not None and self.lists is not None
        _, _, k_base, l_base, rho_ball_base, nu_ball_base = self.base
        q_dist, p_dist = self.lists.q_dist, self.lists.p_dist
        keep_q = ~q_out[self.lists.q_idx]  # (n, K)
        keep_p = ~p_out[self.lists.p_idx]  # (n, Kp)
        kk = self.k
        rows = np.arange(len(q_dist))

        def kth(dist: np.ndarray, keep: np.ndarray) -> np.ndarray:
            count = np.cumsum(keep, axis=1)
            pos = (count >= kk).argmax(axis=1)
            return np.where(count[:, -1] >= kk, dist[rows, pos], dist[:, -1])

        rho_k, nu_k = kth(p_dist, keep_p), kth(q_dist, keep_q)
        eps = np.maximum(rho_k, nu_k)

        def ball(dist: np.ndarray, keep: np.ndarray, count_base: np.ndarray,
                 far_base: np.ndarray, removed_fraction: float) -> tuple[np.ndarray, np.ndarray]:
            inside = (dist <= eps[:, None]) & keep
            count = inside.sum(1).astype(np.float64)
            far = np.where(inside, dist, 0.0).max(1)
            # a ball reaching past the list: the unlisted points thin out like the rest
            past = dist[:, -1] <= eps
            count = np.where(past, np.maximum(count, count_base * (1 - removed_fraction)),
                             count)
            far = np.where(past, np.maximum(far, far_base), far)
            return np.maximum(count, 1), far

        k_i, rho_ball = ball(p_dist, keep_p, k_base, rho_ball_base, float(p_out.mean()))
        l_i, nu_ball = ball(q_dist, keep_q, l_base, nu_ball_base, float(q_out.mean()))
        terms = _wkv_terms(self.dim, rho_ball, nu_ball, k_i, l_i, self.floor)
        n_keep, m_keep = int((~p_out).sum()), int((~q_out).sum())
        return float(terms[~p_out].mean() + math.log(m_keep / (n_keep - 1)))

    def jackknife(self, *, seed: int, groups: int = 10) -> tuple[float, float]:
        """Delete-a-group jackknife standard errors ``(se_P, se_Q)``: each of ``groups``
        groups of ``P`` points, then of ``Q`` points, is left out in turn and the estimate
        recomputed (radii, balls and neighbour counts of every remaining point recounted)."""
        n, m = len(self.terms), self.n_q
        if self.base is None or self.lists is None:
            return math.nan, math.nan
        rng = np.random.default_rng(seed)
        gp, gq = rng.permutation(n) % groups, rng.permutation(m) % groups
        none_p, none_q = np.zeros(n, bool), np.zeros(m, bool)
        p_side = [self._replicate_value(gp == g, none_q) for g in range(groups)]
        q_side = [self._replicate_value(none_p, gq == g) for g in range(groups)]
        return jackknife_se(np.array(p_side)), jackknife_se(np.array(q_side))

    def estimate(self, *, seed: int, groups: int = 10, both_sets: bool = False) -> Estimate:
        """The bias-corrected value with a normal interval from the jackknife standard error
        (:meth:`jackknife`) of the ``Q`` sample (what changes between runs when ``P`` is a
        fixed test split), or of both sets in quadrature (``both_sets=True``)."""
        se_p, se_q = self.jackknife(seed=seed, groups=groups)
        se = math.hypot(se_p, se_q) if both_sets else se_q
        which = "both sets" if both_sets else "the Q sample (P fixed)"
        return Estimate.normal(self.value, se, n=len(self.terms),
                        method=f"normal, delete-a-group jackknife stderr over {which} ({groups} "
                        "groups, neighbours recounted)")


def wkv_kl_knn(x: np.ndarray, y: np.ndarray, *, k: int = 5, chunk: int = DEFAULT_CHUNK,
               keep: int = 32) -> WKVResult:
    """Wang–Kulkarni–Verdú k-NN estimate of ``KL(P||Q)`` in nats from ``x ~ P`` and ``y ~ Q``.

    Fixed ``k`` (eq. 5): ``D = d/n sum_i log(nu_k(i) / rho_k(i)) + log(m / (n-1))``, where
    ``rho_k(i)`` is the distance from ``x_i`` to its ``k``-th nearest other point of ``x``
    and ``nu_k(i)`` to its ``k``-th nearest point of ``y``.

    Bias-corrected (section III-B, adaptive ``k``): with ``eps(i) = max(rho_k(i), nu_k(i))``,
    ``k_i`` points of ``x`` and ``l_i`` points of ``y`` lie within ``eps(i)``, and
    ``D = d/n sum_i log(nu_{l_i}(i) / rho_{k_i}(i)) + 1/n sum_i (psi(k_i) - psi(l_i))
    + log(m / (n-1))``. Measuring both densities on (nearly) the same ball cancels the
    first-order bias from density variation inside the balls.

    Args:
        x: ``(n, d)`` sample of ``P``.
        y: ``(m, d)`` sample of ``Q``.
        k: neighbours.
        chunk: queries per block; memory ``O(chunk * (n + m))``.
        keep: neighbours kept per point for the jackknife.

    References:
        Wang, Kulkarni & Verdú, IEEE Trans. Inf. Theory 55(5):2392-2405, 2009.
    """
    xf = np.asarray(x, np.float32).reshape(len(x), -1)
    yf = np.asarray(y, np.float32).reshape(len(y), -1)
    xt, yt = torch.as_tensor(xf), torch.as_tensor(yf)
    n, d = xt.shape
    m = yt.shape[0]
    if not 1 <= k < n or k > m:
        raise ValueError(f"k = {k} needs more than k points of P ({n}) and at least k of Q ({m})")
    center = xt.mean(0)  # distances are shift-invariant; centring limits float32 cancellation
    base, lists = _wkv_distances(xt - center, yt - center, k=k, keep=max(keep, 4 * k),
                                 chunk=chunk)
    rho, nu, k_i, l_i, rho_adapt, nu_adapt = base
    positive = np.concatenate([rho, nu])
    positive = positive[positive > 0]
    floor = 1e-6 * float(np.median(positive)) if positive.size else 1e-12
    zeros = int((rho <= 0).sum() + (nu <= 0).sum())
    fixed = d * (np.log(np.maximum(nu, floor)) - np.log(np.maximum(rho, floor)))
    corrected = _wkv_terms(int(d), rho_adapt, nu_adapt, k_i, l_i, floor)
    _, counts = np.unique(yf, axis=0, return_counts=True)
    return WKVResult(terms=corrected, terms_fixed_k=fixed, offset=math.log(m / (n - 1)), k=k,
                     dim=int(d), zero_distances=zeros, largest_atom=int(counts.max()),
                     base=base, lists=lists, floor=floor, n_q=m)


def knn_dimension_warning(dim: int, n: int) -> str | None:
    """A warning when ``dim`` is large for ``n`` points: k-NN estimators converge at a rate
    that degrades like ``n^(-1/d)``; beyond ``d > 2 log10(n)`` (8 dims at 10k points) the
    bias can dominate and the value is best read as a relative score."""
    if dim > 2 * math.log10(max(n, 2)):
        return (f"dimension {dim} is high for {n} points (rule of thumb: d <= 2 log10(n) = "
                f"{2 * math.log10(max(n, 2)):.1f}); k-NN KL estimates are then strongly biased and "
                "the bootstrap interval does not include that bias: compare models with it "
                "(same feature space and n), do not read it as the KL divergence")
    return None
