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
import resource

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from gmbench.datasets import get_dataset
from gmbench.estimators.neighbours import knn


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
