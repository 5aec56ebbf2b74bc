"""GAN baseline, samples only: on images a DCGAN-style convolutional GAN with a spectrally
normalized discriminator and the hinge loss; on continuous data an MLP GAN with the
non-saturating loss.

Images: the generator maps ``z ~ N(0, I)`` through the convolutional decoder of
:mod:`gmbench_baselines.convnets` (a linear layer, two stride-2 transposed convolutions and
a 3x3 convolution at each resolution, batch norm and ReLU) to ``(C, H, W)`` floats in
``[0, 1]``; the discriminator mirrors it with stride-2 convolutions, leaky ReLUs and
spectral normalization on every layer. Training runs in the resumable, budgeted loop
(:mod:`.training.loop`): one discriminator and one generator Adam step per batch, an
exponential moving average of the generator's weights (the saved weights, with batch-norm
statistics re-estimated for them), and a learning curve of the FID of 2,000 samples in the
bundled classifier's features.

References:
    Goodfellow et al. 2014, "Generative Adversarial Nets";
    Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep
    Convolutional GANs" (DCGAN);
    Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks" (the
    stabiliser, the hinge loss, Adam(2e-4, beta1=0.5));
    Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from gmbench_baselines.convnets import conv_decoder, fits
from gmbench_baselines.training.fitting import Fitted, TrainLog, flat_unit, minibatches
from gmbench_baselines.training.loop import Budget, fit_images
from gmbench_baselines.training.probes import fid_probe
from gmbench_baselines.training.settings import training_settings
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo
from gmbench.rng import child_seed

__all__ = ["Generator", "fit", "load"]

LEARNING_RATE = 2e-4
BETAS = (0.5, 0.999)
BN_BATCHES = 40  # batches of 250 draws that re-estimate the averaged generator's batch norm


def _conv_nets(shape: tuple[int, ...], latent: int, width: int, batch_norm_d: bool = False
               ) -> tuple[nn.Module, nn.Module]:
    c, h, w = shape
    sn = nn.utils.parametrizations.spectral_norm

    def norm(channels: int) -> list[nn.Module]:
        return [nn.BatchNorm2d(channels)] if batch_norm_d else []

    gen = nn.Sequential(conv_decoder(latent, width, shape, c, batch_norm=True), nn.Sigmoid())
    disc = nn.Sequential(
        sn(nn.Conv2d(c, width, 3, padding=1)), nn.LeakyReLU(0.1),
        sn(nn.Conv2d(width, 2 * width, 4, 2, 1)), *norm(2 * width), nn.LeakyReLU(0.1),
        sn(nn.Conv2d(2 * width, 2 * width, 3, padding=1)), nn.LeakyReLU(0.1),
        sn(nn.Conv2d(2 * width, 4 * width, 4, 2, 1)), *norm(4 * width), nn.LeakyReLU(0.1),
        sn(nn.Conv2d(4 * width, 4 * width, 3, padding=1)), nn.LeakyReLU(0.1),
        nn.Flatten(), sn(nn.Linear(4 * width * (h // 4) * (w // 4), 1)))
    return gen, disc


def _mlp_nets(dim: int, latent: int, width: int) -> tuple[nn.Module, nn.Module]:
    gen = nn.Sequential(nn.Linear(latent, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                        nn.Linear(width, dim))
    disc = nn.Sequential(nn.Linear(dim, width), nn.LeakyReLU(0.2), nn.Linear(width, width),
                         nn.LeakyReLU(0.2), nn.Linear(width, 1))
    return gen, disc


class Generator(nn.Module):
    """The generator (and, for training, the discriminator ``disc``) of one dataset."""

    def __init__(self, *, shape: tuple[int, ...], image: bool, latent: int, width: int,
                 batch_norm_d: bool = False) -> None:
        super().__init__()
        self.shape, self.image, self.latent = tuple(shape), image, latent
        dim = math.prod(self.shape)
        self.net, disc = (_conv_nets(self.shape, latent, width, batch_norm_d) if image
                          else _mlp_nets(dim, latent, width))
        self.disc = [disc]  # a list: not a submodule, so not in the saved weights
        self.register_buffer("shift", torch.zeros(dim))  # continuous data standardization
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, latent)`` -> ``(n, *shape)``: ``[0, 1]`` images or standardized data."""
        return self.net(z).reshape(len(z), *self.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, *shape)``: images as floats in ``[0, 1]``, continuous data in data units."""
        z = torch.randn(n, self.latent, generator=generator).to(self.shift.device)
        out = self(z)
        if self.image:
            return out
        return out * self.scale + self.shift


class _Pair(nn.Module):
    """The generator and its discriminator as one module: what the resumable loop trains,
    averages and checkpoints (only the generator's weights are saved for evaluation)."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = generator.disc[0]


def _is_image(info: DatasetInfo) -> bool:
    return info.kind == "image" and fits(info.shape)


@torch.no_grad()
def reestimate_batch_norm(model: Generator, seed: int) -> None:
    """Batch-norm statistics of ``model``'s own weights (the average's, not the iterates'):
    the mean over :data:`BN_BATCHES` seeded batches of draws, then eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(BN_BATCHES):
        model(torch.randn(250, model.latent, generator=gen).to(model.shift.device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def _fit_images(dataset: Dataset, *, seed: int, epochs: int | None, device: str,
                budget: Budget | None) -> Fitted:
    info = dataset.info
    plan = training_settings("gan", info)
    arch = dict(plan.arch)
    torch.manual_seed(seed)
    model = Generator(shape=info.shape, image=True, **arch)
    pair = _Pair(model).to(device)
    gen, disc = pair.generator, pair.discriminator
    x = flat_unit(dataset).reshape(-1, *info.shape)
    test = flat_unit(dataset, "test").reshape(-1, *info.shape)

    def update(batch: torch.Tensor, noise: torch.Generator, opt: torch.optim.Optimizer
               ) -> float:
        real = 2 * batch.to(device) - 1  # the discriminator sees [-1, 1]
        fake = 2 * gen(torch.randn(len(batch), gen.latent, generator=noise).to(device)) - 1
        d_loss = F.relu(1 - disc(real)).mean() + F.relu(1 + disc(fake.detach())).mean()
        opt.zero_grad(set_to_none=True)
        d_loss.backward()
        opt.step()  # the generator has no gradients: Adam leaves it alone
        g_loss = -disc(fake).mean()
        opt.zero_grad(set_to_none=True)
        g_loss.backward()
        for p in disc.parameters():
            p.grad = None
        opt.step()
        return d_loss.item()

    def draw(n: int, noise: torch.Generator) -> torch.Tensor:
        reestimate_batch_norm(gen, child_seed(seed, "batch-norm"))
        return gen.sample(n, noise)

    config = {**arch, "image": True, "arch": "conv-sn"}
    fitted = fit_images(pair, None, x, test, family="gan", dataset=info.name, config=config,
                        settings=config, seed=seed, epochs=epochs or plan.epochs, plan=plan,
                        budget=budget, lr=LEARNING_RATE,
                        loss="discriminator hinge loss (mean over the epoch)", in_nats=False,
                        update=update, probe=fid_probe(dataset, draw, seed=seed), betas=BETAS)
    reestimate_batch_norm(gen, child_seed(seed, "batch-norm"))
    fitted.tensors = {k: v.detach().clone() for k, v in gen.state_dict().items()}
    return fitted


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str,
        budget: Budget | None = None) -> Fitted:
    """Images: the spectrally normalized GAN in the resumable loop; continuous data:
    alternating Adam steps on the non-saturating losses of the MLP GAN (in one go)."""
    info = dataset.info
    if _is_image(info):
        return _fit_images(dataset, seed=seed, epochs=epochs, device=device, budget=budget)
    if budget is not None and budget.seconds is not None:
        raise ValueError("the MLP GAN on continuous data trains in one go (no budget)")
    if info.kind == "image":
        raise ValueError(f"the image GAN needs heights and widths that are multiples of 4; "
                         f"{info.name} has {info.shape}")
    plan = training_settings("gan", info)
    epochs = epochs or plan.epochs
    arch = dict(plan.arch)
    torch.manual_seed(seed)
    model = Generator(shape=info.shape, image=False, **arch).to(device)
    disc = model.disc[0].to(device)
    x = torch.from_numpy(dataset.train.x).float()
    model.shift.copy_(x.mean(0))
    model.scale.copy_(x.std(0))
    x = ((x - model.shift.cpu()) / model.scale.cpu()).to(device)
    opt_g = torch.optim.Adam(model.net.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    log = TrainLog(f"gan {info.name}")
    d_total = g_total = 0.0
    for epoch in range(epochs):
        d_total = g_total = 0.0
        steps = 0
        for idx in minibatches(len(x), plan.batch_size, gen):
            real = x[idx]
            z = torch.randn(len(idx), model.latent, device=device)
            fake_in = model(z)
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
    config = {**arch, "image": False}
    return Fitted(dict(model.state_dict()), config, final_train_loss=g_total, epochs=epochs,
                  extra={"loss": "generator non-saturating loss (last epoch mean)",
                         "final_discriminator_loss": d_total})


def load(dataset: DatasetInfo, device: str) -> Generator:
    tensors, config = load_weights("gan", dataset.name, device)
    model = Generator(shape=dataset.shape, image=config["image"], latent=config["latent"],
                      width=config["width"], batch_norm_d=config.get("batch_norm_d", False))
    model.load_state_dict(tensors)
    return model.to(device).eval()
