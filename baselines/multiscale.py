"""A multi-scale convolutional normalizing flow for images (Glow-style); used by
``baselines/flow.py`` on image datasets.

``y`` (dequantized pixels in ``[0,1)``, ``(n, C, H, W)``) -> ``logit(alpha + (1-2 alpha) y)``
-> squeeze (2x2 pixels into channels) -> ``steps`` x [actnorm, invertible 1x1 convolution,
affine coupling with a convolutional conditioner] -> split off half the channels (a Gaussian
whose mean and scale the kept half predicts) -> squeeze -> ``steps`` more -> ``N(0, I)``.
Exact log-density; sampling runs the same maps backwards.

References:
    Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP" (multi-scale
    architecture, squeezing, factoring out);
    Kingma & Dhariwal 2018, "Glow" (actnorm, invertible 1x1 convolutions, zero-initialized
    conditioners, learned split priors).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from gmbench_baselines.densities import logit_inverse, logit_transform
from torch import nn

__all__ = ["MultiScaleFlow", "squeeze", "unsqueeze"]

LOG_2PI = math.log(2 * math.pi)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """``(n, C, H, W)`` -> ``(n, 4C, H/2, W/2)``: each 2x2 block of pixels into channels."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze`."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


def _gaussian(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Per-example log-density of ``z`` under ``N(mean, exp(log_std)^2)``, summed."""
    return (-0.5 * (((z - mean) * torch.exp(-log_std)) ** 2 + LOG_2PI) - log_std).flatten(1).sum(1)


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x - bias) * exp(-log_scale)``, initialized from data so the
    first batch comes out with zero mean and unit variance per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        self.bias.copy_(x.mean((0, 2, 3), keepdim=True))
        self.log_scale.copy_(x.std((0, 2, 3), keepdim=True).clamp(min=1e-3).log())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = x.shape[2] * x.shape[3]
        return (x - self.bias) * torch.exp(-self.log_scale), \
            -self.log_scale.sum() * pixels * torch.ones(len(x), device=x.device)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(self.log_scale) + self.bias


class InvConv1x1(nn.Module):
    """An invertible 1x1 convolution (a learned channel mixing), started at a random
    rotation; ``log |det|`` from the (small) weight matrix."""

    def __init__(self, channels: int, generator: torch.Generator) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        self.weight = nn.Parameter(q)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = x.shape[2] * x.shape[3]
        log_det = torch.linalg.slogdet(self.weight)[1] * pixels
        return F.conv2d(x, self.weight[:, :, None, None]), log_det.expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv2d(y, torch.linalg.inv(self.weight)[:, :, None, None])


class Coupling(nn.Module):
    """``y_b = x_b * exp(s(x_a)) + t(x_a)`` for the channel halves ``(x_a, x_b)``, with
    ``s = scale * tanh(.)`` from a 3x3-1x1-3x3 convolutional network whose last layer starts
    at zero (the step starts as the identity)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.ca = channels // 2
        cb = channels - self.ca
        self.net = nn.Sequential(nn.Conv2d(self.ca, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * cb, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, cb, 1, 1))

    def _params(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(xa).chunk(2, dim=1)
        return self.scale * torch.tanh(raw_s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, :self.ca], x[:, self.ca:]
        s, t = self._params(xa)
        return torch.cat([xa, xb * s.exp() + t], 1), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, :self.ca], y[:, self.ca:]
        s, t = self._params(ya)
        return torch.cat([ya, (yb - t) * torch.exp(-s)], 1)


class Scale(nn.Module):
    """``steps`` x (actnorm, 1x1 convolution, coupling) on ``channels`` channels."""

    def __init__(self, channels: int, hidden: int, steps: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(steps):
            self.layers.extend([ActNorm(channels), InvConv1x1(channels, generator),
                                Coupling(channels, hidden)])

    def forward(self, x: torch.Tensor, *, init: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(len(x), device=x.device, dtype=x.dtype)
        for layer in self.layers:
            if init and isinstance(layer, ActNorm):
                layer.initialize(x)
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class MultiScaleFlow(nn.Module):
    """The flow on ``(C, H, W)`` images with ``H`` and ``W`` divisible by 4; exact density
    of dequantized pixels ``y in [0,1)^D`` (``log_prob_space = "dequantized"``)."""

    log_prob_kind = "exact"
    log_prob_space = "dequantized"

    def __init__(self, *, shape: tuple[int, ...], hidden: int, steps: int, alpha: float,
                 seed: int = 0) -> None:
        super().__init__()
        if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
            raise ValueError(f"a multi-scale flow needs (C, H, W) images with H and W "
                             f"divisible by 4; got {tuple(shape)}")
        self.shape, self.alpha = tuple(shape), alpha
        c = shape[0]
        gen = torch.Generator().manual_seed(seed)
        self.scale1 = Scale(4 * c, hidden, steps, gen)
        self.split_prior = nn.Conv2d(2 * c, 4 * c, 3, padding=1)  # kept half -> mean, log std
        nn.init.zeros_(self.split_prior.weight)
        nn.init.zeros_(self.split_prior.bias)
        self.scale2 = Scale(8 * c, hidden, steps, gen)

    def _forward(self, y: torch.Tensor, init: bool = False) -> torch.Tensor:
        n = len(y)
        flat = y.reshape(n, -1)
        v, log_det = logit_transform(flat if flat.is_floating_point() else flat.float(),
                                     alpha=self.alpha)
        h, ld1 = self.scale1(squeeze(v.reshape(n, *self.shape)), init=init)
        keep, out = h.chunk(2, dim=1)
        mean, log_std = self.split_prior(keep).chunk(2, dim=1)
        h2, ld2 = self.scale2(squeeze(keep), init=init)
        zeros = torch.zeros_like(h2)
        return (log_det + ld1 + ld2 + _gaussian(out, mean, log_std)
                + _gaussian(h2, zeros, zeros))

    @torch.no_grad()
    def initialize(self, y: torch.Tensor) -> None:
        """Data-dependent actnorm initialization from a batch of dequantized images."""
        self._forward(y, init=True)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` dequantized pixels in ``[0,1)`` -> ``(n,)`` log-density, nats."""
        return self._forward(x)

    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)`` floats in ``[0, 1]``."""
        c, h, w = self.shape
        weight = self.split_prior.weight
        h2 = torch.randn(n, 8 * c, h // 4, w // 4, device=weight.device, dtype=weight.dtype)
        keep = unsqueeze(self.scale2.inverse(h2))
        mean, log_std = self.split_prior(keep).chunk(2, dim=1)
        out = mean + torch.exp(log_std) * torch.randn_like(mean)
        v = unsqueeze(self.scale1.inverse(torch.cat([keep, out], 1)))
        return logit_inverse(v.reshape(n, -1), alpha=self.alpha).reshape(n, *self.shape)
