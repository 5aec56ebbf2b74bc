"""Autoencoder baseline: a convolutional autoencoder trained on squared error; samples decode
draws from a Gaussian mixture fitted to the training latents. No likelihood.

The encoder and decoder are those of :mod:`gmbench_baselines.convnets` (two stride-2
stages, a 3x3 convolution at each resolution), trained by the resumable, budgeted loop
(:mod:`.training.loop`); the latent mixture and the per-class Gaussians are fitted to the
averaged weights' codes of the training images once training stops.

``encode``/``decode`` give the reconstruction metrics; ``sample`` draws ``z`` from the
full-covariance mixture (10 components on digits, 50 on Fashion-MNIST:
:data:`~gmbench_baselines.training.settings.SETTINGS`) and returns the decoded image (floats in ``[0, 1]``).
``baselines/ae_conditional.py`` uses the same network with one Gaussian per class.

References:
    Ghosh et al. 2020, "From Variational to Deterministic Autoencoders" (ex-post density
    estimation: a Gaussian mixture fitted to the latents of a trained autoencoder).
"""

from __future__ import annotations

import numpy as np
import torch
from gmbench_baselines.convnets import conv_decoder, conv_encoder, require_fit
from gmbench_baselines.training.fitting import Fitted, flat_unit
from gmbench_baselines.training.loop import Budget, fit_images
from gmbench_baselines.training.settings import training_settings
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo

__all__ = ["Autoencoder", "build", "fit", "load"]

LEARNING_RATE = 1e-3
INSTEAD = "baselines/flow.py, ppca.py or gan.py"  # for data these networks do not take


class Autoencoder(nn.Module):
    """Convolutional autoencoder with a latent Gaussian mixture (``mix_*`` buffers) and
    per-class Gaussians (``class_*`` buffers) fitted after training."""

    def __init__(self, *, shape: tuple[int, ...], levels: int, width: int, latent: int,
                 components: int = 10, classes: int = 10) -> None:
        super().__init__()
        self.shape, self.levels, self.latent = tuple(shape), levels, latent
        self.encoder = conv_encoder(self.shape, width, latent)
        self.decoder = conv_decoder(latent, width, self.shape, self.shape[0])
        self.register_buffer("mix_weights", torch.full((components,), 1.0 / components))
        self.register_buffer("mix_means", torch.zeros(components, latent))
        self.register_buffer("mix_chol", torch.eye(latent).repeat(components, 1, 1))
        self.register_buffer("class_prior", torch.full((classes,), 1.0 / classes))
        self.register_buffer("class_means", torch.zeros(classes, latent))
        self.register_buffer("class_chol", torch.eye(latent).repeat(classes, 1, 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` integer levels -> ``(n, latent)`` codes."""
        return self.encoder(x.reshape(len(x), *self.shape).float() / (self.levels - 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, latent)`` -> ``(n, *shape)`` floats in ``[0, 1]``."""
        return torch.sigmoid(self.decoder(z))

    def _draw(self, which: torch.Tensor, means: torch.Tensor, chol: torch.Tensor
              ) -> torch.Tensor:
        eps = torch.randn(len(which), self.latent, device=means.device)
        return means[which] + (chol[which] @ eps[:, :, None])[:, :, 0]

    def sample(self, n: int) -> torch.Tensor:
        """Decode ``z`` drawn from the latent mixture: ``(n, *shape)`` floats in ``[0, 1]``."""
        comp = torch.multinomial(self.mix_weights, n, replacement=True)
        return self.decode(self._draw(comp, self.mix_means, self.mix_chol))


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str,
        budget: Budget | None = None) -> Fitted:
    """Adam on the squared error (the resumable loop); then, for the averaged weights, the
    latent mixture (scikit-learn, seeded) and the per-class Gaussians of the training codes."""
    from sklearn.mixture import GaussianMixture

    info = dataset.info
    require_fit(info, "ae", INSTEAD)
    plan = training_settings("ae", info)
    arch, components = dict(plan.arch), plan.extra["components"]
    torch.manual_seed(seed)
    model = Autoencoder(shape=info.shape, levels=int(info.levels),  # type: ignore[arg-type]
                        classes=int(info.num_classes or 1), components=components,
                        **arch).to(device)
    x = flat_unit(dataset).reshape(-1, *info.shape)
    test = flat_unit(dataset, "test").reshape(-1, *info.shape)

    def reconstruction_loss(batch: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
        batch = batch.to(device)
        return ((torch.sigmoid(model.decoder(model.encoder(batch))) - batch) ** 2).mean()

    settings = {**arch, "classes": int(info.num_classes or 1), "arch": "conv"}
    config = {**settings, "components": components}  # (fitted after training)
    fitted = fit_images(model, reconstruction_loss, x, test, family="ae", dataset=info.name,
                        config=config, settings=settings, seed=seed,
                        epochs=epochs or plan.epochs, plan=plan, budget=budget,
                        lr=LEARNING_RATE, loss="mean squared error per pixel, pixels in [0, 1]", in_nats=False)
    with torch.no_grad():
        codes = torch.cat([model.encoder(x[i:i + 1000].to(device))
                           for i in range(0, len(x), 1000)]).cpu().double().numpy()
    gmm = GaussianMixture(components, covariance_type="full", random_state=seed,
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
    fitted.tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return fitted


def build(dataset: DatasetInfo, device: str, *, cls: type[Autoencoder] = Autoencoder,
          family: str = "ae") -> Autoencoder:
    """A ``cls`` with the trained ``ae`` weights of ``dataset``."""
    require_fit(dataset, family, INSTEAD)
    tensors, config = load_weights("ae", dataset.name, device)
    model = cls(shape=dataset.shape, levels=int(dataset.levels),  # type: ignore[arg-type]
                width=config["width"], latent=config["latent"],
                components=config["components"], classes=config["classes"])
    model.load_state_dict(tensors)
    return model.to(device).eval()


def load(dataset: DatasetInfo, device: str) -> Autoencoder:
    return build(dataset, device)
