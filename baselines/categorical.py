"""Independent per-dimension categorical: the likelihood floor of discrete data.

``P(x) = prod_d pi_d[x_d]`` with ``pi_d`` the add-one-smoothed frequencies of level values at
dimension ``d`` in the training split; exact log-mass in the data space. Samples draw every
dimension independently, so they show what "no structure at all" scores.

Evaluate: ``gmbench evaluate baselines/categorical.py --dataset digits``.
"""

from __future__ import annotations

import torch
from gmbench_baselines.training.fitting import Fitted, flat_levels
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo
from gmbench.errors import ModelError

__all__ = ["IndependentCategorical", "fit", "load"]

SMOOTHING = 1.0  # add-one (Laplace) pseudo-count per level


class IndependentCategorical(nn.Module):
    """``log_probs``: ``(D, levels)`` per-dimension log-probabilities."""

    log_prob_space = "data"
    log_prob_kind = "exact"

    def __init__(self, log_probs: torch.Tensor, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("log_probs", log_probs)
        self.shape = shape

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` integer levels -> ``(n,)`` log-mass in nats."""
        flat = x.reshape(len(x), -1).long()  # (n, D)
        dims = torch.arange(flat.shape[1], device=flat.device)
        return self.log_probs[dims, flat].sum(-1)

    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)`` integer levels, every dimension independent."""
        draws = torch.multinomial(self.log_probs.exp(), n, replacement=True)  # (D, n)
        return draws.T.reshape(n, *self.shape)


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str) -> Fitted:
    """Smoothed level counts per dimension (closed form; ``seed``/``epochs`` unused)."""
    del seed, epochs, device
    levels = int(dataset.info.levels)  # type: ignore[arg-type]
    x = flat_levels(dataset)  # (n, D)
    counts = torch.zeros(x.shape[1], levels, dtype=torch.float64)
    counts.scatter_add_(1, x.T.contiguous(), torch.ones(x.shape[1], x.shape[0], dtype=torch.float64))
    probs = (counts + SMOOTHING) / (counts + SMOOTHING).sum(1, keepdim=True)
    log_probs = probs.log().float()
    nll = float(-log_probs[torch.arange(x.shape[1]), x].sum(-1).mean())
    return Fitted({"log_probs": log_probs}, {"smoothing": SMOOTHING, "levels": levels},
                  final_train_loss=nll, epochs=0)


def load(dataset: DatasetInfo, device: str) -> IndependentCategorical:
    if not dataset.is_discrete:
        raise ModelError(f"baselines/categorical.py is for discrete data; {dataset.name} is "
                         "continuous. Use baselines/ppca.py or baselines/flow.py there.")
    tensors, _ = load_weights("categorical", dataset.name, device)
    return IndependentCategorical(tensors["log_probs"], dataset.shape).to(device)
