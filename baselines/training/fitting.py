"""What every baseline's ``fit`` returns, and the small pieces of a seeded training loop
(the resumable one is :mod:`.loop`)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gmbench.datasets import Dataset

__all__ = ["Fitted", "TrainLog", "flat_levels", "flat_unit", "minibatches"]


@dataclass
class Fitted:
    """A trained baseline: its tensors, the config that rebuilds it, and how training went."""

    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]
    final_train_loss: float | None
    epochs: float  # fractional where a budget stopped training mid-epoch
    extra: dict[str, Any] = field(default_factory=dict)


class TrainLog:
    """Progress lines on stderr: ``[family dataset] epoch 3/20 step 400 loss 1.234 (12.3s)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = time.time()

    def __call__(self, message: str) -> None:
        print(f"[{self.name}] {message} ({time.time() - self.start:.1f}s)", file=sys.stderr,
              flush=True)


def flat_levels(dataset: Dataset, split: str = "train") -> torch.Tensor:
    """A split's images as integer levels, ``(n, D)`` int64."""
    x = getattr(dataset, split).x
    return torch.from_numpy(x.reshape(len(x), -1).astype(np.int64))


def flat_unit(dataset: Dataset, split: str = "train") -> torch.Tensor:
    """A split's images scaled to ``[0, 1]`` (level / (levels - 1)), ``(n, D)`` float32."""
    levels = int(dataset.info.levels)  # type: ignore[arg-type]
    return flat_levels(dataset, split).float() / (levels - 1)


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of one shuffled epoch, ``ceil(n / batch_size)`` batches (the last may be short)."""
    order = torch.randperm(n, generator=generator)
    for i in range(math.ceil(n / batch_size)):
        yield order[i * batch_size:(i + 1) * batch_size]
