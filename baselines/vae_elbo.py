"""The VAE baseline (same weights as ``baselines/vae.py``) scored by its single-sample ELBO:
``log_prob_kind = "lower_bound"``. Beside ``vae`` (the IWAE estimate) on a leaderboard it
shows how loose the bound is.
"""

from __future__ import annotations

import torch
from gmbench_baselines.vae import VAE, build

from gmbench.datasets import DatasetInfo

__all__ = ["ElboVAE", "load"]


class ElboVAE(VAE):
    """A :class:`~baselines.vae.VAE` whose ``log_prob`` is the ELBO."""

    log_prob_kind = "lower_bound"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.elbo(x)


def load(dataset: DatasetInfo, device: str) -> ElboVAE:
    model = build(dataset, device, cls=ElboVAE, family="vae_elbo")
    assert isinstance(model, ElboVAE)
    return model
