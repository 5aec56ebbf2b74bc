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

Memory is ``O(chunk * N)``: distances are computed ``chunk`` fakes at a time and reduced at
once, never stored as an ``M x N`` matrix. Squared distances use the expansion
``|a|^2 + |b|^2 - 2 a.b`` on features centred at the real mean, in float64 by default;
values below ``1e-10 (|a|^2 + |b|^2)`` (round-off of an exact duplicate) are set to 0.

References:
    Naeem, Oh, Uh, Choi, Yoo, "Reliable Fidelity and Diversity Metrics for Generative
    Models", ICML 2020 (https://github.com/clovaai/generative-evaluation-prdc).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DensityCoverage", "density_coverage", "kth_neighbor_radius"]

DEFAULT_CHUNK = 1024
SNAP = 1e-10  # relative round-off below which a squared distance is an exact duplicate


def _tensor(x: np.ndarray | torch.Tensor, center: torch.Tensor | None, device: str,
            dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.reshape(t.shape[0], -1).to(device=device, dtype=dtype)
    return t - center if center is not None else t


def _sq_dist_blocks(q: torch.Tensor, r: torch.Tensor, chunk: int
                    ) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, d2)`` with ``d2`` the ``(B, m)`` squared distances of a query block."""
    r_sq = (r * r).sum(1)  # (m,)
    for start in range(0, q.shape[0], chunk):
        qb = q[start:start + chunk]  # (B, d)
        scale = (qb * qb).sum(1, keepdim=True) + r_sq[None]  # (B, m): |a|^2 + |b|^2
        d2 = torch.addmm(scale, qb, r.T, alpha=-2.0)  # (B, m)
        d2.masked_fill_(d2 <= scale.mul_(SNAP), 0.0)  # in place: memory stays O(B * m)
        yield start, d2


def kth_neighbor_radius(real: np.ndarray | torch.Tensor, *, k: int, chunk: int = DEFAULT_CHUNK,
                        device: str = "cpu", dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Distance from each real point to its ``k``-th nearest other real point, ``(N,)``.

    The point's own index is excluded; exact duplicates of it count as neighbours at 0.
    """
    x = _tensor(real, None, device, dtype)
    x = x - x.mean(0)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k = {k} neighbours need at least {k + 1} real points, got {n}")
    out = np.empty(n, dtype=np.float64)
    for start, d2 in _sq_dist_blocks(x, x, chunk):
        rows = torch.arange(d2.shape[0], device=device)
        d2[rows, rows + start] = torch.inf
        out[start:start + d2.shape[0]] = d2.topk(k, dim=1, largest=False).values[:, -1].sqrt(
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
    center = r_real.mean(0)
    r_real = r_real - center
    q_fake = _tensor(fake, center, device, dtype)
    if radii is None:
        radii = kth_neighbor_radius(real, k=k, chunk=chunk, device=device, dtype=dtype)
    r2 = torch.as_tensor(radii, device=device, dtype=dtype) ** 2  # (N,)
    counts = np.empty(q_fake.shape[0], dtype=np.float64)
    nearest = torch.full((r_real.shape[0],), torch.inf, device=device, dtype=dtype)  # (N,)
    for start, d2 in _sq_dist_blocks(q_fake, r_real, chunk):
        counts[start:start + d2.shape[0]] = (d2 <= r2[None]).sum(1).double().cpu().numpy()
        nearest = torch.minimum(nearest, d2.min(0).values)
    covered = (nearest <= r2).cpu().numpy()
    return DensityCoverage(density_terms=counts / k, covered=covered, k=k)
