"""Exact chunked k-NN against scikit-learn, chunk-size independence, exact duplicates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from gmbench.estimators.neighbours import knn


@pytest.mark.parametrize("chunk", [1, 37, 4096])
def test_knn_matches_sklearn(chunk):
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(300, 16)), rng.normal(size=(500, 16))
    dist, idx = knn(q, r, k=4, chunk=chunk, dtype=torch.float64)
    ref_d, ref_i = NearestNeighbors(n_neighbors=4).fit(r).kneighbors(q)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(idx, ref_i)


def test_exclude_self_keeps_exact_duplicates():
    """A duplicated point's nearest *other* point is its twin, at distance 0."""
    x = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 5.0]], dtype=np.float32)
    dist, idx = knn(x, x, k=1, exclude_self=True, chunk=3)
    np.testing.assert_array_equal(idx[:, 0], [1, 0, 3, 2])
    np.testing.assert_allclose(dist[:, 0], [0, 0, 1, 1], atol=1e-6)
    # second-nearest other point of (5,5) is a duplicate origin; of (6,5) likewise
    np.testing.assert_allclose(_kth(x, 2, chunk=2)[2:],
                               [np.hypot(5, 5), np.hypot(6, 5)], rtol=1e-6)


def test_too_many_neighbours():
    with pytest.raises(ValueError, match="3 reference points"):
        knn(np.zeros((2, 2)), np.zeros((3, 2)), k=3, exclude_self=True)


def test_float32_precision_on_off_centre_data():
    """Points far from the origin: float32 distances still agree with float64 to 1e-4."""
    rng = np.random.default_rng(1)
    q, r = 1000 + rng.normal(size=(200, 8)), 1000 + rng.normal(size=(300, 8))
    d32, i32 = knn(q, r, k=2)
    d64, i64 = knn(q, r, k=2, dtype=torch.float64)
    np.testing.assert_allclose(d32, d64, rtol=1e-4)
    np.testing.assert_array_equal(i32[:, 0], i64[:, 0])


def _kth(x, k, **kwargs):
    """Distance from each point to its ``k``-th nearest other point."""
    return knn(x, x, k=k, exclude_self=True, **kwargs)[0][:, -1]


@pytest.mark.parametrize("dim", [784, 3072])  # float32-exact, and float64 beyond 2^24 / 128^2
@pytest.mark.parametrize("exclude_self", [False, True])
def test_integer_search_is_exact_with_either_product_kernel(dim, exclude_self, monkeypatch):
    """Pixels are searched in exact integer arithmetic: an int8 product on CPUs with int8
    dot-product units, a float one elsewhere. Both give the brute-force int64 distances."""
    from gmbench.estimators import neighbours

    rng = np.random.default_rng(dim)
    refs = rng.integers(0, 256, size=(120, dim)).astype(np.uint8)
    queries = refs if exclude_self else rng.integers(0, 256, size=(40, dim)).astype(np.uint8)
    d2 = ((queries[:, None].astype(np.int64) - refs[None].astype(np.int64)) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d2, np.iinfo(np.int64).max)
    order = np.argsort(d2, axis=1, kind="stable")[:, :5]
    expected = np.take_along_axis(d2, order, 1)  # exact squared distances
    found = {}
    for fast in (True, False):
        monkeypatch.setattr(neighbours, "_int8_kernel_is_fast", lambda fast=fast: fast)
        found[fast] = knn(queries, refs, k=5, exclude_self=exclude_self, chunk=16)
        np.testing.assert_array_equal(np.rint(found[fast][0] ** 2).astype(np.int64), expected)
    for a, b in zip(found[True], found[False], strict=True):  # bitwise the same
        np.testing.assert_array_equal(a, b)
