"""The ground truth of the generated text ``text-markov``, wrapped as a model: its exact
next-byte probabilities in any window (``token_log_prob``) and exact passages.

Evaluate: ``gmbench evaluate baselines/text_truth.py --dataset text-markov``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gmbench.datasets import DatasetInfo, get_dataset
from gmbench.errors import ModelError

__all__ = ["REFERENCE", "TextTruthModel", "load"]

REFERENCE = "the text's own distribution: the ideal, not a competitor"


class TextTruthModel:
    """``token_log_prob`` and ``sample`` of a generated text's chain."""

    log_prob_kind = "exact"

    def __init__(self, truth: Any) -> None:
        self.truth = truth
        self.context_length = truth.context_length

    def token_log_prob(self, x: Any) -> np.ndarray:
        return self.truth.token_log_prob(np.asarray(x.cpu() if hasattr(x, "cpu") else x))

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        return self.truth.sample(n, np.random.default_rng(seed))


def load(dataset: DatasetInfo, device: str) -> TextTruthModel:
    del device
    truth = get_dataset(dataset.name).truth
    if truth is None or dataset.kind != "text":
        raise ModelError(f"baselines/text_truth.py needs a generated text with a known chain; "
                         f"{dataset.name} is not one. Use --dataset text-markov (other "
                         "generated data: baselines/truth.py).")
    return TextTruthModel(truth)
