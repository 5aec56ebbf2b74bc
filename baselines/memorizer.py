"""The memorizer: replays training examples. The reference point that every memorization
check must flag, and that wins ``nll_train`` by construction.

With probability ``1 - BACKOFF`` a sample is a uniformly chosen training example, replayed
exactly (continuous data: plus Gaussian noise of a tiny bandwidth); with probability
``BACKOFF`` it comes from the PPCA baseline. The likelihood is that same mixture, exactly:

* discrete data (dequantized space): ``p(y) = (1-w) count(x)/N * L^D + w p_PPCA(y)`` where
  ``x = floor(y L)`` and ``count(x)`` is how often ``x`` occurs in the training split (so a
  training image costs about ``log N`` nats, an unseen one ``-log w`` nats more than PPCA);
* continuous data: ``p(x) = (1-w) mean_n N(x; x_n, h^2 I) + w p_PPCA(x)``.

It needs no weights of its own: it reads the training split (the dataset lookup of gmbench)
and the PPCA baseline's weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gmbench_baselines import ppca
from gmbench_baselines.densities import LOG_2PI
from torch import nn

from gmbench.datasets import DatasetInfo, get_dataset

__all__ = ["BACKOFF", "REFERENCE", "Memorizer", "load"]

REFERENCE = ("replays training images: the reference the memorization checks must flag, not a "
             "competitor")

BACKOFF = 0.1  # probability of the PPCA component
BANDWIDTH = 1e-3  # continuous data: kernel std as a fraction of the data's std


class Memorizer(nn.Module):
    """Replay of ``train`` (``(N, *shape)``) mixed with a PPCA back-off."""

    log_prob_kind = "exact"

    def __init__(self, train: np.ndarray, backoff: ppca.PPCA, info: DatasetInfo) -> None:
        super().__init__()
        self.info = info
        self.backoff = backoff
        self.log_prob_space = "dequantized" if info.is_discrete else "data"
        flat = train.reshape(len(train), -1)
        self.register_buffer("train_x", torch.from_numpy(np.ascontiguousarray(flat)))
        self.n = len(flat)
        if info.is_discrete:
            keys = [row.tobytes() for row in flat.astype(np.int16)]
            self.counts: dict[bytes, int] = {}
            for key in keys:
                self.counts[key] = self.counts.get(key, 0) + 1
        else:
            self.bandwidth = BANDWIDTH * float(flat.std(0).mean())

    def _replay_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log`` of the replay component's density, ``(n,)`` (``-inf`` where it is 0)."""
        flat = x.reshape(len(x), -1)
        if self.info.is_discrete:
            levels = int(self.info.levels)  # type: ignore[arg-type]
            k = torch.clamp(torch.floor(flat.double() * levels), 0, levels - 1).short().cpu()
            counts = torch.tensor([self.counts.get(row.numpy().tobytes(), 0) for row in k],
                                  dtype=torch.float64)
            return (torch.log(counts / self.n) + self.info.dim * math.log(levels)).to(x.device)
        h, d = self.bandwidth, flat.shape[1]
        out = []
        train = self.train_x.double()
        for chunk in flat.double().split(256):
            d2 = torch.cdist(chunk, train).square()  # (b, N)
            log_k = -0.5 * d2 / h**2 - d * math.log(h) - 0.5 * d * LOG_2PI
            out.append(torch.logsumexp(log_k, dim=1) - math.log(self.n))
        return torch.cat(out)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` -> ``(n,)`` nats: dequantized ``y`` for images, ``x`` otherwise."""
        replay = self._replay_log_prob(x) + math.log(1 - BACKOFF)
        back = self.backoff.log_prob(x).double() + math.log(BACKOFF)
        return torch.logaddexp(replay, back)

    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)``: training examples (levels for images), a few PPCA draws."""
        idx = torch.randint(self.n, (n,), device=self.train_x.device)
        out = self.train_x[idx].double()
        use_backoff = torch.rand(n, device=out.device) < BACKOFF
        if self.info.is_discrete:
            levels = int(self.info.levels)  # type: ignore[arg-type]
            drawn = torch.clamp(torch.floor(self.backoff.sample(n).reshape(n, -1).double()
                                            * levels), 0, levels - 1)
            out = torch.where(use_backoff[:, None], drawn, out).long()
        else:
            out = out + self.bandwidth * torch.randn_like(out)
            drawn = self.backoff.sample(n).reshape(n, -1).double()
            out = torch.where(use_backoff[:, None], drawn, out).float()
        return out.reshape(n, *self.info.shape)


def load(dataset: DatasetInfo, device: str) -> Memorizer:
    train = get_dataset(dataset.name).train.x
    return Memorizer(train, ppca.load(dataset, device), dataset).to(device)
