"""The normalizing-flow baseline; exact likelihood.

On images: the multi-scale convolutional flow of :mod:`gmbench_baselines.multiscale`
(squeeze, actnorm, invertible 1x1 convolutions, affine couplings with convolutional
conditioners, a learned split prior), a density on dequantized pixels ``y in [0,1)^D``
(``log_prob_space = "dequantized"``) after RealNVP's logit preprocessing; trained on freshly
dequantized batches by the resumable, budgeted loop (:mod:`.training.loop`).

On vector data (2-D toys, Gaussians): the MLP coupling flow of ``baselines/flow_mlp.py``,
which is also bundled on images under the name ``flow_mlp`` as a point of comparison.

Evaluate: ``gmbench evaluate baselines/flow.py --dataset fashion-mnist``.
"""

from __future__ import annotations

import math

import torch
from gmbench_baselines import flow_mlp
from gmbench_baselines.multiscale import MultiScaleFlow
from gmbench_baselines.training.fitting import Fitted, flat_levels
from gmbench_baselines.training.loop import Budget, fit_images
from gmbench_baselines.training.settings import training_settings
from gmbench_baselines.weights import load_weights
from torch import nn

from gmbench.datasets import Dataset, DatasetInfo

__all__ = ["fit", "load"]

ALPHA = 1e-4
LEARNING_RATE = 1e-3


def _is_image(info: DatasetInfo) -> bool:
    return info.is_discrete and len(info.shape) == 3 and info.shape[1] % 4 == 0 \
        and info.shape[2] % 4 == 0


def build(info: DatasetInfo, config: dict) -> MultiScaleFlow:
    return MultiScaleFlow(shape=info.shape, hidden=config["hidden"], steps=config["steps"],
                          alpha=config["alpha"], seed=config["seed"])


def fit(dataset: Dataset, *, seed: int, epochs: int | None, device: str,
        budget: Budget | None = None) -> Fitted:
    """Images: Adam on the negative log-likelihood of freshly dequantized batches (the
    resumable loop); vectors: :func:`baselines.flow_mlp.fit`."""
    info = dataset.info
    if not _is_image(info):
        if budget is not None and budget.seconds is not None:
            raise ValueError("the MLP flow on vector data trains in one go (no budget)")
        return flow_mlp.fit(dataset, seed=seed, epochs=epochs, device=device)
    plan = training_settings("flow", info)
    config = {**plan.arch, "alpha": ALPHA, "seed": seed, "arch": "multiscale"}
    levels = int(info.levels)  # type: ignore[arg-type]
    dims = math.prod(info.shape)
    torch.manual_seed(seed)
    model = build(info, config).to(device)
    x = flat_levels(dataset).reshape(-1, *info.shape).float()
    test = flat_levels(dataset, "test").reshape(-1, *info.shape).float()
    gen = torch.Generator().manual_seed(seed)
    first = x[torch.randperm(len(x), generator=gen)[:512]]
    model.initialize(((first + torch.rand(first.shape, generator=gen)) / levels).to(device))
    offset = dims * math.log(levels)  # density on [0,1)^D -> mass of a bin

    def loss_of(batch: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
        y = (batch + torch.rand(batch.shape, generator=noise)) / levels
        return offset - model.log_prob(y.to(device)).mean()

    return fit_images(model, loss_of, x, test, family="flow", dataset=info.name,
                      config=config, settings=config, seed=seed, epochs=epochs or plan.epochs,
                      plan=plan, budget=budget, lr=LEARNING_RATE,
                      loss="negative log-likelihood, nats per example (discrete, one "
                           "dequantization)")

def load(dataset: DatasetInfo, device: str) -> nn.Module:
    if not _is_image(dataset):
        return flow_mlp.load(dataset, device, family="flow")
    tensors, config = load_weights("flow", dataset.name, device)
    model = build(dataset, config)
    model.load_state_dict(tensors)
    return model.to(device).eval()
