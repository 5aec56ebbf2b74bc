"""Nearest-neighbour search: exact, chunked, vectorised with torch matrix products.

Memory is ``O(chunk * m)`` for ``m`` reference points, never ``O(n * m)``: queries are
processed ``chunk`` at a time, and only the ``k`` smallest distances of each are kept.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["DEFAULT_CHUNK", "knn", "squared_distance_blocks"]

DEFAULT_CHUNK = 1024


def squared_distance_blocks(q: torch.Tensor, r: torch.Tensor, *, chunk: int = DEFAULT_CHUNK,
                            snap: float | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, d2)``: the ``(B, m)`` squared Euclidean distances from the queries
    ``q[start:start + B]`` to all of ``r``, one block of ``chunk`` queries at a time (memory
    ``O(chunk * m)``), as ``|r|^2 - 2 q.r + |q|^2`` built in the product's own buffer.

    Centre both sets (on the reference mean) before calling: the expansion then loses far
    less precision on off-centre data. Negative round-off is clipped to 0; with ``snap``,
    values below ``snap * (|q|^2 + |r|^2)`` (the round-off of an exact duplicate) become 0.
    This is the one distance kernel of every k-NN statistic in gmbench.
    """
    r_sq = (r * r).sum(1)  # (m,)
    r_max = float(r_sq.max()) if len(r_sq) else 0.0
    for start in range(0, q.shape[0], chunk):
        qb = q[start:start + chunk]  # (B, d)
        q_sq = (qb * qb).sum(1, keepdim=True)  # (B, 1)
        d2 = torch.addmm(r_sq[None], qb, r.T, alpha=-2.0).add_(q_sq)  # (B, m)
        if snap is None:
            d2.clamp_min_(0)
        else:
            # only entries below the block's largest threshold can snap: find those (one
            # cheap pass; usually none or few), then apply each entry's own threshold
            low = d2 <= snap * (float(q_sq.max()) + r_max)
            if bool(low.any()):
                j, i = torch.nonzero(low, as_tuple=True)
                vals = d2[j, i]
                d2[j, i] = torch.where(vals <= (q_sq[j, 0] + r_sq[i]) * snap, 0.0, vals)
        yield start, d2


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
    dist = np.empty((n, k), dtype=np.float64)
    index = np.empty((n, k), dtype=np.int64)
    for start, d2 in squared_distance_blocks(q, r, chunk=chunk):
        stop = start + d2.shape[0]
        if exclude_self:
            rows = torch.arange(d2.shape[0], device=device)
            d2[rows, rows + start] = torch.inf
        vals, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        dist[start:stop] = vals.sqrt_().double().cpu().numpy()
        index[start:stop] = idx.cpu().numpy()
    return dist, index
