"""GAN baseline, samples only: a DCGAN on images, an MLP GAN on continuous data, both
trained with the non-saturating loss.

Images: the generator maps ``z ~ N(0, I_64)`` through a linear layer and two stride-2
transposed convolutions (batch norm, ReLU) to ``(C, H, W)`` floats in ``[0, 1]``; the
discriminator mirrors it with stride-2 convolutions and leaky ReLUs.

References:
    Goodfellow et al. 2014, "Generative Adversarial Nets";
    Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep
    Convolutional GANs" (DCGAN: architecture, Adam(2e-4, beta1=0.5)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from gmbench_baselines.training.fitting import Fitted, TrainLog, flat_unit, minibatches
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo

__all__ = ["Generator", "fit", "load"]

ARCH = {"digits": {"latent": 32, "width": 16}, "fashion-mnist": {"latent": 64, "width": 32},
        "continuous": {"latent": 8, "width": 128}}
EPOCHS = {"digits": 150, "fashion-mnist": 3, "continuous": 40}
BATCH_SIZE = {"digits": 64, "fashion-mnist": 64, "continuous": 256}
LEARNING_RATE = 2e-4


def _conv_nets(shape: tuple[int, ...], latent: int, width: int) -> tuple[nn.Module, nn.Module]:
    c, h, _ = shape
    s = h // 4
    gen = nn.Sequential(
        nn.Linear(latent, 4 * width * s * s), nn.BatchNorm1d(4 * width * s * s), nn.ReLU(),
        nn.Unflatten(1, (4 * width, s, s)),
        nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.ConvTranspose2d(2 * width, c, 4, 2, 1), nn.Sigmoid())
    disc = nn.Sequential(
        nn.Conv2d(c, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(4 * width * s * s, 1))
    return gen, disc


def _mlp_nets(dim: int, latent: int, width: int) -> tuple[nn.Module, nn.Module]:
    gen = nn.Sequential(nn.Linear(latent, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                        nn.Linear(width, dim))
    disc = nn.Sequential(nn.Linear(dim, width), nn.LeakyReLU(0.2), nn.Linear(width, width),
                         nn.LeakyReLU(0.2), nn.Linear(width, 1))
    return gen, disc


class Generator(nn.Module):
    """The generator (and, for training, the discriminator ``disc``) of one dataset."""

    def __init__(self, *, shape: tuple[int, ...], image: bool, latent: int, width: int) -> None:
        super().__init__()
        self.shape, self.image, self.latent = tuple(shape), image, latent
        dim = math.prod(self.shape)
        self.net, disc = (_conv_nets(self.shape, latent, width) if image
                          else _mlp_nets(dim, latent, width))
        self.disc = [disc]  # a list: not a submodule, so not in the saved weights
        self.register_buffer("shift", torch.zeros(dim))  # continuous data standardization
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, latent)`` -> ``(n, *shape)``: ``[0, 1]`` images or standardized data."""
        return self.net(z).reshape(len(z), *self.shape)

    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)``: images as floats in ``[0, 1]``, continuous data in data units."""
        z = torch.randn(n, self.latent, device=self.shift.device)
        out = self(z)
        if self.image:
            return out
        return out * self.scale + self.shift


def _key(info: DatasetInfo) -> str:
    return info.name if info.name in ARCH else "continuous"


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str) -> Fitted:
    """Alternating Adam steps on the non-saturating GAN losses (one D step per G step)."""
    info = dataset.info
    key = _key(info)
    image = info.kind == "image"
    epochs = epochs or EPOCHS[key]
    arch = ARCH[key]
    torch.manual_seed(seed)
    model = Generator(shape=info.shape, image=image, **arch).to(device)
    disc = model.disc[0].to(device)
    if image:
        x = flat_unit(dataset).reshape(-1, *info.shape)
    else:
        x = torch.from_numpy(dataset.train.x).float()
        model.shift.copy_(x.mean(0))
        model.scale.copy_(x.std(0))
        x = (x - model.shift.cpu()) / model.scale.cpu()
    x = x.to(device)
    opt_g = torch.optim.Adam(model.net.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    log = TrainLog(f"gan {info.name}")
    d_total = g_total = 0.0
    for epoch in range(epochs):
        d_total = g_total = 0.0
        steps = 0
        for idx in minibatches(len(x), BATCH_SIZE[key], gen):
            real = x[idx]
            if image:  # the discriminator sees [-1, 1]
                real = 2 * real - 1
            z = torch.randn(len(idx), model.latent, device=device)
            fake = model(z)
            fake_in = 2 * fake - 1 if image else fake
            d_loss = (F.softplus(-disc(real)).mean() + F.softplus(disc(fake_in.detach())).mean())
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = F.softplus(-disc(fake_in)).mean()
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            d_total += d_loss.item()
            g_total += g_loss.item()
            steps += 1
        d_total, g_total = d_total / steps, g_total / steps
        if epoch % max(1, epochs // 15) == 0 or epoch == epochs - 1:
            log(f"epoch {epoch + 1}/{epochs} d_loss {d_total:.3f} g_loss {g_total:.3f}")
    config = {**arch, "image": image}
    return Fitted(dict(model.state_dict()), config, final_train_loss=g_total, epochs=epochs,
                  extra={"loss": "generator non-saturating loss (last epoch mean)",
                         "final_discriminator_loss": d_total})


def load(dataset: DatasetInfo, device: str) -> Generator:
    tensors, config = load_weights("gan", dataset.name, device)
    model = Generator(shape=dataset.shape, image=config["image"], latent=config["latent"],
                      width=config["width"])
    model.load_state_dict(tensors)
    return model.to(device).eval()
