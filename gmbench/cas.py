"""Classification Accuracy Score: the fixed classifier, its training, and the estimates.

CAS (Ravuri and Vinyals 2019) trains a classifier on generated, labelled samples and tests it
on real data. gmbench's classifier is fixed and documented (:class:`ClassifierSpec`): a
multilayer perceptron on the flattened data scaled to ``[0, 1]`` (discrete data: level ``k``
becomes ``k / (levels - 1)``; continuous data: standardized with the real training set's
mean and standard deviation), trained from a seeded initialization with Adam, no
augmentation, no early stopping. The same classifier trained on the same number of real
training examples gives the denominator of ``cas_ratio``.

References:
    Ravuri, Vinyals. "Classification Accuracy Score for Conditional Generative Models."
    NeurIPS 2019. https://arxiv.org/abs/1905.10887
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from gmbench.rng import forked_rng
from gmbench.stats import Estimate, bootstrap_estimate, clopper_pearson

__all__ = [
    "ClassifierSpec",
    "accuracy_estimate",
    "balanced_labels",
    "cas_ratio_estimate",
    "predict",
    "train_classifier",
]


@dataclass(frozen=True)
class ClassifierSpec:
    """The fixed CAS classifier.

    Attributes:
        hidden: widths of the hidden layers (Linear + ReLU each), then a linear layer to the
            class logits.
        epochs: passes over the training set ...
        min_steps: ... but at least this many optimizer steps (small training sets, e.g. the
            360 examples of digits, would otherwise get a handful of steps).
        batch_size: examples per step; reshuffled every epoch (seeded).
        lr: Adam learning rate (betas 0.9, 0.999; no weight decay, no schedule).
    """

    hidden: tuple[int, ...] = (256, 256)
    epochs: int = 10
    min_steps: int = 500
    batch_size: int = 256
    lr: float = 1e-3

    def steps(self, n: int) -> int:
        return max(self.epochs * math.ceil(n / self.batch_size), self.min_steps)

    def describe(self) -> dict[str, object]:
        return {"architecture": "MLP " + " -> ".join(["D", *map(str, self.hidden), "classes"])
                + " (ReLU)", **asdict(self), "optimizer": "Adam", "augmentation": "none",
                "input": "flattened data scaled to [0, 1] (continuous: standardized)"}


def _mlp(dim: int, num_classes: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(dim, width), nn.ReLU()]
        dim = width
    layers.append(nn.Linear(dim, num_classes))
    return nn.Sequential(*layers)


def train_classifier(x: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int,
                     spec: ClassifierSpec = ClassifierSpec(), device: str = "cpu"
                     ) -> nn.Module:
    """Train the fixed classifier.

    Args:
        x: ``(n, D)`` float inputs (already scaled).
        y: ``(n,)`` integer labels in ``[0, num_classes)``.
        num_classes: number of logits.
        seed: seeds the initialization and the shuffling (global RNG state is restored).
        spec: the classifier.
        device: where to train.

    Returns:
        The trained network in eval mode.
    """
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    n = len(xt)
    with forked_rng(seed):
        net = _mlp(xt.shape[1], num_classes, spec.hidden).to(device)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
        step, total = 0, spec.steps(n)
        while step < total:
            order = torch.randperm(n, generator=gen).to(device)
            for start in range(0, n, spec.batch_size):
                idx = order[start:start + spec.batch_size]
                loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step >= total:
                    break
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, x: np.ndarray, *, device: str = "cpu", batch_size: int = 4096
            ) -> np.ndarray:
    """Predicted class of each row of ``x`` ``(n, D)``, shape ``(n,)``."""
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.ascontiguousarray(x[start:start + batch_size]),
                             dtype=torch.float32, device=device)
        out.append(net(xb).argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def balanced_labels(n: int, num_classes: int, *, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, each class ``floor(n / C)`` or ``ceil(n / C)`` times, in seeded order."""
    return rng.permutation(np.arange(n) % num_classes)


def accuracy_estimate(correct: np.ndarray) -> Estimate:
    """Test accuracy from per-example correctness ``(n,)`` with a Clopper-Pearson interval
    (over test examples; the classifier's training randomness is not included)."""
    c = np.asarray(correct, dtype=bool)
    n, k = int(c.size), int(c.sum())
    low, high = clopper_pearson(k, n)
    p = k / n
    return Estimate(p, math.sqrt(p * (1 - p) / n), low, high, n, "clopper-pearson")


def cas_ratio_estimate(correct_synthetic: np.ndarray, correct_real: np.ndarray, *,
                       rng: np.random.Generator, n_boot: int = 1000) -> Estimate:
    """``accuracy(synthetic-trained) / accuracy(real-trained)`` on the same test examples,
    with a paired percentile bootstrap over test examples (the two accuracies are correlated
    through the shared test set, so the bootstrap resamples them together)."""
    a = np.asarray(correct_synthetic, dtype=np.float64)
    b = np.asarray(correct_real, dtype=np.float64)

    def ratio(i: np.ndarray) -> float:
        den = b[i].mean()
        return float(a[i].mean() / den) if den > 0 else math.nan

    return bootstrap_estimate(ratio, len(a), rng=rng, n_boot=n_boot)
