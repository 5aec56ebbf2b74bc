"""Nearest-neighbour search: exact, chunked, vectorised with torch matrix products.

Memory is ``O(chunk * m)`` for ``m`` reference points, never ``O(n * m)``: queries are
processed ``chunk`` at a time, and only the ``k`` smallest distances of each are kept.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["DEFAULT_CHUNK", "knn", "kth_neighbor_distance"]

DEFAULT_CHUNK = 1024


def _as_tensor(x: np.ndarray | torch.Tensor, device: str, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    return t.reshape(t.shape[0], -1).to(device=device, dtype=dtype)


def knn(queries: np.ndarray | torch.Tensor, refs: np.ndarray | torch.Tensor, *, k: int = 1,
        exclude_self: bool = False, chunk: int = DEFAULT_CHUNK, device: str = "cpu",
        dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest references (Euclidean) of every query.

    Args:
        queries: ``(n, ...)``, flattened to ``(n, d)``.
        refs: ``(m, ...)``, flattened to ``(m, d)``.
        k: neighbours per query.
        exclude_self: ``queries`` *is* ``refs``; a point is not its own neighbour (its own
            index is excluded, not merely distance zero, so exact duplicates still count).
        chunk: queries per block.
        device, dtype: where and in what precision to compute.

    Returns:
        ``(distances, indices)``, each ``(n, k)``, sorted by distance; distances as float64.
    """
    r = _as_tensor(refs, device, dtype)
    # Centre both sets on the references' mean: distances are unchanged, but the expansion
    # |q|^2 + |r|^2 - 2 q.r then loses far less precision on off-centre data.
    center = r.mean(0, keepdim=True)
    r = r - center
    q = _as_tensor(queries, device, dtype) - center
    n, m = q.shape[0], r.shape[0]
    kk = k + 1 if exclude_self else k
    if kk > m:
        raise ValueError(f"k = {k} neighbours requested from {m} reference points")
    r_sq = (r * r).sum(1)  # (m,)
    dist = np.empty((n, k), dtype=np.float64)
    index = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        qb = q[start:start + chunk]  # (B, d)
        # |q|^2 + |r|^2 - 2 q.r, built in place in the one (B, m) buffer the product makes
        d2 = (qb @ r.T).mul_(-2.0).add_(r_sq[None]).add_((qb * qb).sum(1, keepdim=True))
        if exclude_self:
            rows = torch.arange(qb.shape[0], device=device)
            d2[rows, rows + start] = torch.inf
        vals, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        dist[start:start + qb.shape[0]] = vals.clamp_min_(0).sqrt_().double().cpu().numpy()
        index[start:start + qb.shape[0]] = idx.cpu().numpy()
    return dist, index


def kth_neighbor_distance(x: np.ndarray | torch.Tensor, k: int, **kwargs) -> np.ndarray:
    """Distance from each point of ``x`` to its ``k``-th nearest *other* point, ``(n,)``."""
    return knn(x, x, k=k, exclude_self=True, **kwargs)[0][:, -1]
