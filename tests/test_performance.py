"""The fast paths of issue 14 give the numbers of the plain ones.

- ``topk_rows`` (grouped top-k) against ``torch.topk``;
- the k-NN search (negated-rank GEMM, one buffer) against scikit-learn in float64 and against
  the plain expansion; the exact integer search of pixel data against exact integer distances;
- the reused distance buffer of ``squared_distance_blocks`` against a direct computation;
- the multi-scale MMD with its exponent floor against a float64 computation;
- background work (:mod:`gmbench.core.background`): the same values as synchronous work, errors
  raised where the result is taken, model code waiting for it, the thread count restored;
- a whole evaluation on two threads (the C2ST's training overlapping the other metrics) against
  one thread (no overlap), metric by metric over the registry;
- the model-independent test-to-train neighbours: cached once per machine, the same values.

Speed itself is measured under ``benchmarks/`` (docs/performance.md), not here.
"""

from __future__ import annotations

import io
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import gmbench
from gmbench.core import background as bg
from gmbench.core.progress import progress_shown, slowest, stage
from gmbench.estimators import neighbours as nb
from gmbench.estimators.mmd import MULTISCALE_FACTORS, mmd2_unbiased
from gmbench.metrics import METRICS

MINIMAL = str(Path(__file__).resolve().parents[1] / "examples" / "minimal_model.py")


# ------------------------------------------------------------------ top-k
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize(("m", "k"), [(10_000, 10), (6_001, 1), (9_000, 13), (100, 3)])
def test_topk_rows_matches_torch_topk(largest, m, k):
    gen = torch.Generator().manual_seed(m + k)
    x = torch.randn(64, m, generator=gen)
    x[:, 5] = x[:, 7]  # a tie
    x[3] = 0.5  # a row of ties only
    vals, idx = nb.topk_rows(x, k, largest=largest)
    ref_vals, _ = torch.topk(x, k, dim=1, largest=largest, sorted=True)
    assert torch.equal(vals, ref_vals)
    assert torch.equal(torch.gather(x, 1, idx), vals)  # indices point at those values
    assert all(len(set(row.tolist())) == k for row in idx)  # distinct columns


# ------------------------------------------------------------------ k-NN search
def _exact_knn(q: np.ndarray, r: np.ndarray, k: int, exclude_self: bool = False,
               squared: bool = False) -> np.ndarray:
    d2 = ((q[:, None, :].astype(np.float64) - r[None].astype(np.float64)) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    nearest = np.sort(d2, axis=1)[:, :k]
    return nearest if squared else np.sqrt(nearest)


@pytest.mark.parametrize("dim", [3, 128])
def test_float_knn_matches_float64_reference(dim):
    rng = np.random.default_rng(dim)
    q = rng.normal(2.0, 1.0, (300, dim)).astype(np.float32)
    r = rng.normal(2.0, 1.0, (9_000, dim)).astype(np.float32)
    dist, idx = nb.knn(q, r, k=10, chunk=128)
    # float32 expansion |q|^2 + |r|^2 - 2 q.r: squared distances within float32 rounding of
    # the centred norms (about dim * 1e-7)
    tol = dict(rtol=1e-5, atol=dim * 1e-6)
    np.testing.assert_allclose(dist**2, _exact_knn(q, r, 10, squared=True), **tol)
    np.testing.assert_allclose(((q[:, None] - r[idx]).astype(np.float64) ** 2).sum(-1),
                               dist**2, **tol)


def test_float_knn_distances_are_those_of_the_distance_blocks():
    """The search ranks 2 q.r - |r|^2 and adds |q|^2 to the kept ones: bitwise the distances
    the shared kernel computes."""
    rng = np.random.default_rng(1)
    q = rng.normal(size=(700, 64)).astype(np.float32)
    r = rng.normal(size=(6_000, 64)).astype(np.float32)
    dist, _ = nb.knn(q, r, k=4, chunk=256)
    center = torch.as_tensor(r).mean(0, keepdim=True)
    blocks = [torch.topk(d2, 4, dim=1, largest=False).values.sqrt().double().numpy()
              for _, d2 in nb.squared_distance_blocks(torch.as_tensor(q) - center,
                                                      torch.as_tensor(r) - center, chunk=256)]
    np.testing.assert_array_equal(dist, np.concatenate(blocks))


def test_distance_blocks_reuse_one_buffer_and_stay_right():
    rng = np.random.default_rng(2)
    q, r = torch.as_tensor(rng.normal(size=(50, 5))), torch.as_tensor(rng.normal(size=(40, 5)))
    seen = []
    for start, d2 in nb.squared_distance_blocks(q, r, chunk=16):
        direct = ((q[start:start + len(d2), None] - r[None]) ** 2).sum(-1)
        torch.testing.assert_close(d2, direct, rtol=1e-9, atol=1e-12)
        seen.append(d2.data_ptr())
    assert len(set(seen)) == 1  # one buffer, overwritten block by block


@pytest.mark.parametrize("m", [40, 64 * 9, 64 * 9 + 13])
def test_snapped_blocks_equal_a_full_comparison(m):
    """The grouped search for entries to snap (only column groups whose minimum is low are
    compared) gives the block a comparison of every entry gives: duplicates of the queries in
    the references, a set against itself (its diagonal), groups and a ragged tail."""
    rng = np.random.default_rng(3)
    r = torch.as_tensor(rng.normal(size=(m, 6)), dtype=torch.float32)
    q = torch.as_tensor(rng.normal(size=(70, 6)), dtype=torch.float32)
    q[[3, 40, 69]] = r[[0, m - 1, m // 2]]  # exact duplicates, one in the ragged tail
    snap, r_sq = 1e-6, (r * r).sum(1)
    for queries in (q, r):
        zeros = 0
        for start, d2 in nb.squared_distance_blocks(queries, r, chunk=32, snap=snap):
            qb = queries[start:start + len(d2)]
            q_sq = (qb * qb).sum(1, keepdim=True)
            raw = nb.distance_block(qb, q_sq, r, r_sq, out=torch.empty_like(d2))
            expected = torch.where(raw <= (q_sq + r_sq) * snap, 0.0, raw)
            assert torch.equal(d2, expected)
            zeros += int((d2 == 0).sum())
        assert zeros == (3 if queries is q else m)


@pytest.mark.parametrize(("levels", "dim"), [(256, 784), (17, 64), (2, 30)])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_integer_knn_is_exact(levels, dim, exclude_self):
    rng = np.random.default_rng(levels + dim)
    r = rng.integers(0, levels, (1_500, 1, dim)).astype(np.uint8)
    q = r if exclude_self else rng.integers(0, levels, (700, 1, dim)).astype(np.uint8)
    if not exclude_self:
        q[:30] = r[:30]  # exact copies: distance 0
    dist, idx = nb.knn(q, r, k=3, exclude_self=exclude_self, chunk=256)
    flat_q, flat_r = q.reshape(len(q), -1), r.reshape(len(r), -1)
    # exact integer squared distances; the square root is torch's (within one ulp)
    np.testing.assert_array_equal(np.rint(dist**2), _exact_knn(flat_q, flat_r, 3, exclude_self,
                                                               squared=True))
    np.testing.assert_allclose(dist, _exact_knn(flat_q, flat_r, 3, exclude_self), rtol=3e-16)
    d_idx = ((flat_q[:, None].astype(np.int64) - flat_r[idx]) ** 2).sum(-1)
    np.testing.assert_array_equal(d_idx, np.rint(dist**2))
    if exclude_self:
        assert not (idx == np.arange(len(q))[:, None]).any()


def test_integer_knn_small_blocks_and_shifted_levels():
    """Fewer than 17 queries (the int8 kernel's minimum, padded) and values far from 0."""
    rng = np.random.default_rng(3)
    q = rng.integers(1000, 1256, (5, 20)).astype(np.int64)
    r = rng.integers(1000, 1256, (400, 20)).astype(np.int64)
    dist, _ = nb.knn(q, r, k=2)
    np.testing.assert_array_equal(np.rint(dist**2), _exact_knn(q, r, 2, squared=True))


def test_integer_search_only_for_small_integer_ranges():
    assert nb._small_integers(np.array([[0, 255]]), np.array([[3, 4]]))
    assert not nb._small_integers(np.array([[0, 256]]), np.array([[3, 4]]))
    assert not nb._small_integers(np.array([[0.0, 1.0]]), np.array([[3, 4]]))


# ------------------------------------------------------------------ MMD
def test_multiscale_mmd_matches_float64_computation(monkeypatch):
    """Kernel sums with exponents floored at -87 against float64 with no floor: the floor's
    change (below 1.7e-38 per pair) is invisible; only float32 rounding remains."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 6))
    y = rng.normal(0.3, 1.2, size=(500, 6))
    sigma = 2.0
    bandwidths = tuple(sigma * f for f in MULTISCALE_FACTORS)
    res = mmd2_unbiased(x, y, bandwidth=bandwidths, rng=np.random.default_rng(0), n_boot=0,
                        chunk=128)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * s**2)) for s in bandwidths)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    exact = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
             + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
    assert res.value == pytest.approx(exact, rel=2e-4, abs=1e-6)
    # distances so large that most terms underflow: the floor changes nothing a float32 sum
    # can resolve (the same value as with no floor at all)
    far = mmd2_unbiased(x * 30, y * 30, bandwidth=bandwidths, rng=np.random.default_rng(0),
                        n_boot=0, chunk=128)
    monkeypatch.setattr("gmbench.estimators.mmd.EXP_FLOOR", -math.inf)
    unfloored = mmd2_unbiased(x * 30, y * 30, bandwidth=bandwidths,
                              rng=np.random.default_rng(0), n_boot=0, chunk=128)
    assert far.value == pytest.approx(unfloored.value, rel=1e-12, abs=1e-30)


@pytest.mark.parametrize("replicates", [0, 7])
def test_symmetric_kernel_sums_equal_the_full_matrix(replicates):
    """Sums over the upper half (off-diagonal pairs twice) against the full matrix, plain and
    weighted, within float32 rounding; one distinct exponential per gamma for two kernels."""
    from gmbench.estimators.mmd import _kernel_sums

    rng = np.random.default_rng(6)
    a = torch.from_numpy(rng.normal(size=(500, 5)).astype(np.float32))
    w = (torch.from_numpy(rng.multinomial(500, np.full(500, 1 / 500), size=replicates)).float()
         if replicates else None)
    groups = [((0.5,), w, w), ((0.125, 0.5, 2.0), w, w)]
    upper = _kernel_sums(a, a, groups, 64, symmetric=True)
    full = _kernel_sums(a, a, groups, 64, symmetric=False)
    for u, f in zip(upper, full, strict=True):
        assert u.shape == (1 + replicates,)
        np.testing.assert_allclose(u.numpy(), f.numpy(), rtol=2e-6)


def test_mmd_of_several_kernels_in_one_pass_equals_each_alone():
    from gmbench.estimators.mmd import mmd2_unbiased_many

    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(400, 6)), rng.normal(0.2, 1.1, size=(700, 6))
    bandwidths = [2.0, tuple(2.0 * f for f in MULTISCALE_FACTORS)]
    together = mmd2_unbiased_many(x, y, bandwidths=bandwidths,
                                  rngs=[np.random.default_rng(i) for i in (1, 2)], n_boot=30,
                                  resample_x=False)
    for bandwidth, seed, joint in zip(bandwidths, (1, 2), together, strict=True):
        alone = mmd2_unbiased(x, y, bandwidth=bandwidth, rng=np.random.default_rng(seed),
                              n_boot=30, resample_x=False)
        assert joint.value == alone.value
        np.testing.assert_array_equal(joint.boot, alone.boot)


def test_held_fixed_reference_needs_no_replicate_sums():
    """With the test split held fixed (``resample_x=False``), every replicate weighs its pairs
    by 1: the replicates equal those with weights of ones summed, within float32 rounding."""
    from gmbench.estimators.mmd import _kernel_sums

    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(300, 4)), rng.normal(0.5, 1.0, size=(300, 4))
    fixed = mmd2_unbiased(x, y, bandwidth=1.5, rng=np.random.default_rng(3), n_boot=20,
                          resample_x=False)
    xt = torch.from_numpy(x.astype(np.float32)) - torch.from_numpy(
        np.concatenate([x, y]).mean(0).astype(np.float32))
    ones = torch.ones(20, 300)
    summed = _kernel_sums(xt, xt, [((1 / (2 * 1.5**2),), ones, ones)], 64, symmetric=True)[0]
    assert torch.allclose(summed[1:], summed[0].expand(20), rtol=1e-6)
    assert np.isfinite(fixed.boot).all() and fixed.boot.std() > 0


# ------------------------------------------------------------------ background work
@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_background_gives_the_value_and_restores_the_budget(two_threads):
    work = bg.Background()
    seen = {}
    release = threading.Event()

    def job() -> float:
        seen["background"] = bg.in_background()
        seen["threads"] = torch.get_num_threads()
        release.wait(5)
        return math.pi

    work.submit("x", job)
    assert work.pending("x") and torch.get_num_threads() == 1  # the main thread gave one up
    release.set()
    assert work.result("x") == math.pi
    assert seen == {"background": True, "threads": 1}
    assert torch.get_num_threads() == 2 and not bg._HOOKS


def test_background_error_is_raised_where_the_result_is_taken(two_threads):
    work = bg.Background()
    work.submit("boom", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        work.result("boom")
    assert torch.get_num_threads() == 2


def test_one_thread_budget_runs_work_at_once():
    work = bg.Background(budget=1)
    order = []
    work.submit("a", lambda: order.append("job") or 7)
    order.append("after submit")
    assert order == ["job", "after submit"] and work.result("a") == 7


def test_model_code_waits_for_background_work(two_threads):
    from gmbench.models.boundary import model_code

    work = bg.Background()
    finished = threading.Event()

    def job() -> None:
        threading.Event().wait(0.3)
        finished.set()

    work.submit("slow", job)
    with model_code():
        assert finished.is_set()  # entered only after the job was done
        assert torch.get_num_threads() == 2  # and with the whole budget back
    work.close()


def test_background_work_may_not_call_model_code(two_threads):
    from gmbench.models.boundary import model_code

    def job() -> None:
        with model_code():
            pass

    work = bg.Background()
    work.submit("bad", job)
    with pytest.raises(RuntimeError, match="may not call model code"):
        work.result("bad")


# ------------------------------------------------------------------ a whole evaluation
OVERLAP_METRICS = ["c2st_accuracy", "tv_lower_bound", "kl_knn", "mmd", "fid", "precision",
                   "nn_distance_ratio", "copy_rate", "nll"]


@pytest.fixture(scope="module")
def one_and_two_threads():
    """The same digits evaluation with one thread (no overlap) and with two (the C2ST's
    training in the background while the other metrics run)."""
    before = torch.get_num_threads()
    runs = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs[threads] = gmbench.evaluate(MINIMAL, dataset="digits",
                                             seed=3, metrics=OVERLAP_METRICS, progress=False,
                                             n_samples=600)
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
    return runs


@pytest.mark.parametrize("key", [k for k in METRICS if k in OVERLAP_METRICS])
def test_values_do_not_depend_on_the_thread_budget(one_and_two_threads, key):
    """Equal within float32 rounding (1e-6 relative): the overlap reorders no arithmetic of
    any metric, but the feature network's float32 kernels may split their sums differently
    on one thread and on two (seen here: 2e-7 relative in `kl_knn` and `nn_distance_ratio`
    on one CPU, bitwise equal on another)."""
    one, two = one_and_two_threads[1][key], one_and_two_threads[2][key]
    assert (one.value, one.ci_low, one.ci_high) == pytest.approx(
        (two.value, two.ci_low, two.ci_high), rel=1e-6, abs=1e-9)


def test_results_keep_the_requested_order(one_and_two_threads):
    """The C2ST's metrics run last (their training overlapped the others) but are reported
    where they were asked for."""
    assert list(one_and_two_threads[2].document["metrics"]) == OVERLAP_METRICS


def test_test_to_train_neighbours_are_cached_once(monkeypatch, tmp_path):
    """Model-independent searches go to the feature cache: the second run reads them and
    gives the same values."""
    from gmbench.features import cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = gmbench.evaluate(MINIMAL, dataset="digits", progress=False,
                             metrics=["nn_distance_ratio", "copy_rate"], n_samples=300)
    files = sorted(p.name for p in cache.cache_dir().iterdir())
    assert any("test-train-nn1-features" in f for f in files)
    assert any("test-train-nn1-pixels-exact" in f for f in files)
    calls = []
    monkeypatch.setattr("gmbench.metrics.memorization.knn",
                        lambda *a, **kw: calls.append(a) or nb.knn(*a, **kw))
    second = gmbench.evaluate(MINIMAL, dataset="digits", progress=False,
                              metrics=["nn_distance_ratio", "copy_rate"], n_samples=300)
    assert len(calls) == 2  # samples only (features and pixels); the test split came cached
    for key in ("nn_distance_ratio", "copy_rate"):
        assert first[key].value == second[key].value
        assert first[key].details["pixels"] == second[key].details["pixels"]


# ------------------------------------------------------------------ progress
def test_slowest_stages():
    assert slowest({"a": 0.5, "b": 8.8, "c": 2.0, "d": 4.8}) == "b 8.8 s, d 4.8 s, c 2.0 s"
    assert slowest({"a": 0.0}) == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stage_spinner_names_a_long_stage(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.setattr("gmbench.core.progress.STAGE_DELAY", 0.05)
    with progress_shown(True), stage("c2st_accuracy"):
        threading.Event().wait(0.7)
    with progress_shown(True), stage("quick"):
        pass
    assert "c2st_accuracy" in term.getvalue() and "quick" not in term.getvalue()
    with progress_shown(False), stage("hidden"):
        threading.Event().wait(0.2)
    assert "hidden" not in term.getvalue()
