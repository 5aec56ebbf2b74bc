"""Variational autoencoder with a discretized-logistic decoder; ``log_prob`` is the IWAE
estimate of the log-mass (``log_prob_kind = "estimate"``), ``elbo`` the evidence lower bound.

Encoder ``q(z|x) = N(mu(x), diag sigma(x)^2)`` and decoder ``p(x|z) = prod_d
DiscretizedLogistic(x_d; m_d(z), s_d(z))`` are MLPs; ``p(z) = N(0, I)``. The likelihood is a
log-mass in the data space (integer levels), so it is directly comparable with the
categorical floor. ``baselines/vae_elbo.py`` scores the same weights by the ELBO.

References:
    Kingma & Welling 2014, "Auto-Encoding Variational Bayes";
    Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders" (the IWAE bound);
    Salimans et al. 2017, "PixelCNN++" (discretized logistic).
"""

from __future__ import annotations

import math

import torch
from gmbench_baselines.densities import discretized_logistic_log_mass, std_normal_log_density
from gmbench_baselines.training.fitting import Fitted, TrainLog, flat_levels, minimize
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo
from gmbench.errors import ModelError

__all__ = ["IWAE_SAMPLES", "VAE", "fit", "load"]

IWAE_SAMPLES = 32  # importance samples k of the IWAE estimate
ARCH = {"digits": {"hidden": 256, "latent": 8}, "fashion-mnist": {"hidden": 512, "latent": 32}}
EPOCHS = {"digits": 150, "fashion-mnist": 12}
BATCH_SIZE = 128
LEARNING_RATE = 1e-3


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class VAE(nn.Module):
    """MLP VAE over ``D`` discrete dimensions with ``levels`` values each."""

    log_prob_space = "data"
    log_prob_kind = "estimate"

    def __init__(self, *, shape: tuple[int, ...], levels: int, hidden: int, latent: int,
                 iwae_samples: int = IWAE_SAMPLES) -> None:
        super().__init__()
        self.shape, self.levels, self.latent = tuple(shape), levels, latent
        self.dim = math.prod(self.shape)
        self.iwae_samples = iwae_samples
        self.encoder = _mlp(self.dim, hidden, 2 * latent)
        self.decoder = _mlp(latent, hidden, 2 * self.dim)

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x.reshape(len(x), -1).float() / (self.levels - 1) - 1.0  # (n, D) in [-1,1]

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z|x)``: mean and log-std, each ``(n, latent)``."""
        mu, log_std = self.encoder(self._scaled(x)).chunk(2, dim=-1)
        return mu, log_std.clamp(-8.0, 4.0)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)``: ``x`` ``(n, D)`` levels, ``z`` ``(n, latent)`` -> ``(n,)`` nats."""
        mean, log_scale = self.decoder(z).chunk(2, dim=-1)
        return discretized_logistic_log_mass(x, mean, log_scale, levels=self.levels).sum(-1)

    def _log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``log p(x, z_i) - log q(z_i|x)`` for ``k`` draws ``z_i ~ q``: ``(k, n)``."""
        flat = x.reshape(len(x), -1).long()
        mu, log_std = self.posterior(flat)
        eps = torch.randn(k, *mu.shape, device=mu.device)
        z = mu + eps * log_std.exp()  # (k, n, latent)
        log_q = std_normal_log_density(eps) - log_std.sum(-1)
        log_px = self.log_likelihood(flat.repeat(k, 1), z.reshape(-1, self.latent))
        return log_px.reshape(k, len(x)) + std_normal_log_density(z) - log_q

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Single-sample ELBO (analytic KL), ``(n, *shape)`` levels -> ``(n,)`` nats."""
        flat = x.reshape(len(x), -1).long()
        mu, log_std = self.posterior(flat)
        z = mu + torch.randn_like(mu) * log_std.exp()
        kl = 0.5 * (mu**2 + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1)
        return self.log_likelihood(flat, z) - kl

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """IWAE-k estimate of ``log P(x)``, ``(n, *shape)`` levels -> ``(n,)`` nats."""
        chunks, k_left = [], self.iwae_samples
        while k_left > 0:  # bounded memory: at most 16 importance samples per pass
            k = min(16, k_left)
            chunks.append(self._log_weights(x, k))
            k_left -= k
        return torch.logsumexp(torch.cat(chunks), dim=0) - math.log(self.iwae_samples)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        mean, _ = self.decoder(z).chunk(2, dim=-1)
        return ((mean + 1) / 2).clamp(0, 1).reshape(len(z), *self.shape)

    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)`` integer levels drawn from ``p(x|z) p(z)`` (pixel noise included)."""
        z = torch.randn(n, self.latent, device=self.encoder[0].weight.device)
        mean, log_scale = self.decoder(z).chunk(2, dim=-1)
        u = torch.rand_like(mean).clamp(1e-6, 1 - 1e-6)
        c = mean + log_scale.clamp(min=-7).exp() * (torch.log(u) - torch.log1p(-u))
        levels = torch.round((c.clamp(-1, 1) + 1) / 2 * (self.levels - 1)).long()
        return levels.reshape(n, *self.shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean, ``(n, latent)``."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean as floats in ``[0, 1]``, ``(n, *shape)``."""
        return self.decode_mean(z)


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str) -> Fitted:
    """Adam on the negative single-sample ELBO; the loss is logged in nats per example."""
    info = dataset.info
    epochs = epochs or EPOCHS.get(info.name, 20)
    arch = ARCH.get(info.name, ARCH["fashion-mnist"])
    torch.manual_seed(seed)
    model = VAE(shape=info.shape, levels=int(info.levels), **arch).to(device)  # type: ignore[arg-type]
    x = flat_levels(dataset).to(device)
    loss_value = minimize(
        model, lambda batch: -model.elbo(batch).mean(), x, epochs=epochs,
        batch_size=BATCH_SIZE, lr=LEARNING_RATE, seed=seed, log=TrainLog(f"vae {info.name}"),
        describe=lambda v: f"-elbo {v:.2f} nats ({v / (model.dim * math.log(2)):.3f} bits/dim)")
    tensors = {k: v for k, v in model.state_dict().items()}
    return Fitted(tensors, {"hidden": arch["hidden"], "latent": arch["latent"]},
                  final_train_loss=loss_value, epochs=epochs,
                  extra={"loss": "negative ELBO, nats per example"})


def build(dataset: DatasetInfo, device: str, *, cls: type[VAE] = VAE, family: str = "vae"
          ) -> VAE:
    """A ``cls`` (a VAE or subclass) with the trained ``vae`` weights of ``dataset``."""
    if not dataset.is_discrete:
        raise ModelError(f"baselines/{family}.py is for discrete images; {dataset.name} is "
                         "continuous. Use baselines/flow.py or baselines/ppca.py there.")
    tensors, config = load_weights("vae", dataset.name, device)
    model = cls(shape=dataset.shape, levels=int(dataset.levels),  # type: ignore[arg-type]
                hidden=config["hidden"], latent=config["latent"])
    model.load_state_dict(tensors)
    return model.to(device).eval()


def load(dataset: DatasetInfo, device: str) -> VAE:
    return build(dataset, device)
