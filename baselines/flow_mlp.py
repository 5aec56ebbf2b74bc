"""A RealNVP-style normalizing flow with MLP conditioners: affine coupling layers on the
flattened data and fixed random permutations between them; exact likelihood.

``baselines/flow.py`` is this flow on vector data (2-D toys, Gaussians); on images it is the
convolutional multi-scale flow, and this model file (``flow_mlp``) keeps the MLP flow on
images as a point of comparison: what convolutions and multi-scale structure buy.

On discrete images it is a density on dequantized pixels ``y in [0,1)^D``
(``log_prob_space = "dequantized"``): ``y -> logit(alpha + (1-2 alpha) y)`` (RealNVP's
preprocessing), a fixed standardization, then the couplings onto ``N(0, I)``; training
dequantizes with fresh uniform noise each step. On continuous data the couplings act on the
standardized data.

References:
    Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP";
    Kingma & Dhariwal 2018, "Glow" (permutations between couplings, zero-initialized last
    layers so the flow starts at the identity).
"""

from __future__ import annotations

import math

import torch
from gmbench_baselines.densities import logit_inverse, logit_transform, std_normal_log_density
from gmbench_baselines.training.fitting import Fitted, TrainLog, flat_levels, minibatches
from gmbench_baselines.training.settings import training_settings
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo

__all__ = ["AffineCoupling", "CouplingFlow", "fit", "load"]

ALPHA = 1e-4
LEARNING_RATE = 1e-3


class AffineCoupling(nn.Module):
    """``y1 = x1``, ``y2 = x2 * exp(s(x1)) + t(x1)`` with ``s = scale * tanh(.)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.d1 = dim // 2
        d2 = dim - self.d1
        self.net = nn.Sequential(nn.Linear(self.d1, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 2 * d2))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(d2))

    def _params(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(x1).chunk(2, dim=-1)
        return self.scale * torch.tanh(raw_s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> noise direction: ``(n, D) -> (n, D)`` and ``log |det|`` ``(n,)``."""
        x1, x2 = x[:, :self.d1], x[:, self.d1:]
        s, t = self._params(x1)
        return torch.cat([x1, x2 * s.exp() + t], dim=-1), s.sum(-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, :self.d1], y[:, self.d1:]
        s, t = self._params(y1)
        return torch.cat([y1, (y2 - t) * torch.exp(-s)], dim=-1)


class CouplingFlow(nn.Module):
    """Preprocessing, then ``layers`` x (fixed permutation, affine coupling), onto ``N(0, I)``."""

    log_prob_kind = "exact"

    def __init__(self, *, shape: tuple[int, ...], hidden: int, layers: int,
                 alpha: float | None, seed: int = 0) -> None:
        super().__init__()
        self.shape, self.alpha = tuple(shape), alpha
        self.log_prob_space = "dequantized" if alpha is not None else "data"
        dim = math.prod(self.shape)
        gen = torch.Generator().manual_seed(seed)
        perms = [torch.randperm(dim, generator=gen) if dim > 2 else
                 torch.tensor([1, 0]) for _ in range(layers)]
        self.register_buffer("perms", torch.stack(perms))  # (layers, D)
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("log_std", torch.zeros(dim))
        self.couplings = nn.ModuleList(AffineCoupling(dim, hidden) for _ in range(layers))

    def _pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = x.reshape(len(x), -1).float()
        log_det = torch.zeros(len(x), device=v.device)
        if self.alpha is not None:
            v, log_det = logit_transform(v, alpha=self.alpha)
        return (v - self.shift) * torch.exp(-self.log_std), log_det - self.log_std.sum()

    def set_standardization(self, v: torch.Tensor) -> None:
        """Fix the standardization from preprocessed training data ``v`` ``(n, D)``."""
        self.shift.copy_(v.mean(0))
        self.log_std.copy_(v.std(0).clamp(min=1e-3).log())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` -> ``(n,)`` nats (a density on ``[0,1)^D`` for images)."""
        h, log_det = self._pre(x)
        for perm, coupling in zip(self.perms, self.couplings, strict=True):
            h, ld = coupling(h[:, perm])
            log_det = log_det + ld
        return std_normal_log_density(h) + log_det

    def sample(self, n: int) -> torch.Tensor:
        """``(n, *shape)``: floats in ``[0, 1]`` for images, data values otherwise."""
        h = torch.randn(n, self.shift.numel(), device=self.shift.device)
        for perm, coupling in zip(reversed(self.perms), reversed(self.couplings), strict=True):
            h = coupling.inverse(h)[:, torch.argsort(perm)]
        v = h * self.log_std.exp() + self.shift
        if self.alpha is not None:
            v = logit_inverse(v, alpha=self.alpha)
        return v.reshape(n, *self.shape)


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str) -> Fitted:
    """Adam on the negative log-likelihood of freshly dequantized batches."""
    info = dataset.info
    plan = training_settings("flow_mlp", info)
    epochs = epochs or plan.epochs
    arch = dict(plan.arch)
    alpha = ALPHA if info.is_discrete else None
    torch.manual_seed(seed)
    model = CouplingFlow(shape=info.shape, alpha=alpha, seed=seed, **arch).to(device)
    gen = torch.Generator().manual_seed(seed)
    if info.is_discrete:
        levels = int(info.levels)  # type: ignore[arg-type]
        x = flat_levels(dataset).float()
        offset = model.shift.numel() * math.log(levels)  # density on [0,1)^D -> mass of a bin
        with torch.no_grad():
            v, _ = logit_transform((x + torch.rand(x.shape, generator=gen)) / levels, alpha=ALPHA)
    else:
        x = torch.from_numpy(dataset.train.x.reshape(len(dataset.train), -1)).float()
        offset = 0.0
        v = x
    model.set_standardization(v.to(device))
    x = x.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps = epochs * math.ceil(len(x) / plan.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=steps,
                                                pct_start=0.05)
    log = TrainLog(f"flow_mlp {info.name}")
    loss_value = math.nan
    for epoch in range(epochs):
        total = 0.0
        for idx in minibatches(len(x), plan.batch_size, gen):
            batch = x[idx]
            if info.is_discrete:
                batch = (batch + torch.rand(batch.shape, generator=gen).to(device)) / levels
            loss = offset - model.log_prob(batch).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 100.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        loss_value = total / len(x)
        if epoch % max(1, epochs // 15) == 0 or epoch == epochs - 1:
            per_dim = (f" ({loss_value / (model.shift.numel() * math.log(2)):.3f} bits/dim)"
                       if info.is_discrete else "")
            log(f"epoch {epoch + 1}/{epochs} nll {loss_value:.3f} nats{per_dim}")
    config = {**arch, "alpha": alpha, "seed": seed}
    return Fitted(dict(model.state_dict()), config, final_train_loss=loss_value, epochs=epochs,
                  extra={"loss": "negative log-likelihood, nats per example"
                                  + (" (discrete, one dequantization)" if alpha else "")})


def load(dataset: DatasetInfo, device: str, family: str = "flow_mlp") -> CouplingFlow:
    tensors, config = load_weights(family, dataset.name, device)
    model = CouplingFlow(shape=dataset.shape, hidden=config["hidden"], layers=config["layers"],
                         alpha=config["alpha"], seed=config["seed"])
    model.load_state_dict(tensors)
    return model.to(device).eval()
