"""Probabilistic PCA: ``v = mu + W z + sigma * eps`` with ``z ~ N(0, I_q)``, fitted in closed
form (maximum likelihood), exact likelihood.

On discrete images the model is a density on the dequantized pixels ``y in [0,1)^D``
(``log_prob_space = "dequantized"``): PPCA is fitted to ``v = logit(alpha + (1-2 alpha) y)``,
the RealNVP preprocessing, and ``log p(y)`` adds the log-Jacobian of that map. (Fitted to
``y`` itself a Gaussian wastes its mass outside ``[0,1)`` and on blank background pixels and
scores worse than the independent categorical.) On continuous data PPCA is fitted to ``x``.

References:
    Tipping & Bishop 1999, "Probabilistic principal component analysis", eqs. 7-8.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gmbench_baselines.densities import LOG_2PI, logit_inverse, logit_transform
from gmbench_baselines.training.fitting import Fitted, flat_levels
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo

__all__ = ["PPCA", "fit", "fit_ppca", "load"]

ALPHA = 1e-4  # logit margin for dequantized pixels
MAX_COMPONENTS = 128


def fit_ppca(v: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Maximum-likelihood PPCA (Tipping & Bishop 1999).

    Args:
        v: data, ``(n, D)``.
        q: latent dimension, ``1 <= q < D``.

    Returns:
        ``mean (D,)``, ``W (D, q)`` and the noise variance ``sigma2`` (the mean of the
        ``D - q`` discarded eigenvalues of the sample covariance).
    """
    mean = v.mean(0)
    cov = np.cov(v, rowvar=False, bias=True).reshape(v.shape[1], v.shape[1])
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    sigma2 = float(evals[q:].mean())
    w = evecs[:, :q] * np.sqrt(np.maximum(evals[:q] - sigma2, 0.0))
    return mean, w, sigma2


class PPCA(nn.Module):
    """PPCA, in the logit space of dequantized pixels (``alpha`` set) or in data space."""

    log_prob_kind = "exact"

    def __init__(self, mean: torch.Tensor, w: torch.Tensor, sigma2: float, *,
                 shape: tuple[int, ...], alpha: float | None) -> None:
        super().__init__()
        self.shape, self.alpha, self.sigma2 = shape, alpha, float(sigma2)
        self.log_prob_space = "dequantized" if alpha is not None else "data"
        cov = w.double() @ w.double().T + self.sigma2 * torch.eye(len(mean), dtype=torch.float64)
        self.register_buffer("mean", mean.double())
        self.register_buffer("w", w.double())
        self.register_buffer("chol", torch.linalg.cholesky(cov))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` -> ``(n,)`` log-density in nats (on ``[0,1)^D`` for images)."""
        v = x.reshape(len(x), -1).double()
        log_det = torch.zeros(len(x), dtype=torch.float64, device=v.device)
        if self.alpha is not None:
            v, log_det = logit_transform(v, alpha=self.alpha)
        r = torch.linalg.solve_triangular(self.chol, (v - self.mean).T, upper=False)  # (D, n)
        d = v.shape[1]
        log_n = (-0.5 * (r**2).sum(0) - torch.log(torch.diagonal(self.chol)).sum()
                 - 0.5 * d * LOG_2PI)
        return log_n + log_det

    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)`` draws: floats in ``[0, 1]`` for images, data values otherwise."""
        z = torch.randn(n, self.w.shape[1], dtype=torch.float64, device=self.w.device)
        eps = torch.randn(n, self.w.shape[0], dtype=torch.float64, device=self.w.device)
        v = self.mean + z @ self.w.T + math.sqrt(self.sigma2) * eps
        if self.alpha is not None:
            v = logit_inverse(v, alpha=self.alpha)
        return v.float().reshape(n, *self.shape)


def latent_dim(info: DatasetInfo) -> int:
    """``min(128, D // 2)`` for images; ``D - 1`` (the full-covariance Gaussian) otherwise."""
    return max(1, info.dim - 1) if not info.is_discrete else min(MAX_COMPONENTS, info.dim // 2)


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str) -> Fitted:
    """Closed form; for images on one seeded dequantization of the train split."""
    del epochs, device
    info = dataset.info
    q = latent_dim(info)
    alpha = ALPHA if info.is_discrete else None
    if info.is_discrete:
        x = flat_levels(dataset).double()
        u = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        v, _ = logit_transform((x + u) / info.levels, alpha=ALPHA)
        v = v.numpy()
    else:
        v = dataset.train.x.reshape(len(dataset.train), -1).astype(np.float64)
    mean, w, sigma2 = fit_ppca(v, q)
    model = PPCA(torch.from_numpy(mean), torch.from_numpy(w), sigma2, shape=info.shape,
                 alpha=alpha)
    with torch.no_grad():
        y = torch.from_numpy(v) if alpha is None else ((x + u) / info.levels)
        nll = float(-model.log_prob(y).mean())
    if alpha is not None:
        nll += info.dim * math.log(info.levels)
    tensors = {"mean": torch.from_numpy(mean).float(), "w": torch.from_numpy(w).float(),
               "sigma2": torch.tensor([sigma2], dtype=torch.float64)}
    return Fitted(tensors, {"q": q, "alpha": alpha}, final_train_loss=nll, epochs=0)


def load(dataset: DatasetInfo, device: str) -> PPCA:
    tensors, config = load_weights("ppca", dataset.name, device)
    return PPCA(tensors["mean"], tensors["w"], float(tensors["sigma2"][0]), shape=dataset.shape,
                alpha=config["alpha"]).to(device)
