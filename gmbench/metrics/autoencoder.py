"""Autoencoder metric: ``reconstruction_error`` (``docs/CONTRACT.md``, section 4).

``decode(encode(x))`` of every test example, validated like samples (so discrete data come
back as levels), compared with ``x`` after scaling both to ``[0, 1]`` (level ``k`` becomes
``k / (levels - 1)``; continuous data stay in their own units). The per-example value is the
mean squared error per dimension; the metric is its mean over the test split with a normal
(CLT) interval over examples.
"""

from __future__ import annotations

import numpy as np

from gmbench.core.rng import COMMON_SEED
from gmbench.estimators.uncertainty import mean_estimate
from gmbench.features.extractors import PixelFeatures
from gmbench.metrics.context import Context
from gmbench.metrics.metric import Measurement, Metric, register

__all__ = ["squared_error_per_dim", "test_squared_error"]


def squared_error_per_dim(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Mean over dimensions of ``(x_hat - x)**2`` for each row of ``(n, D)`` arrays, ``(n,)``."""
    diff = np.asarray(x_hat, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    return (diff * diff).mean(axis=1)


def test_squared_error(ev: Context) -> np.ndarray:
    """``(n_test,)``: each test example's mean squared reconstruction error per dimension
    (the model's own randomness keyed by the examples, as for likelihoods)."""
    def compute() -> np.ndarray:
        x = ev.dataset.test.x
        x_hat = ev.model.reconstruct(x, seed=COMMON_SEED, batch_size=ev.config.batch_size)
        scale = PixelFeatures(ev.info)
        return squared_error_per_dim(scale(x), scale(x_hat))
    return ev.memo("test_squared_error", compute)


def _reconstruction_error(ev: Context) -> Measurement:
    units = ("data scaled to [0, 1] (level k -> k / (levels - 1))" if ev.info.is_discrete
             else "data units")
    return Measurement(mean_estimate(test_squared_error(ev)), feature_space="data",
                       details={"split": "test", "scale": units,
                                "paired": [["test_squared_error", 1.0]]})


register(Metric(key="reconstruction_error", description="mean squared error per dimension of decode(encode(x)) on the "
                            "test split",
                needs=("encode_decode",), higher_is_better=False, unit="squared error/dim",
                compute=_reconstruction_error, interval="population"))
