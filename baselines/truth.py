"""The ground truth of a generated dataset (``toy2d-*``, ``gauss-<d>``, ``markov-<v>``),
wrapped as a model: the best any model can do, exact ``log_prob`` and exact sampling.

Evaluate: ``gmbench evaluate baselines/truth.py --dataset toy2d-gmm8``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gmbench.datasets import DatasetInfo, get_dataset
from gmbench.errors import ModelError

__all__ = ["REFERENCE", "GroundTruthModel", "load"]

REFERENCE = "the data's own distribution: the ideal, not a competitor"


class GroundTruthModel:
    """``log_prob`` and ``sample`` of a dataset's :class:`~gmbench.datasets.GroundTruth`."""

    log_prob_space = "data"
    log_prob_kind = "exact"

    def __init__(self, truth: Any) -> None:
        self.truth = truth

    def log_prob(self, x: Any) -> np.ndarray:
        return np.asarray(self.truth.log_prob(np.asarray(x.cpu() if hasattr(x, "cpu") else x)))

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        return self.truth.sample(n, np.random.default_rng(seed))


def load(dataset: DatasetInfo, device: str) -> GroundTruthModel:
    del device
    truth = get_dataset(dataset.name).truth
    if truth is None:
        raise ModelError(f"baselines/truth.py needs a generated dataset with a known ground "
                         f"truth; {dataset.name} has none. Use --dataset toy2d-gmm8, gauss-2, "
                         "markov-8 or another generated dataset.")
    return GroundTruthModel(truth)
