"""Divergence estimators on 10k x 10k points in 64 dimensions, each against a scikit-learn
reference computing the same thing in the same run.

* ``kl_knn``: :func:`gmbench.estimators.wkv_kl_knn` (one chunked torch pass: k-NN distances
  and the adaptive-ball counts of the bias-corrected estimator) against scikit-learn
  ``NearestNeighbors`` (brute force) for the k-NN distances plus ``BallTree.query_radius`` for
  the ball counts. Both estimates must agree.
  A second reference computes only the fixed-k estimator with ``NearestNeighbors``.
* ``c2st``: :func:`gmbench.estimators.c2st` (cross-fitted torch MLPs, grid and early stopping
  on a validation part) against ``sklearn.neural_network.MLPClassifier`` cross-fitted the same
  way with the grid's larger network (see :func:`sklearn_c2st` for what can and cannot match).

Both sides run on one thread (torch and BLAS). Run:
``python -m pytest benchmarks/bench_divergence.py --benchmark-enable -q``; the ratio of each
group's means is the speed-up.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special
from sklearn.neighbors import BallTree, NearestNeighbors
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from gmbench.estimators.c2st import C2STClassifier, c2st
from gmbench.estimators.knn_kl import wkv_kl_knn

N, DIM, K = 10_000, 64, 5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mix = np.eye(DIM) + 0.3 * rng.standard_normal((DIM, DIM)) / math.sqrt(DIM)
    x = rng.standard_normal((N, DIM)).astype(np.float32)
    y = (rng.standard_normal((N, DIM)) @ mix + 0.05).astype(np.float32)
    return x, y


def sklearn_wkv(x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, float]:
    """Both Wang-Kulkarni-Verdu estimates (fixed k; bias-corrected) with scikit-learn."""
    n, d = x.shape
    m = len(y)
    rho = NearestNeighbors(algorithm="brute").fit(x).kneighbors(x, n_neighbors=k + 1)[0][:, -1]
    nu = NearestNeighbors(algorithm="brute").fit(y).kneighbors(x, n_neighbors=k)[0][:, -1]
    fixed = d * np.mean(np.log(nu / rho)) + math.log(m / (n - 1))
    eps = np.maximum(rho, nu) * (1 + 1e-6)
    dist_x = BallTree(x).query_radius(x, r=eps, return_distance=True)[1]
    dist_y = BallTree(y).query_radius(x, r=eps, return_distance=True)[1]
    k_i = np.array([len(a) - 1 for a in dist_x])  # the query itself is at distance 0
    l_i = np.array([len(a) for a in dist_y])
    rho_ball = np.array([a.max() for a in dist_x])
    nu_ball = np.array([a.max() for a in dist_y])
    corrected = (d * np.mean(np.log(nu_ball / rho_ball))
                 + np.mean(special.digamma(k_i) - special.digamma(l_i)) + math.log(m / (n - 1)))
    return float(fixed), float(corrected)


@pytest.mark.benchmark(group="kl_knn 10k x 10k, 64 dims")
def test_kl_knn_gmbench(benchmark, samples):
    x, y = samples
    res = benchmark.pedantic(lambda: wkv_kl_knn(x, y, k=K), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(value=res.value, value_fixed_k=res.value_fixed_k)


@pytest.mark.benchmark(group="kl_knn 10k x 10k, 64 dims")
def test_kl_knn_sklearn_reference(benchmark, samples):
    x, y = samples
    fixed, corrected = benchmark.pedantic(lambda: sklearn_wkv(x, y, K), rounds=1, iterations=1)
    ours = wkv_kl_knn(x, y, k=K)
    benchmark.extra_info.update(value=corrected, value_fixed_k=fixed)
    assert ours.value_fixed_k == pytest.approx(fixed, abs=2e-3)
    assert ours.value == pytest.approx(corrected, abs=2e-3)


def sklearn_wkv_fixed_k(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """The fixed-k estimator alone (WKV eq. 5), NearestNeighbors only: the cheaper half."""
    n, d = x.shape
    rho = NearestNeighbors(algorithm="brute").fit(x).kneighbors(x, n_neighbors=k + 1)[0][:, -1]
    nu = NearestNeighbors(algorithm="brute").fit(y).kneighbors(x, n_neighbors=k)[0][:, -1]
    return float(d * np.mean(np.log(nu / rho)) + math.log(len(y) / (n - 1)))


@pytest.mark.benchmark(group="kl_knn 10k x 10k, 64 dims")
def test_kl_knn_sklearn_fixed_k_only(benchmark, samples):
    x, y = samples
    fixed = benchmark.pedantic(lambda: sklearn_wkv_fixed_k(x, y, K), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(value_fixed_k=fixed)
    assert wkv_kl_knn(x, y, k=K).value_fixed_k == pytest.approx(fixed, abs=2e-3)


CLASSIFIER = C2STClassifier()


def sklearn_c2st(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, int]:
    """A reference C2ST with scikit-learn's MLP, cross-fitted like ours (two balanced folds,
    each predicted by a network trained on the other, standardised on it): the larger
    network of our grid, no L2 penalty (scikit-learn's ``alpha`` is divided by the batch size,
    so there is no "same" non-zero setting), Adam, early stopping on 20% of the training fold
    with the same patience in epochs."""
    rng = np.random.default_rng(seed)
    fx, fy = rng.permutation(N) % 2, rng.permutation(N) % 2
    correct, iters = 0, 0
    spec = CLASSIFIER.grid[-1]
    for fold in (0, 1):
        train = np.concatenate([x[fx != fold], y[fy != fold]])
        test = np.concatenate([x[fx == fold], y[fy == fold]])
        labels = np.r_[np.ones((fx != fold).sum()), np.zeros((fy != fold).sum())]
        truth = np.r_[np.ones((fx == fold).sum()), np.zeros((fy == fold).sum())]
        mu, sd = train.mean(0), train.std(0)
        scaled = CLASSIFIER.scaled(spec, int(0.8 * len(train)))
        clf = MLPClassifier(hidden_layer_sizes=spec.hidden, solver="adam", alpha=0.0,
                            learning_rate_init=scaled.lr, batch_size=scaled.batch_size,
                            max_iter=CLASSIFIER.stopping.max_epochs, early_stopping=True,
                            validation_fraction=CLASSIFIER.validation_fraction,
                            n_iter_no_change=CLASSIFIER.stopping.patience_epochs,
                            random_state=seed)
        clf.fit((train - mu) / sd, labels)
        correct += int((clf.predict((test - mu) / sd) == truth).sum())
        iters += int(clf.n_iter_)
    return correct / (2 * N), iters


@pytest.mark.benchmark(group="c2st 10k x 10k, 64 dims")
def test_c2st_gmbench(benchmark, samples):
    x, y = samples
    res = benchmark.pedantic(lambda: c2st(x, y, seed=0), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(accuracy=res.accuracy, chosen=str(res.chosen))
    assert res.accuracy > 0.6


@pytest.mark.benchmark(group="c2st 10k x 10k, 64 dims")
def test_c2st_sklearn_reference(benchmark, samples):
    x, y = samples
    acc, epochs = benchmark.pedantic(lambda: sklearn_c2st(x, y, 0), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(accuracy=acc, epochs=epochs)
    ours = c2st(x, y, seed=0)
    assert abs(ours.accuracy - acc) < 0.05  # the same classifier family reaches the same place
