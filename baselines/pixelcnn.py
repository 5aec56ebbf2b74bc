"""Gated PixelCNN: the autoregressive likelihood reference; exact log-mass, ancestral samples.

``P(x) = prod_i P(x_i | x_<i)`` over pixels in raster order, each conditional a categorical
over the dataset's levels (a softmax of 256 logits for Fashion-MNIST), so ``log_prob`` is
the exact log-mass of the discrete image (``log_prob_space = "data"``; no dequantization).
The network is van den Oord et al.'s gated PixelCNN: a vertical stack that sees every row
above the pixel and a horizontal stack that sees the pixels to its left in its row, joined
at each layer, with gated activations ``tanh(a) * sigmoid(b)``; it has no blind spot.

Sampling is ancestral, one pixel at a time. A full forward pass per pixel would cost 784
passes per Fashion-MNIST image; :meth:`GatedPixelCNN.sample` instead computes the vertical
stack once per row (it depends on the rows above only) and, per pixel, the horizontal stack
on the current row only: about 28 + 28 row-strip passes per image, the same draws as the
naive loop of one full forward pass per pixel (``tests/models/test_pixelcnn.py``).

Evaluate: ``gmbench evaluate baselines/pixelcnn.py --dataset fashion-mnist --n-samples 1000``
(sample metrics at a stated, smaller sample count: sampling is the slow part).

References:
    van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gmbench_baselines.training.fitting import Fitted, flat_levels
from gmbench_baselines.training.loop import Budget, fit_images
from gmbench_baselines.training.settings import training_settings
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo
from gmbench.errors import ModelError

__all__ = ["GatedLayer", "GatedPixelCNN", "fit", "load"]

LEARNING_RATE = 2e-3


class GatedLayer(nn.Module):
    """One gated layer: vertical stack (rows above), horizontal stack (pixels to the left in
    the row, and the vertical stack's view of the rows above).

    ``first``: the layer reading the image itself, whose vertical stack sees the rows strictly
    above and whose horizontal stack the pixels strictly left; later layers read features that
    are already causal, so they may include their own position.
    """

    def __init__(self, c_in: int, channels: int, kernel: int, *, first: bool) -> None:
        super().__init__()
        self.first, self.kernel = first, kernel
        self.kh, self.kw = kernel // 2 + 1, kernel // 2 + 1
        self.v_conv = nn.Conv2d(c_in, 2 * channels, (self.kh, kernel))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_conv = nn.Conv2d(c_in, 2 * channels, (1, self.kw))
        self.h_out = nn.Conv2d(channels, channels, 1)

    def vertical(self, v: torch.Tensor) -> torch.Tensor:
        """Pre-gate vertical features ``(n, 2C, H, W)``; row ``i`` depends on rows ``< i`` of
        the image only."""
        pad = self.kernel // 2
        if self.first:  # see rows i-kh .. i-1: pad kh rows on top, drop the last output row
            return self.v_conv(F.pad(v, (pad, pad, self.kh, 0)))[:, :, :-1]
        return self.v_conv(F.pad(v, (pad, pad, self.kh - 1, 0)))

    def horizontal(self, h: torch.Tensor, v_pre: torch.Tensor) -> torch.Tensor:
        """The horizontal stack's output ``(n, C, H', W)`` from its input ``h`` and the
        vertical pre-activations ``v_pre`` of the same rows."""
        if self.first:  # see columns j-kw .. j-1
            a = self.h_conv(F.pad(h, (self.kw, 0, 0, 0)))[:, :, :, :-1]
        else:
            a = self.h_conv(F.pad(h, (self.kw - 1, 0, 0, 0)))
        a = a + self.v_to_h(v_pre)
        out = self.h_out(_gate(a))
        return out if self.first else h + out


def _gate(a: torch.Tensor) -> torch.Tensor:
    t, s = a.chunk(2, dim=1)
    return torch.tanh(t) * torch.sigmoid(s)


class GatedPixelCNN(nn.Module):
    """``layers`` gated layers of ``channels`` channels, then a two-layer 1x1 head to
    ``levels`` logits per pixel. Inputs: ``(n, 1, H, W)`` integer levels."""

    log_prob_space = "data"
    log_prob_kind = "exact"

    def __init__(self, *, shape: tuple[int, ...], levels: int, channels: int, layers: int,
                 kernel: int) -> None:
        super().__init__()
        if len(shape) != 3 or shape[0] != 1:
            raise ModelError(f"baselines/pixelcnn.py models one-channel images (1, H, W); got "
                             f"shape {tuple(shape)}.")
        self.shape, self.levels = tuple(shape), levels
        self.gated = nn.ModuleList(
            GatedLayer(1 if i == 0 else channels, channels, kernel, first=i == 0)
            for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, 4 * channels, 1), nn.ReLU(),
                                  nn.Conv2d(4 * channels, levels, 1))

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.head[-1].weight.dtype) * (2.0 / (self.levels - 1)) - 1.0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 1, H, W)`` levels -> ``(n, levels, H, W)`` logits of each pixel given the
        pixels before it in raster order."""
        v = h = self._scale(x)
        for layer in self.gated:
            v_pre = layer.vertical(v)
            h = layer.horizontal(h, v_pre)
            v = _gate(v_pre)
        return self.head(h)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` integer levels -> ``(n,)`` exact log-mass in nats."""
        x = x.reshape(len(x), *self.shape).long()
        logp = F.log_softmax(self.logits(x), dim=1)  # (n, levels, H, W)
        return logp.gather(1, x).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)`` integer levels, drawn pixel by pixel in raster order."""
        x = torch.zeros(n, *self.shape, device=self.head[-1].weight.device)
        _, rows, cols = self.shape
        for i in range(rows):
            # the vertical stack at row i depends on rows < i only: once per row
            v = self._scale(x)
            v_rows = []
            for layer in self.gated:
                v_pre = layer.vertical(v)
                v_rows.append(v_pre[:, :, i:i + 1])
                v = _gate(v_pre)
            for j in range(cols):
                h = self._scale(x[:, :, i:i + 1])
                for layer, v_pre in zip(self.gated, v_rows, strict=True):
                    h = layer.horizontal(h, v_pre)
                logits = self.head(h)[:, :, 0, j]  # (n, levels)
                x[:, 0, i, j] = torch.multinomial(F.softmax(logits, dim=1), 1)[:, 0].float()
        return x.long()


def build(info: DatasetInfo, config: dict[str, int]) -> GatedPixelCNN:
    levels = int(info.levels)  # type: ignore[arg-type]
    return GatedPixelCNN(shape=info.shape, levels=levels, channels=config["channels"],
                         layers=config["layers"], kernel=config["kernel"])


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str,
        budget: Budget | None = None) -> Fitted:
    """Adam (one-cycle schedule over ``epochs``) on the exact negative log-likelihood;
    resumable, stops at ``budget`` (:func:`~gmbench_baselines.training.loop.train_resumable`)."""
    info = dataset.info
    if not info.is_discrete:
        raise ModelError(f"baselines/pixelcnn.py is for discrete images; {info.name} is "
                         "continuous.")
    plan = training_settings("pixelcnn", info)
    arch = dict(plan.arch)
    torch.manual_seed(seed)
    model = build(info, arch).to(device)
    x = flat_levels(dataset).reshape(-1, *info.shape)
    test = flat_levels(dataset, "test").reshape(-1, *info.shape)

    def loss_of(batch: torch.Tensor, _: torch.Generator) -> torch.Tensor:
        return -model.log_prob(batch.to(device)).mean()

    return fit_images(model, loss_of, x, test, family="pixelcnn", dataset=info.name,
                      config={**arch, "seed": seed}, settings=arch, seed=seed,
                      epochs=epochs or plan.epochs, plan=plan, budget=budget, lr=LEARNING_RATE,
                      loss="negative log-likelihood, nats per example (exact, discrete)")

def load(dataset: DatasetInfo, device: str) -> GatedPixelCNN:
    if not dataset.is_discrete or len(dataset.shape) != 3:
        raise ModelError(f"baselines/pixelcnn.py is for discrete one-channel images; "
                         f"{dataset.name} has shape {dataset.shape}.")
    tensors, config = load_weights("pixelcnn", dataset.name, device)
    model = build(dataset, config)
    model.load_state_dict(tensors)
    return model.to(device).eval()
