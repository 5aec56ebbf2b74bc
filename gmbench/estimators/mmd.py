"""The unbiased squared maximum mean discrepancy with RBF kernels (one bandwidth or a sum over
several), its bootstrap, and the closed form between Gaussians.

References:
    Gretton et al., "A kernel two-sample test", JMLR 13, 2012.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gmbench.estimators.neighbours import DEFAULT_CHUNK, distance_block
from gmbench.estimators.uncertainty import Estimate

__all__ = ["MMDResult", "MULTISCALE_FACTORS", "PermutationTest", "gaussian_rbf_mmd2",
           "median_bandwidth", "mmd2_conditional_variances", "mmd2_permutation_test",
           "mmd2_unbiased", "mmd2_unbiased_many", "multiscale_bandwidths", "rbf_kernel",
           "u_statistic_variance"]

EXP_FLOOR = -87.0  # exp(-87) = 1.6e-38, the smallest exponent with a normal float32 result
TILE = 2**18  # kernel entries per tile (1 MB in float32): its elementwise passes stay in cache
TILE_ROWS = 256  # rows per tile (the distance and replicate products stay efficient)
MULTISCALE_FACTORS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0)


def multiscale_bandwidths(median: float, factors: tuple[float, ...] = MULTISCALE_FACTORS
                          ) -> tuple[float, ...]:
    """The bandwidths of the multi-scale kernel: the median heuristic times ``factors``
    (1/16 to 4): local differences (a mode a little too wide) and global ones (a shifted
    mean) each move at least one term."""
    return tuple(median * f for f in factors)


def median_bandwidth(x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator,
                     max_points: int = 2000) -> float:
    """Median heuristic: the median Euclidean distance between distinct points of the pooled
    sample (a seeded subset of at most ``max_points`` points). Used as ``sigma`` in
    ``k(a, b) = exp(-|a - b|^2 / (2 sigma^2))``."""
    pooled = np.concatenate([np.asarray(x, np.float64).reshape(len(x), -1),
                             np.asarray(y, np.float64).reshape(len(y), -1)])
    if len(pooled) > max_points:
        pooled = pooled[rng.choice(len(pooled), max_points, replace=False)]
    sq = (pooled * pooled).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * pooled @ pooled.T, 0)
    iu = np.triu_indices(len(pooled), k=1)
    sigma = float(np.sqrt(np.median(d2[iu])))
    return sigma if sigma > 0 else 1.0


@dataclass(frozen=True)
class MMDResult:
    """Unbiased ``MMD^2`` with bootstrap replicates.

    Attributes:
        value: ``MMD^2_u``.
        boot: ``(n_boot,)`` bootstrap replicates (empty when ``n_boot = 0``).
        n_x, n_y: sample sizes.
        bandwidth: the RBF ``sigma``, or the tuple of them for a sum of kernels.
    """

    value: float
    boot: np.ndarray
    n_x: int
    n_y: int
    bandwidth: float | tuple[float, ...]

    def estimate(self) -> Estimate:
        """Percentile bootstrap interval (over the resampled sets: see
        :func:`mmd2_unbiased`)."""
        b = self.boot
        if b.size < 2:
            return Estimate(value=self.value, stderr=math.nan, ci_low=math.nan, ci_high=math.nan,
                            n=min(self.n_x, self.n_y), ci_method=
                            "none")
        low, high = np.quantile(b, [0.025, 0.975])
        return Estimate(value=self.value, stderr=float(b.std(ddof=1)), ci_low=float(low),
                        ci_high=float(high), n=min(self.n_x, self.n_y),
                        ci_method=f"bootstrap-percentile ({b.size} resamples; replicates drop "
                        "self-pairs)")


Group = tuple[tuple[float, ...], "torch.Tensor | None", "torch.Tensor | None"]


def _kernel_sums(a: torch.Tensor, b: torch.Tensor, groups: Sequence[Group], chunk: int, *,
                 symmetric: bool = False) -> list[torch.Tensor]:
    """For each group ``(gammas, wa, wb)``: ``[sum_ij k(a_i, b_j), sum_ij wa[r, i] k(a_i, b_j)
    wb[r, j] for each r]`` for the kernel ``k = sum_g exp(-gamma_g |a - b|^2)``, all groups
    from one pass over the distances.

    Args:
        a: ``(n, d)``; b: ``(m, d)``.
        groups: per kernel, its inverse squared length scales and the replicate weights
            ``wa`` ``(R, n)``, ``wb`` ``(R, m)``, or ``None`` for none (``R = 0``).
        chunk: rows per block (at most :data:`TILE_ROWS`).
        symmetric: ``b`` is ``a`` (and each group's ``wb`` its ``wa``): only the tiles on
            and above the diagonal are computed, each pair off the diagonal counted twice.

    The distances come in tiles of :data:`TILE` entries, so that the exponentials and sums
    over a tile stay in cache (over blocks of 2^24 entries they ran at memory speed: the
    seven passes per kernel of ``mmd_multiscale`` took 2.5x as long). Each distinct
    ``gamma`` is exponentiated once per tile, whichever groups share it.

    Returns:
        per group, ``(1 + R,)`` float64: the plain sum, then one weighted sum per replicate.
    """
    n, m = a.shape[0], b.shape[0]
    plain = [torch.zeros((), dtype=torch.float64) for _ in groups]
    weighted = [torch.zeros(wa.shape[0] if wa is not None else 0, dtype=torch.float64)
                for _, wa, _ in groups]
    schedule: list[float] = []  # distinct gammas, the longest group's in its own order first
    for gammas, _, _ in sorted(groups, key=lambda g: -len(g[0])):
        schedule += [g for g in gammas if g not in schedule]
    rows = max(1, min(chunk, TILE_ROWS, n))
    width = max(rows, TILE // rows)
    a_sq, b_sq = (a * a).sum(1), (b * b).sum(1)
    d2_buf, term_buf = torch.empty(rows * width), torch.empty(rows * width)
    kern_bufs = [torch.empty(rows * width) for _ in groups]
    for start in range(0, n, rows):
        qa = a[start:start + rows]  # (B, d)
        count = qa.shape[0]
        q_sq = a_sq[start:start + count, None]
        if symmetric:  # the diagonal square once, then the tiles right of it twice
            tiles = [(start, start + count, 1.0)] + [
                (c, min(c + width, n), 2.0) for c in range(start + count, n, width)]
        else:
            tiles = [(c, min(c + width, m), 1.0) for c in range(0, m, width)]
        kw_sum = [torch.zeros((count, wa.shape[0]), dtype=torch.float64)
                  if wa is not None else None for _, wa, _ in groups]
        for c0, c1, factor in tiles:
            shape = (count, c1 - c0)
            size = count * (c1 - c0)
            d2 = distance_block(qa, q_sq, b[c0:c1], b_sq[c0:c1],
                                out=d2_buf[:size].view(shape)).clamp_min_(0)
            term = term_buf[:size].view(shape)
            kerns = [buf[:size].view(shape) for buf in kern_bufs]
            started = [False] * len(groups)
            for gamma in schedule:
                # exponents are clipped at EXP_FLOOR: exp of anything lower is a subnormal
                # float32, which the vectorised exp computes about 8x slower, and which no
                # float32 sum of these kernels can resolve (below 1.7e-38 per pair)
                torch.mul(d2, -gamma, out=term).clamp_min_(EXP_FLOOR).exp_()
                for i, ((gammas, _, _), kern) in enumerate(zip(groups, kerns, strict=True)):
                    if gamma in gammas:
                        kern.add_(term) if started[i] else kern.copy_(term)
                        started[i] = True
            for i, ((_, wa, wb), kern) in enumerate(zip(groups, kerns, strict=True)):
                plain[i] += factor * kern.sum(1).double().sum()
                acc = kw_sum[i]
                if acc is not None:
                    other = wa if symmetric else wb
                    assert other is not None
                    acc.add_((kern @ other[:, c0:c1].T).double(), alpha=factor)  # (B, R)
        for i, (_, wa, _) in enumerate(groups):
            acc = kw_sum[i]
            if acc is not None and wa is not None:
                weighted[i] += (acc * wa[:, start:start + count].T.double()).sum(0)
    return [torch.cat([p[None], w]) for p, w in zip(plain, weighted, strict=True)]


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, *, bandwidth: float | tuple[float, ...],
                  rng: np.random.Generator, n_boot: int = 200, chunk: int = DEFAULT_CHUNK,
                  resample_x: bool = True) -> MMDResult:
    """Unbiased ``MMD^2`` with the RBF kernel ``k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2))``,
    or the sum of such kernels when ``bandwidth`` is a tuple.

    ``MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
    - 2/(nm) sum_{i,j} k(x_i, y_j)`` (Gretton et al. 2012, eq. 3). Bootstrap replicates draw
    multinomial counts ``w`` for the resampled sets and evaluate the same U-statistic on the
    resample, with pairs of copies of one point dropped (they are not pairs of distinct
    draws): ``U_xx* = (w'Kw - k0 sum w_i^2) / (n^2 - sum w_i^2)`` with ``k0 = k(a, a)``. All
    replicates share one chunked pass over the kernel matrices (the symmetric ``xx`` and
    ``yy`` ones over their upper half), memory ``O(chunk * (n + m + n_boot))``.

    Args:
        x: ``(n, d)`` sample of ``P``; y: ``(m, d)`` sample of ``Q``.
        bandwidth: ``sigma`` (see :func:`median_bandwidth`), or several (a sum of kernels).
        rng: for the bootstrap counts.
        n_boot: bootstrap replicates (0 for none).
        chunk: rows per block (at most; fewer for large sets).
        resample_x: resample ``x`` too (``False``: ``x`` is a fixed reference, e.g. a test
            split that every run shares, and only ``y`` is resampled).
    """
    return mmd2_unbiased_many(x, y, bandwidths=[bandwidth], rngs=[rng], n_boot=n_boot,
                              chunk=chunk, resample_x=resample_x)[0]


def mmd2_unbiased_many(x: np.ndarray, y: np.ndarray, *,
                       bandwidths: Sequence[float | tuple[float, ...]],
                       rngs: Sequence[np.random.Generator], n_boot: int = 200,
                       chunk: int = DEFAULT_CHUNK, resample_x: bool = True
                       ) -> list[MMDResult]:
    """:func:`mmd2_unbiased` for several kernels of the same two sets (``bandwidths[i]`` with
    bootstrap counts from ``rngs[i]``), from one pass over their distances: each result is
    the one :func:`mmd2_unbiased` gives alone (the same draws; sums in another order only
    where a kernel is alone)."""
    xt = torch.as_tensor(np.asarray(x, np.float32).reshape(len(x), -1))
    yt = torch.as_tensor(np.asarray(y, np.float32).reshape(len(y), -1))
    center = torch.cat([xt, yt]).mean(0)  # shift-invariant kernel; limits float32 cancellation
    xt, yt = xt - center, yt - center
    n, m = xt.shape[0], yt.shape[0]
    kernels = []
    for bandwidth, rng in zip(bandwidths, rngs, strict=True):
        sigmas = bandwidth if isinstance(bandwidth, tuple) else (bandwidth,)
        gammas = tuple(1.0 / (2.0 * s**2) for s in sigmas)
        wx = (rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
              if resample_x else np.ones((n_boot, n)))  # (R, n)
        wy = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)  # (R, m)
        kernels.append((sigmas, gammas, wx, wy))
    wxt = [torch.from_numpy(k[2]).float() for k in kernels]
    wyt = [torch.from_numpy(k[3]).float() for k in kernels]
    # with x held fixed every replicate weighs x's pairs by 1: its weighted sums are its plain
    # sum, and no product with the weights is needed
    sxx = _kernel_sums(xt, xt, [(k[1], w if resample_x else None, None)
                                for k, w in zip(kernels, wxt, strict=True)], chunk,
                       symmetric=True)
    syy = _kernel_sums(yt, yt, [(k[1], w, None) for k, w in zip(kernels, wyt, strict=True)],
                       chunk, symmetric=True)
    sxy = _kernel_sums(xt, yt, [(k[1], a, b) for k, a, b in zip(kernels, wxt, wyt,
                                                                  strict=True)], chunk)
    results = []
    for (sigmas, gammas, wx, wy), txx, tyy, txy in zip(kernels, sxx, syy, sxy, strict=True):
        kxx, kyy, kxy = txx.numpy(), tyy.numpy(), txy.numpy()
        if not resample_x:
            kxx = np.concatenate([kxx[:1], np.full(n_boot, kxx[0])])
        k0 = float(len(gammas))  # k(a, a): each summed kernel is 1 on the diagonal
        # the diagonal k(a, a) = k0 is exactly k0 * n (resp. k0 * sum w^2) of each sum
        value = ((kxx[0] - k0 * n) / (n * (n - 1)) + (kyy[0] - k0 * m) / (m * (m - 1))
                 - 2.0 * kxy[0] / (n * m))
        qx, qy = (wx**2).sum(1), (wy**2).sum(1)
        boot = ((kxx[1:] - k0 * qx) / (n * n - qx) + (kyy[1:] - k0 * qy) / (m * m - qy)
                - 2.0 * kxy[1:] / (n * m))
        results.append(MMDResult(float(value), boot, n, m,
                                 sigmas[0] if len(sigmas) == 1 else sigmas))
    return results


def gaussian_rbf_mmd2(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray,
                      *, bandwidth: float) -> float:
    """Population ``MMD^2`` between ``N(mean1, cov1)`` and ``N(mean2, cov2)`` for the RBF kernel
    of ``bandwidth`` (closed form): with ``Z ~ N(mu, S)``,
    ``E exp(-|Z|^2 / (2 s^2)) = det(I + S / s^2)^(-1/2) exp(-mu' (S + s^2 I)^(-1) mu / 2)``."""
    s2 = bandwidth**2
    mean1, mean2 = np.atleast_1d(mean1).astype(float), np.atleast_1d(mean2).astype(float)
    cov1, cov2 = np.atleast_2d(cov1).astype(float), np.atleast_2d(cov2).astype(float)
    eye = np.eye(len(mean1))

    def expected(mu: np.ndarray, cov: np.ndarray) -> float:
        _, logdet = np.linalg.slogdet(eye + cov / s2)
        quad = float(mu @ np.linalg.solve(cov + s2 * eye, mu))
        return math.exp(-0.5 * logdet - 0.5 * quad)

    zero = np.zeros_like(mean1)
    return (expected(zero, 2 * cov1) + expected(zero, 2 * cov2)
            - 2 * expected(mean1 - mean2, cov1 + cov2))


@dataclass(frozen=True)
class PermutationTest:
    """A permutation test of ``P = Q`` with the statistic ``MMD^2_u``.

    Attributes:
        statistic: ``MMD^2_u`` of the two sets as given.
        p_value: ``(1 + #{permutations with MMD^2_u >= statistic}) / (1 + permutations)``:
            exact (valid at any sample size) when the two sets are exchangeable under ``P =
            Q``.
        permutations: how many random relabellings were drawn.
        null_mean, null_std: of the permuted statistics.
    """

    statistic: float
    p_value: float
    permutations: int
    null_mean: float
    null_std: float


def mmd2_permutation_test(x: np.ndarray, y: np.ndarray, *,
                          bandwidth: float | tuple[float, ...], rng: np.random.Generator,
                          permutations: int = 500, chunk: int = DEFAULT_CHUNK
                          ) -> PermutationTest:
    """Permutation test of ``P = Q`` from ``x`` ``(n, d)`` ~ P and ``y`` ``(m, d)`` ~ Q with the
    unbiased ``MMD^2`` of :func:`mmd2_unbiased` (RBF kernel, or a sum of them).

    The pooled ``n + m`` points are relabelled at random ``permutations`` times; for a labelling
    ``a`` (indicator of the points called ``y``) the statistic needs only the quadratic forms
    ``a'Ka`` and ``b'Kb`` (``b = 1 - a``) of the pooled kernel matrix, since ``a'Kb = (1'K1 -
    a'Ka - b'Kb) / 2``: every relabelling shares one chunked pass over the kernel (memory
    ``O(chunk * (n + m + permutations))``).

    References:
        Gretton et al., "A kernel two-sample test", JMLR 13, 2012 (section 5).
    """
    xt = torch.as_tensor(np.asarray(x, np.float32).reshape(len(x), -1))
    yt = torch.as_tensor(np.asarray(y, np.float32).reshape(len(y), -1))
    n, m = xt.shape[0], yt.shape[0]
    assert n >= 2 and m >= 2, "each set needs at least 2 points"
    pooled = torch.cat([xt, yt])
    pooled = pooled - pooled.mean(0)  # shift-invariant kernel; limits float32 cancellation
    total = n + m
    labels = np.zeros((permutations + 1, total), dtype=np.float32)
    labels[0, n:] = 1.0  # the observed labelling first
    for r in range(1, permutations + 1):
        labels[r, rng.choice(total, m, replace=False)] = 1.0
    weights = torch.from_numpy(np.concatenate([labels, 1.0 - labels]))  # (2R + 2, N)
    sigmas = bandwidth if isinstance(bandwidth, tuple) else (bandwidth,)
    gammas = tuple(1.0 / (2.0 * s**2) for s in sigmas)
    (sums,) = _kernel_sums(pooled, pooled, [(gammas, weights, None)], chunk, symmetric=True)
    whole = float(sums[0])
    q = sums[1:].numpy()
    q_y, q_x = q[:permutations + 1], q[permutations + 1:]  # a'Ka (y-labelled), b'Kb
    k0 = float(len(gammas))
    cross = (whole - q_x - q_y) / 2.0
    stats = ((q_x - k0 * n) / (n * (n - 1)) + (q_y - k0 * m) / (m * (m - 1))
             - 2.0 * cross / (n * m))
    observed, null = float(stats[0]), stats[1:]
    p = (1.0 + float((null >= observed).sum())) / (1.0 + permutations)
    return PermutationTest(observed, p, permutations, float(null.mean()),
                           float(null.std(ddof=1)))


# ------------------------------------------------------------------ analytic variance

def rbf_kernel(bandwidth: float | tuple[float, ...]
               ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))`` over the bandwidths, as a function of two
    point sets ``(p, d)``, ``(q, d)`` returning the ``(p, q)`` float64 matrix."""
    sigmas = bandwidth if isinstance(bandwidth, tuple) else (bandwidth,)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        shift = a.mean(0)  # shift-invariant: centred, the expansion below loses less precision
        a, b = a - shift, b - shift
        d2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T, 0.0)
        out = np.zeros_like(d2)
        for s in sigmas:
            out += np.exp(-d2 / (2.0 * s * s))
        return out
    return k


def u_statistic_variance(h: np.ndarray, m: int) -> float:
    """Variance of the U-statistic ``1/(m(m-1)) sum_{j != l} h(z_j, z_l)`` over ``m`` i.i.d.
    points, estimated from the kernel matrix ``h`` ``(s, s)`` of ``s >= 4`` of them.

    ``Var = (4 (m - 2) zeta_1 + 2 zeta_2) / (m (m - 1))`` (Hoeffding 1948) with ``zeta_1 =
    Cov(h(Z1, Z2), h(Z1, Z3))`` and ``zeta_2 = Var h(Z1, Z2)``, each estimated without bias by
    U-statistics of degree 3 and 4 over the distinct points of ``h`` (its diagonal is ignored),
    and floored at 0.
    """
    s = len(h)
    assert s >= 4 and h.shape == (s, s)
    h = np.array(h, np.float64)
    np.fill_diagonal(h, 0.0)
    h -= h.sum() / (s * (s - 1))  # centred: the moments below no longer cancel in float64
    np.fill_diagonal(h, 0.0)
    row, sq = h.sum(1), (h * h).sum(1)
    total, squares, shared = row.sum(), sq.sum(), (row * row - sq).sum()
    e_h2 = squares / (s * (s - 1))  # E h(1,2)^2
    e_h12_h13 = shared / (s * (s - 1) * (s - 2))  # E h(1,2) h(1,3)
    theta2 = (total * total - 4.0 * shared - 2.0 * squares) / (s * (s - 1) * (s - 2) * (s - 3))
    zeta1, zeta2 = max(e_h12_h13 - theta2, 0.0), max(e_h2 - theta2, 0.0)
    return (4.0 * (m - 2) * zeta1 + 2.0 * zeta2) / (m * (m - 1))


def mmd2_conditional_variances(x: np.ndarray, y: np.ndarray, kernel: Callable[
        [np.ndarray, np.ndarray], np.ndarray], *, rng: np.random.Generator,
        max_points: int = 1000) -> tuple[float, float, float]:
    """``(Var(MMD^2_u | x), Var(MMD^2_u | y), Var(MMD^2_u))``: the variance of the unbiased
    ``MMD^2`` over new draws of ``y`` with ``x`` held fixed, over new draws of ``x`` with ``y``
    held fixed, and over new draws of both.

    With ``x`` fixed, ``MMD^2_u - U_xx`` is the one-sample U-statistic of the ``y`` with kernel
    ``h(a, b) = k(a, b) - c(a) - c(b)``, ``c(a) = mean_i k(x_i, a)`` (and symmetrically), whose
    variance :func:`u_statistic_variance` estimates from a seeded subset of at most
    ``max_points`` points. The first is what changes between runs on one test split ``x``. The
    two conditional variances both contain the interaction of the sets, the variance of
    ``-2/(nm) sum_ij k~(x_i, y_j)`` with ``k~`` the doubly centred kernel, ``4 E[k~^2] /
    (nm)``; the total counts it once. Exact to second order whether or not ``P = Q``: under
    ``P = Q``, where the first-order terms vanish, the second-order ones are what an interval
    around 0 needs.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)

    def subset(points: np.ndarray) -> np.ndarray:
        if len(points) <= max_points:
            return points
        return points[np.sort(rng.choice(len(points), max_points, replace=False))]

    def given(fixed: np.ndarray, sub: np.ndarray, m: int) -> float:
        c = np.zeros(len(sub))
        for start in range(0, len(fixed), 4096):  # mean kernel to every fixed point, chunked
            c += kernel(fixed[start:start + 4096], sub).sum(0)
        c /= len(fixed)
        h = kernel(sub, sub) - c[:, None] - c[None, :]
        return u_statistic_variance(h, m)

    xs, ys = subset(x), subset(y)
    n, m = len(x), len(y)
    var_x, var_y = given(x, ys, m), given(y, xs, n)
    cross = kernel(xs, ys)  # (s_x, s_y), doubly centred below
    cross = cross - cross.mean(0) - cross.mean(1)[:, None] + cross.mean()
    sx, sy = cross.shape
    e_k2 = float((cross * cross).mean()) * sx * sy / max((sx - 1) * (sy - 1), 1)
    interaction = 4.0 * e_k2 / (n * m)
    return var_x, var_y, max(var_x + var_y - interaction, max(var_x, var_y))
