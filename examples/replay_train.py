"""A reference point for any dataset: "samples" drawn from the training split itself.

Its sample metrics are what a perfect model of the training data scores (for example the
Inception Score of the CIFAR-10 training split, which torch-fidelity publishes as 11.23678):

    gmbench evaluate examples/replay_train.py --dataset cifar10 \\
        --feature-extractor inception-v3-compat --metrics inception_score --n-samples 50000

Its memorization metrics flag it, as they should.
"""

from __future__ import annotations

import numpy as np

from gmbench.datasets import DatasetInfo, get_dataset


class ReplayTrain:
    """``sample(n)``: ``n`` training examples drawn without replacement while they last."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        index = rng.permutation(len(self.x))[:n] if n <= len(self.x) else \
            rng.integers(0, len(self.x), n)
        return self.x[index].copy()


def load(dataset: DatasetInfo, device: str) -> ReplayTrain:
    del device
    source = get_dataset(dataset.name)  # a built-in dataset by name
    return ReplayTrain(source.train.x)
