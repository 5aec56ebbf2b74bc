"""Autoencoder baseline: an MLP autoencoder trained on squared error; samples decode draws
from a Gaussian mixture fitted to the training latents. No likelihood.

``encode``/``decode`` give the reconstruction metrics; ``sample`` draws ``z`` from the
10-component full-covariance mixture and returns the decoded image (floats in ``[0, 1]``).
``baselines/ae_conditional.py`` uses the same network with one Gaussian per class.

References:
    Ghosh et al. 2020, "From Variational to Deterministic Autoencoders" (ex-post density
    estimation: a Gaussian mixture fitted to the latents of a trained autoencoder).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gmbench_baselines.training.fitting import Fitted, TrainLog, flat_unit, minimize
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo
from gmbench.errors import ModelError

__all__ = ["Autoencoder", "build", "fit", "load"]

ARCH = {"digits": {"hidden": 128, "latent": 8}, "fashion-mnist": {"hidden": 512, "latent": 16}}
EPOCHS = {"digits": 100, "fashion-mnist": 8}
MIXTURE_COMPONENTS = 10
BATCH_SIZE = 128
LEARNING_RATE = 1e-3


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2),
                         nn.ReLU(), nn.Linear(hidden // 2, n_out))


class Autoencoder(nn.Module):
    """MLP autoencoder with a latent Gaussian mixture (``mix_*`` buffers) and per-class
    Gaussians (``class_*`` buffers) fitted after training."""

    def __init__(self, *, shape: tuple[int, ...], levels: int, hidden: int, latent: int,
                 components: int = MIXTURE_COMPONENTS, classes: int = 10) -> None:
        super().__init__()
        self.shape, self.levels, self.latent = tuple(shape), levels, latent
        dim = math.prod(self.shape)
        self.encoder = _mlp(dim, hidden, latent)
        self.decoder = _mlp(latent, hidden, dim)
        self.register_buffer("mix_weights", torch.full((components,), 1.0 / components))
        self.register_buffer("mix_means", torch.zeros(components, latent))
        self.register_buffer("mix_chol", torch.eye(latent).repeat(components, 1, 1))
        self.register_buffer("class_prior", torch.full((classes,), 1.0 / classes))
        self.register_buffer("class_means", torch.zeros(classes, latent))
        self.register_buffer("class_chol", torch.eye(latent).repeat(classes, 1, 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` integer levels -> ``(n, latent)`` codes."""
        return self.encoder(x.reshape(len(x), -1).float() / (self.levels - 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, latent)`` -> ``(n, *shape)`` floats in ``[0, 1]``."""
        return torch.sigmoid(self.decoder(z)).reshape(len(z), *self.shape)

    def _draw(self, which: torch.Tensor, means: torch.Tensor, chol: torch.Tensor
              ) -> torch.Tensor:
        eps = torch.randn(len(which), self.latent, device=means.device)
        return means[which] + (chol[which] @ eps[:, :, None])[:, :, 0]

    def sample(self, n: int) -> torch.Tensor:
        """Decode ``z`` drawn from the latent mixture: ``(n, *shape)`` floats in ``[0, 1]``."""
        comp = torch.multinomial(self.mix_weights, n, replacement=True)
        return self.decode(self._draw(comp, self.mix_means, self.mix_chol))


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str) -> Fitted:
    """Adam on the squared error; then the latent mixture (scikit-learn, seeded) and the
    per-class Gaussians of the training codes."""
    from sklearn.mixture import GaussianMixture

    info = dataset.info
    epochs = epochs or EPOCHS.get(info.name, 20)
    arch = ARCH.get(info.name, ARCH["fashion-mnist"])
    torch.manual_seed(seed)
    model = Autoencoder(shape=info.shape, levels=int(info.levels),  # type: ignore[arg-type]
                        classes=int(info.num_classes or 1), **arch).to(device)
    x = flat_unit(dataset).to(device)
    def reconstruction_loss(batch: torch.Tensor) -> torch.Tensor:
        return ((torch.sigmoid(model.decoder(model.encoder(batch))) - batch) ** 2).mean()

    loss_value = minimize(model, reconstruction_loss, x, epochs=epochs, batch_size=BATCH_SIZE,
                          lr=LEARNING_RATE, seed=seed, log=TrainLog(f"ae {info.name}"),
                          describe=lambda v: f"mse {v:.5f}")
    with torch.no_grad():
        codes = model.encoder(x).cpu().double().numpy()
    gmm = GaussianMixture(MIXTURE_COMPONENTS, covariance_type="full", random_state=seed,
                          reg_covar=1e-5).fit(codes)
    model.mix_weights.copy_(torch.from_numpy(gmm.weights_).float())
    model.mix_means.copy_(torch.from_numpy(gmm.means_).float())
    model.mix_chol.copy_(torch.from_numpy(np.linalg.cholesky(gmm.covariances_)).float())
    labels = dataset.train.y
    if labels is not None:
        for c in range(int(info.num_classes or 1)):
            zc = codes[labels == c]
            cov = np.cov(zc, rowvar=False) + 1e-5 * np.eye(codes.shape[1])
            model.class_prior[c] = float((labels == c).mean())
            model.class_means[c] = torch.from_numpy(zc.mean(0)).float()
            model.class_chol[c] = torch.from_numpy(np.linalg.cholesky(cov)).float()
    config = {**arch, "components": MIXTURE_COMPONENTS, "classes": int(info.num_classes or 1)}
    return Fitted(dict(model.state_dict()), config, final_train_loss=loss_value, epochs=epochs,
                  extra={"loss": "mean squared error per pixel, pixels in [0, 1]"})


def build(dataset: DatasetInfo, device: str, *, cls: type[Autoencoder] = Autoencoder,
          family: str = "ae") -> Autoencoder:
    """A ``cls`` with the trained ``ae`` weights of ``dataset``."""
    if not dataset.is_discrete or dataset.kind != "image":
        raise ModelError(f"baselines/{family}.py is for images; {dataset.name} is not. Use "
                         "baselines/flow.py, ppca.py or gan.py there.")
    tensors, config = load_weights("ae", dataset.name, device)
    model = cls(shape=dataset.shape, levels=int(dataset.levels),  # type: ignore[arg-type]
                hidden=config["hidden"], latent=config["latent"],
                components=config["components"], classes=config["classes"])
    model.load_state_dict(tensors)
    return model.to(device).eval()


def load(dataset: DatasetInfo, device: str) -> Autoencoder:
    return build(dataset, device)
