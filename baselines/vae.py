"""Convolutional variational autoencoder with a discretized-logistic-mixture decoder;
``log_prob`` is the IWAE estimate of the log-mass (``log_prob_kind = "estimate"``), ``elbo``
the evidence lower bound.

Encoder ``q(z|x) = N(mu(x), diag sigma(x)^2)`` and decoder ``p(x|z) = prod_d sum_k
pi_dk(z) DiscretizedLogistic(x_d; m_dk(z), s_dk(z))`` are the convolutional networks of
:mod:`gmbench_baselines.convnets` (two stride-2 stages, a 3x3 convolution at each
resolution); ``p(z) = N(0, I)``. The likelihood is a log-mass in the data space (integer
levels), so it is directly comparable with the categorical floor and the PixelCNN.
``baselines/vae_elbo.py`` scores the same weights by the ELBO. Trained by the resumable,
budgeted loop (:mod:`.training.loop`) on the single-sample ELBO.

References:
    Kingma & Welling 2014, "Auto-Encoding Variational Bayes";
    Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders" (the IWAE bound);
    Salimans et al. 2017, "PixelCNN++" (discretized logistic mixture).
"""

from __future__ import annotations

import math

import torch
from gmbench_baselines.convnets import conv_decoder, conv_encoder, require_fit
from gmbench_baselines.densities import (
    discretized_logistic_mixture_log_mass,
    std_normal_log_density,
)
from gmbench_baselines.training.fitting import Fitted, flat_levels
from gmbench_baselines.training.loop import Budget, fit_images
from gmbench_baselines.training.settings import training_settings
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo

__all__ = ["IWAE_SAMPLES", "VAE", "build", "fit", "load"]

IWAE_SAMPLES = 32  # importance samples k of the IWAE estimate
IWAE_CHUNK = 8  # importance samples per decoder pass (bounded memory)
LEARNING_RATE = 1e-3
INSTEAD = "baselines/flow.py or baselines/ppca.py"  # for data these networks do not take


class VAE(nn.Module):
    """Convolutional VAE over ``(C, H, W)`` images of ``levels`` values per pixel."""

    log_prob_space = "data"
    log_prob_kind = "estimate"

    def __init__(self, *, shape: tuple[int, ...], levels: int, width: int, latent: int,
                 mixture: int, iwae_samples: int = IWAE_SAMPLES) -> None:
        super().__init__()
        self.shape, self.levels, self.latent = tuple(shape), levels, latent
        self.mixture = mixture
        self.dim = math.prod(self.shape)
        self.iwae_samples = iwae_samples
        self.encoder = conv_encoder(self.shape, width, 2 * latent)
        self.decoder = conv_decoder(latent, width, self.shape, 3 * mixture * self.shape[0])

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        """Levels -> ``(n, C, H, W)`` floats in ``[-1, 1]``."""
        return 2.0 * x.reshape(len(x), *self.shape).float() / (self.levels - 1) - 1.0

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z|x)``: mean and log-std, each ``(n, latent)``."""
        mu, log_std = self.encoder(self._scaled(x)).chunk(2, dim=-1)
        return mu, log_std.clamp(-8.0, 4.0)

    def decoder_params(self, z: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture logits, means and log-scales of ``p(x|z)``, each ``(n, K, D)``."""
        out = self.decoder(z).reshape(len(z), 3, self.mixture, self.dim)
        return out[:, 0], out[:, 1], out[:, 2]

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)``: ``x`` ``(n, D)`` levels, ``z`` ``(n, latent)`` -> ``(n,)`` nats."""
        logits, mean, log_scale = self.decoder_params(z)
        return discretized_logistic_mixture_log_mass(
            x.reshape(len(x), -1), logits, mean, log_scale, levels=self.levels).sum(-1)

    def _log_weights(self, x: torch.Tensor, k: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """``log p(x, z_i) - log q(z_i|x)`` for ``k`` draws ``z_i ~ q``: ``(k, n)``."""
        flat = x.reshape(len(x), -1).long()
        mu, log_std = self.posterior(flat)
        eps = torch.randn(k, *mu.shape, generator=generator).to(mu.device)
        z = mu + eps * log_std.exp()  # (k, n, latent)
        log_q = std_normal_log_density(eps) - log_std.sum(-1)
        log_px = self.log_likelihood(flat.repeat(k, 1), z.reshape(-1, self.latent))
        return log_px.reshape(k, len(x)) + std_normal_log_density(z) - log_q

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Single-sample ELBO (analytic KL), ``(n, *shape)`` levels -> ``(n,)`` nats."""
        flat = x.reshape(len(x), -1).long()
        mu, log_std = self.posterior(flat)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = mu + eps * log_std.exp()
        kl = 0.5 * (mu**2 + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1)
        return self.log_likelihood(flat, z) - kl

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """IWAE-k estimate of ``log P(x)``, ``(n, *shape)`` levels -> ``(n,)`` nats."""
        chunks, k_left = [], self.iwae_samples
        while k_left > 0:
            k = min(IWAE_CHUNK, k_left)
            chunks.append(self._log_weights(x, k))
            k_left -= k
        return torch.logsumexp(torch.cat(chunks), dim=0) - math.log(self.iwae_samples)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of ``p(x|z)`` (mixture of logistic means, clipped to the pixel range) as
        floats in ``[0, 1]``, ``(n, *shape)``."""
        logits, mean, _ = self.decoder_params(z)
        m = (torch.softmax(logits, dim=1) * mean.clamp(-1, 1)).sum(1)
        return ((m + 1) / 2).clamp(0, 1).reshape(len(z), *self.shape)

    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)`` integer levels drawn from ``p(x|z) p(z)`` (pixel noise included)."""
        return self.sample_given(torch.randn(n, self.latent,
                                             device=self.encoder[0].weight.device))

    def sample_given(self, z: torch.Tensor) -> torch.Tensor:
        """One draw from ``p(x|z)`` per code: ``(n, latent)`` -> ``(n, *shape)`` levels."""
        n = len(z)
        logits, mean, log_scale = self.decoder_params(z)
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-10, 1 - 1e-7)))
        pick = (logits + gumbel).argmax(1, keepdim=True)  # a component per pixel
        m = mean.gather(1, pick)[:, 0]
        s = log_scale.gather(1, pick)[:, 0].clamp(min=-7).exp()
        u = torch.rand_like(m).clamp(1e-6, 1 - 1e-6)
        c = m + s * (torch.log(u) - torch.log1p(-u))
        levels = torch.round((c.clamp(-1, 1) + 1) / 2 * (self.levels - 1)).long()
        return levels.reshape(n, *self.shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean, ``(n, latent)``."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean as floats in ``[0, 1]``, ``(n, *shape)``."""
        return self.decode_mean(z)


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str,
        budget: Budget | None = None) -> Fitted:
    """Adam on the negative single-sample ELBO (the resumable loop); the loss and the curve
    are in nats per example and bits per dimension (the curve's held-out value is the
    negative ELBO, an upper bound on the bits/dim that the IWAE estimate tightens)."""
    info = dataset.info
    require_fit(info, "vae", INSTEAD)
    plan = training_settings("vae", info)
    arch = dict(plan.arch)
    torch.manual_seed(seed)
    model = VAE(shape=info.shape, levels=int(info.levels),  # type: ignore[arg-type]
                **arch).to(device)
    x = flat_levels(dataset).reshape(-1, *info.shape)
    test = flat_levels(dataset, "test").reshape(-1, *info.shape)

    def loss_of(batch: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
        return -model.elbo(batch.to(device), noise).mean()

    config = {**arch, "arch": "conv"}
    return fit_images(model, loss_of, x, test, family="vae", dataset=info.name, config=config,
                      settings=config, seed=seed, epochs=epochs or plan.epochs, plan=plan,
                      budget=budget, lr=LEARNING_RATE, loss="negative ELBO, nats per example")


def build(dataset: DatasetInfo, device: str, *, cls: type[VAE] = VAE, family: str = "vae"
          ) -> VAE:
    """A ``cls`` (a VAE or subclass) with the trained ``vae`` weights of ``dataset``."""
    require_fit(dataset, family, INSTEAD)
    tensors, config = load_weights("vae", dataset.name, device)
    model = cls(shape=dataset.shape, levels=int(dataset.levels),  # type: ignore[arg-type]
                width=config["width"], latent=config["latent"], mixture=config["mixture"])
    model.load_state_dict(tensors)
    return model.to(device).eval()


def load(dataset: DatasetInfo, device: str) -> VAE:
    return build(dataset, device)
