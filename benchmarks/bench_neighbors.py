"""Nearest-neighbour search: gmbench's chunked torch search against scikit-learn's
``NearestNeighbors`` on the same data, in the same run.

The case of the memorization metrics on Fashion-MNIST: 10,000 queries (the test images stand
in for 10k samples) against the 60,000 training images, in pixel space (784-d, the heaviest
feature space gmbench uses; the bundled classifier's space is 128-d), k = 1, float32, one
thread for both (BLAS via threadpoolctl, torch via ``set_num_threads``).

Run: ``python -m pytest benchmarks/bench_neighbors.py --benchmark-enable -q``; the
``neighbors`` group's relative column is the speed ratio, and ``extra_info`` holds each
method's peak resident memory above the loaded data (measured in a fresh subprocess).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from gmbench.datasets import get_dataset
from gmbench.estimators.neighbours import knn
from gmbench.features.classifier import classifier_available, classifier_for


def _data() -> tuple[np.ndarray, np.ndarray]:
    ds = get_dataset("fashion-mnist")
    train = ds.train.x.reshape(len(ds.train), -1).astype(np.float32) / 255  # (60000, 784)
    queries = ds.test.x.reshape(len(ds.test), -1).astype(np.float32) / 255  # (10000, 784)
    return queries, train


def ours(queries: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dist, idx = knn(queries, train, k=1)
    return dist[:, 0], idx[:, 0]


def sklearn_nn(queries: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=1).fit(train).kneighbors(queries)
    return dist[:, 0], idx[:, 0]


METHODS = {"gmbench": ours, "sklearn": sklearn_nn}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_child(name: str, out: mp.Queue) -> None:
    torch.set_num_threads(1)
    queries, train = _data()
    base = _rss_mb()
    with threadpool_limits(1):
        METHODS[name](queries, train)
    out.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base)  # KiB -> MiB


def peak_memory_mb(name: str) -> float:
    """Peak resident memory of one search above the loaded data, in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(name, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return float(value)


@pytest.fixture(scope="module")
def data():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _data()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(data):
    with threadpool_limits(1):
        return sklearn_nn(*data)


@pytest.mark.benchmark(group="neighbors")
@pytest.mark.parametrize("name", list(METHODS))
def test_nn_search(benchmark, data, reference, name):
    with threadpool_limits(1):
        dist, idx = benchmark.pedantic(METHODS[name], args=data, rounds=2, iterations=1)
    ref_dist, ref_idx = reference
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-4)
    assert (idx == ref_idx).mean() > 0.999  # ties and float32 rounding may swap equals
    benchmark.extra_info["peak_memory_mb"] = round(peak_memory_mb(name), 1)
    benchmark.extra_info["queries"], benchmark.extra_info["refs"] = len(data[0]), len(data[1])
    benchmark.extra_info["dim"] = data[0].shape[1]


# ------------------------------------------------------------------ kernel against its floor
# The k-NN kernel against the matrix product it cannot avoid, in the same run: torch.mm of
# the same query blocks against the same references, into one preallocated output (the
# product alone, at this machine's best float32 throughput). ratio = floor time / kernel
# time; the target is at least 0.7. Both on the machine's whole thread budget.
FLOOR_CASES = {
    # name: (queries, refs, dim, k, integer data)
    "features-d128-k10": (10_000, 60_000, 128, 10, False),
    "pixels-d784-k1-float32": (4_000, 60_000, 784, 1, False),
    "pixels-d784-k1-uint8": (4_000, 60_000, 784, 1, True),
}


def _floor_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    n, m, d, _, integer = FLOOR_CASES[name]
    if d == 784:
        q, r = _data()
        q, r = q[:n], r[:m]
        if integer:
            return (np.rint(q * 255).astype(np.uint8), np.rint(r * 255).astype(np.uint8))
        return q, r
    if classifier_available("fashion-mnist"):
        ds = get_dataset("fashion-mnist")
        clf = classifier_for("fashion-mnist")
        return clf.features(ds.test.x[:n]), clf.features(ds.train.x[:m])
    rng = np.random.default_rng(0)
    return (np.maximum(rng.normal(size=(n, d)), 0).astype(np.float32),
            np.maximum(rng.normal(size=(m, d)), 0).astype(np.float32))


def _matmul_floor(q: np.ndarray, r: np.ndarray, chunk: int = 1024) -> None:
    qt = torch.as_tensor(q.reshape(len(q), -1), dtype=torch.float32)
    rt = torch.as_tensor(r.reshape(len(r), -1), dtype=torch.float32)
    out = torch.empty((min(chunk, len(qt)), len(rt)))
    for start in range(0, len(qt), chunk):
        qb = qt[start:start + chunk]
        torch.mm(qb, rt.T, out=out[:len(qb)])


FLOOR: dict[str, float] = {}


@pytest.mark.benchmark(group="knn-floor")
@pytest.mark.parametrize("name", list(FLOOR_CASES))
def test_knn_against_matmul_floor(benchmark, name):
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        q, r = _floor_data(name)
        k = FLOOR_CASES[name][3]
        _matmul_floor(q[:1024], r)  # warm up both
        knn(q[:1024], r, k=k)
        floor = []
        for _ in range(3):  # alternate, keep each one's best
            tic = time.perf_counter()
            _matmul_floor(q, r)
            floor.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            knn(q, r, k=k)
            FLOOR[name] = min(FLOOR.get(name, np.inf), time.perf_counter() - tic)
        benchmark.pedantic(knn, args=(q, r), kwargs={"k": k}, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    ratio = min(floor) / FLOOR[name]
    benchmark.extra_info.update({"matmul_floor_s": round(min(floor), 3),
                                 "knn_s": round(FLOOR[name], 3), "ratio": round(ratio, 3),
                                 "gflops_floor": round(2 * q.size * len(r) / min(floor) / 1e9)})
    print(f"\n{name}: matmul floor {min(floor):.3f} s, knn {FLOOR[name]:.3f} s, "
          f"ratio {ratio:.2f}")
