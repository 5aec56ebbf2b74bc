"""The text memorizer: replays passages of the training text. The reference point that the
text memorization check (``verbatim_copy_rate``) must flag.

Every sample is ``sample_length`` consecutive bytes at a uniformly chosen offset of a training
document (samples only: it scores nothing). It needs no weights: it reads the training split.

Evaluate: ``gmbench evaluate baselines/text_memorizer.py --dataset shakespeare``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gmbench.datasets import DatasetInfo, Documents, get_dataset
from gmbench.errors import ModelError

__all__ = ["REFERENCE", "TextMemorizer", "load"]

REFERENCE = ("replays training text: the reference the memorization checks must flag, not a "
             "competitor")


class TextMemorizer(nn.Module):
    """``sample(n)``: ``(n, sample_length)`` bytes copied from the training documents."""

    def __init__(self, docs: Documents, sample_length: int) -> None:
        super().__init__()
        self.sample_length = sample_length
        starts = [np.arange(docs.starts[d], docs.starts[d + 1] - sample_length + 1)
                  for d in range(len(docs))]
        self.offsets = torch.from_numpy(np.concatenate(starts))
        self.register_buffer("data", torch.from_numpy(docs.data.astype(np.int64)))

    def sample(self, n: int) -> torch.Tensor:
        at = self.offsets[torch.randint(len(self.offsets), (n,))]
        return self.data[at[:, None] + torch.arange(self.sample_length)]


def load(dataset: DatasetInfo, device: str) -> TextMemorizer:
    docs = get_dataset(dataset.name).train.documents
    if docs is None:
        raise ModelError(f"baselines/text_memorizer.py replays text; {dataset.name} is "
                         f"{dataset.kind} data (baselines/memorizer.py replays other data).")
    return TextMemorizer(docs, dataset.shape[0]).to(device)
