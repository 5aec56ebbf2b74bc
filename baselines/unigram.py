"""Byte frequencies: the floor of text models.

``p(w) = (count(w) + 1) / (N + 256)``, the add-one-smoothed frequency of each byte in the
training documents, whatever came before it. Counted when loaded (no weights file).

Evaluate: ``gmbench evaluate baselines/unigram.py --dataset shakespeare``.
"""

from __future__ import annotations

import numpy as np
import torch

from gmbench.datasets import DatasetInfo, get_dataset

__all__ = ["Unigram", "load"]


class Unigram(torch.nn.Module):
    """``token_log_prob(x)``: every byte's smoothed training frequency, ``(n, T)``."""

    log_prob_kind = "exact"
    context_length = 1024  # no context is used: long windows, few calls

    def __init__(self, data: np.ndarray, sample_length: int = 256) -> None:
        super().__init__()
        counts = np.bincount(data, minlength=256).astype(np.float64) + 1.0
        self.register_buffer("log_probs", torch.from_numpy(np.log(counts / counts.sum())))
        self.sample_length = sample_length

    def token_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_probs[x.long()]

    def sample(self, n: int) -> torch.Tensor:
        return torch.multinomial(self.log_probs.exp(), n * self.sample_length,
                                 replacement=True).view(n, self.sample_length)


def load(dataset: DatasetInfo, device: str) -> Unigram:
    docs = get_dataset(dataset.name).train.documents
    if docs is None:
        raise ValueError(f"unigram needs a text dataset; {dataset.name} is {dataset.kind} data")
    return Unigram(docs.data).to(device)
