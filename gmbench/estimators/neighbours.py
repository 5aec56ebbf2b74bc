"""Nearest-neighbour search: exact, chunked, vectorised with torch matrix products.

Memory is ``O(chunk * m)`` for ``m`` reference points, never ``O(n * m)``: queries are
processed ``chunk`` at a time, and only the ``k`` smallest distances of each are kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch

from gmbench.core.device import cpu_kernels

__all__ = ["DEFAULT_CHUNK", "distance_block", "knn", "squared_distance_blocks", "topk_rows"]

DEFAULT_CHUNK = 1024
# A distance block holds at most this many entries (64 MB in float32 or int32): against the
# 60,000 training images a block is 279 queries, not 1,024 (a 245 MB block, held twice
# where a fresh product meets the buffer, raised the peak memory of a cold evaluation);
# the matrix products stay large enough to run at the same throughput.
BLOCK_ENTRIES = 2**24
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # int8 dot-product units
GROUP = 64  # columns per group in `topk_rows`


def topk_rows(x: torch.Tensor, k: int, *, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(x, k, dim=1, largest=largest, sorted=True)`` of a 2-D ``x`` with rows
    much longer than ``k``, about 3x faster: the ``k`` best entries of a row lie in at most
    ``k`` groups of :data:`GROUP` consecutive columns, those whose own best entry ranks in
    the top ``k`` among the groups' bests; one reduction finds the groups' bests, and the
    top-k runs on the ``k * GROUP`` columns of the chosen groups only (plus the ragged
    tail). The same values; among exactly tied entries, the index kept may differ."""
    rows, m = x.shape
    full = (m // GROUP) * GROUP
    if full < 8 * k * GROUP or x.stride(1) != 1:
        return torch.topk(x, k, dim=1, largest=largest, sorted=True)
    groups = x.as_strided((rows, full // GROUP, GROUP), (x.stride(0), GROUP, 1))
    best = groups.amax(2) if largest else groups.amin(2)  # (rows, groups)
    chosen = torch.topk(best, k, dim=1, largest=largest, sorted=False).indices  # (rows, k)
    offsets = torch.arange(GROUP, device=x.device)
    cols = (chosen[:, :, None] * GROUP + offsets).reshape(rows, k * GROUP)
    if full < m:
        tail = torch.arange(full, m, device=x.device).expand(rows, m - full)
        cols = torch.cat([cols, tail], 1)
    vals, pos = torch.topk(torch.gather(x, 1, cols), k, dim=1, largest=largest, sorted=True)
    return vals, torch.gather(cols, 1, pos)


def squared_distance_blocks(q: torch.Tensor, r: torch.Tensor, *, chunk: int = DEFAULT_CHUNK,
                            snap: float | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, d2)``: the ``(B, m)`` squared Euclidean distances from the queries
    ``q[start:start + B]`` to all of ``r``, one block of ``chunk`` queries at a time (fewer
    against a large ``r``: at most :data:`BLOCK_ENTRIES` entries; memory ``O(chunk * m)``), as ``|r|^2 - 2 q.r + |q|^2`` built in the product's own buffer.

    Every block is written into one buffer allocated once: consume (or copy) a block before
    asking for the next. A fresh ``(chunk, m)`` array per block cost more in page faults than
    its arithmetic (benchmarks/bench_neighbors.py).

    Centre both sets (on the reference mean) before calling: the expansion then loses far
    less precision on off-centre data. Negative round-off is clipped to 0; with ``snap``,
    values below ``snap * (|q|^2 + |r|^2)`` (the round-off of an exact duplicate) become 0.
    This is the one distance kernel of every k-NN statistic in gmbench.
    """
    chunk = _block_rows(chunk, r.shape[0])
    r_sq = (r * r).sum(1)  # (m,)
    r_max = float(r_sq.max()) if len(r_sq) else 0.0
    buffer = torch.empty((min(chunk, q.shape[0]), r.shape[0]), dtype=q.dtype, device=q.device)
    for start in range(0, q.shape[0], chunk):
        qb = q[start:start + chunk]  # (B, d)
        q_sq = (qb * qb).sum(1, keepdim=True)  # (B, 1)
        d2 = distance_block(qb, q_sq, r, r_sq, out=buffer[:qb.shape[0]])  # (B, m)
        if snap is None:
            d2.clamp_min_(0)
        else:
            _snap_block(d2, q_sq, r_sq, snap, bound=snap * (float(q_sq.max()) + r_max))
        yield start, d2


def _snap_block(d2: torch.Tensor, q_sq: torch.Tensor, r_sq: torch.Tensor, snap: float, *,
                bound: float) -> None:
    """Set to 0 the entries of ``d2`` ``(B, m)`` at or below ``snap * (|q|^2 + |r|^2)``.

    Only entries at or below ``bound`` (the block's largest threshold) can snap, and there are
    few: the diagonal of a set against itself, exact duplicates, negative round-off. One
    reduction finds the minimum of each group of :data:`GROUP` consecutive columns; only the
    groups whose minimum is at or below ``bound`` are compared entry by entry. A full
    comparison (a boolean block, then its nonzero entries) cost 3x the matrix product."""
    rows, m = d2.shape
    full = (m // GROUP) * GROUP
    if d2.stride(1) != 1 or full == 0:
        j, i = torch.nonzero(d2 <= bound, as_tuple=True)
    else:
        groups = d2.as_strided((rows, full // GROUP, GROUP), (d2.stride(0), GROUP, 1))
        jg, g = torch.nonzero(groups.amin(2) <= bound, as_tuple=True)
        j = jg.repeat_interleave(GROUP)
        i = (g[:, None] * GROUP + torch.arange(GROUP, device=d2.device)).reshape(-1)
        if full < m:
            jt, it = torch.nonzero(d2[:, full:] <= bound, as_tuple=True)
            j, i = torch.cat([j, jt]), torch.cat([i, it + full])
    if len(j):
        vals = d2[j, i]
        d2[j, i] = torch.where(vals <= (q_sq[j, 0] + r_sq[i]) * snap, 0.0, vals)


def distance_block(qb: torch.Tensor, q_sq: torch.Tensor, r: torch.Tensor, r_sq: torch.Tensor,
                   *, out: torch.Tensor) -> torch.Tensor:
    """``|r|^2 - 2 q.r + |q|^2`` of the queries ``qb`` ``(B, d)`` (squared norms ``q_sq``
    ``(B, 1)``) to ``r`` ``(m, d)`` (``r_sq`` ``(m,)``), written into ``out`` ``(B, m)``: the
    expansion every distance in gmbench uses, round-off not yet clipped."""
    return torch.addmm(r_sq[None], qb, r.T, alpha=-2.0, out=out).add_(q_sq)


def _block_rows(chunk: int, m: int) -> int:
    """Queries per block: ``chunk``, fewer where a ``(chunk, m)`` block would exceed
    :data:`BLOCK_ENTRIES` (never under 32 rows)."""
    return max(1, min(chunk, max(32, BLOCK_ENTRIES // max(m, 1))))


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
        chunk: queries per block (at most; fewer against large ``refs``, see
            :data:`BLOCK_ENTRIES`).
        device, dtype: where and in what precision to compute.

    Returns:
        ``(distances, indices)``, each ``(n, k)``, sorted by distance; distances as float64.
        Integer arrays whose values span at most 256 levels (pixels) are searched exactly in
        integer arithmetic on the CPU (:func:`_knn_integer`), else in ``dtype``.
    """
    chunk = _block_rows(chunk, len(refs))
    if device == "cpu" and isinstance(queries, np.ndarray) and isinstance(refs, np.ndarray) \
            and _small_integers(queries, refs):
        return _knn_integer(queries, refs, k=k, exclude_self=exclude_self, chunk=chunk)
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
    # The search ranks s = 2 q.r - |r|^2 (the negated distance less the query's constant
    # |q|^2), one GEMM into a buffer allocated once, then a top-k; |q|^2 is added to the k
    # kept only. Bitwise the distances of `squared_distance_blocks`: -(s) + |q|^2 is the same
    # rounding of the same terms (benchmarks/bench_neighbors.py: the search against the
    # matrix product alone).
    neg_r_sq = -(r * r).sum(1)  # (m,)
    buffer = torch.empty((min(chunk, n), m), dtype=r.dtype, device=r.device)
    for start in range(0, n, chunk):
        qb = q[start:start + chunk]  # (B, d)
        rows = qb.shape[0]
        s = torch.addmm(neg_r_sq[None], qb, r.T, alpha=2.0, out=buffer[:rows])  # (B, m)
        if exclude_self:
            own = torch.arange(rows, device=r.device)
            s[own, own + start] = -torch.inf
        vals, idx = topk_rows(s, k, largest=True)
        d2 = ((qb * qb).sum(1, keepdim=True) - vals).clamp_min_(0)  # (B, k)
        dist[start:start + rows] = d2.sqrt_().double().cpu().numpy()
        index[start:start + rows] = idx.cpu().numpy()
    return dist, index


def _small_integers(*arrays: np.ndarray) -> bool:
    """Whether every array is integer-typed, non-empty, and all values span at most 256
    levels together (they then fit int8 after one shift)."""
    if not all(a.dtype.kind in "iub" and a.size for a in arrays):
        return False
    low = min(int(a.min()) for a in arrays)
    high = max(int(a.max()) for a in arrays)
    dim = int(np.prod(arrays[0].shape[1:]))
    return high - low <= 255 and dim * 2 * 128 * 128 < 2**31  # int32 products cannot overflow


def _knn_integer(queries: np.ndarray, refs: np.ndarray, *, k: int, exclude_self: bool,
                 chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knn` of integer data spanning at most 256 levels, exact: values shifted into
    int8 (distances are unchanged by a shift), products ``q.r`` exact in int32
    (:func:`_integer_products`: an int8 matrix product on CPUs with int8 dot-product units,
    about 3x float32's throughput at d = 784 there; an exact float one elsewhere),
    ``|q - r|^2 = |q|^2 + |r|^2 - 2 q.r`` without any rounding."""
    low = min(int(queries.min()), int(refs.min()))

    def int8(a: np.ndarray) -> torch.Tensor:
        flat = torch.as_tensor(a.reshape(len(a), -1).astype(np.int16) - (low + 128))
        return flat.to(torch.int8)

    q, r = int8(queries), int8(refs)
    n, m = q.shape[0], r.shape[0]
    if (k + 1 if exclude_self else k) > m:
        raise ValueError(f"k = {k} neighbours requested from {m} reference points")
    r_sq = r.to(torch.int32).square().sum(1, dtype=torch.int32)  # (m,)
    dist = np.empty((n, k), dtype=np.float64)
    index = np.empty((n, k), dtype=np.int64)
    buffer = torch.empty((max(min(chunk, n), 17), m), dtype=torch.int32)
    products = _integer_products(r)
    for start in range(0, n, chunk):
        qb = q[start:start + chunk]  # (B, d)
        rows = qb.shape[0]
        s = products(qb, buffer).mul_(2).sub_(r_sq)  # 2 q.r - |r|^2, (B, m) int32
        if exclude_self:
            own = torch.arange(rows)
            s[own, own + start] = torch.iinfo(torch.int32).min
        vals, idx = topk_rows(s, k, largest=True)
        q_sq = qb.to(torch.int64).square().sum(1, keepdim=True)  # (B, 1)
        dist[start:start + rows] = (q_sq - vals.to(torch.int64)).double().sqrt().numpy()
        index[start:start + rows] = idx.numpy()
    return dist, index


@functools.cache
def _int8_kernel_is_fast() -> bool:
    """Whether the CPU has int8 dot-product units (VNNI, AMX): without them torch's int8
    matrix product runs some 20 times slower than a float32 one."""
    return bool(set(cpu_kernels().split()) & INT8_DOT_FLAGS)


def _integer_products(r: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``products(qb, out)``: ``qb @ r.T`` of int8 matrices as exact int32 in the first rows of
    ``out``. With int8 dot-product units an int8 matrix product; without, a float32 one where
    every partial sum is an integer below 2^24 (``d * 128^2 <= 2^24``: exact in any summation
    order), else a float64 one: the same integers either way."""
    if _int8_kernel_is_fast():
        return lambda qb, out: _int8_products(qb, r, out)
    dtype = torch.float32 if r.shape[1] * 128 * 128 <= 2**24 else torch.float64
    rt = r.to(dtype).T

    def products(qb: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out[:qb.shape[0]].copy_(torch.mm(qb.to(dtype), rt))

    return products


def _int8_products(q: torch.Tensor, r: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``q @ r.T`` of int8 matrices as exact int32, written into the first rows of ``out``
    (at least 17 rows: torch's int8 kernel wants more than 16, so smaller blocks are
    padded)."""
    rows = q.shape[0]
    if rows > 16:
        return torch._int_mm(q, r.T, out=out[:rows])
    padded = torch.zeros((17, q.shape[1]), dtype=torch.int8)
    padded[:rows] = q
    return torch._int_mm(padded, r.T, out=out[:17])[:rows]
