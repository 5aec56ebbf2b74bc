"""The one small-network trainer behind the classifier two-sample test and CAS.

Both tests train a ReLU multilayer perceptron with Adam on a fixed, seeded schedule; they
differ in their stopping rule. :func:`train_mlp` runs either a fixed number of optimizer steps
(CAS: a fixed protocol, no early stopping) or early stopping on a held-out validation loss
counted in steps, with the learning rate halved on plateaus (C2ST: trained to its capacity,
with the stopping point chosen on data the test never sees).

Training is deterministic for a given seed and never leaves the global RNG state changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gmbench.core.rng import child_seed, forked_rng

__all__ = ["MLPSpec", "ParallelMLP", "Stopping", "TrainedMLP", "mlp", "predict_logits",
           "predict_parallel", "torch_threads", "train_mlp", "train_parallel_mlp"]


@dataclass(frozen=True, kw_only=True)
class MLPSpec:
    """A ReLU multilayer perceptron and its optimizer.

    Attributes:
        hidden: widths of the hidden layers (Linear + ReLU each), then a linear output layer.
        batch_size: examples per step; the order is reshuffled every epoch (seeded).
        lr: Adam learning rate (betas 0.9, 0.999).
        weight_decay: decoupled weight decay (AdamW); 0 for none.
    """

    hidden: tuple[int, ...]
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0

    def describe(self) -> str:
        layers = " -> ".join(["d", *map(str, self.hidden), "out"])
        wd = f", weight decay {self.weight_decay:g}" if self.weight_decay else ""
        return f"MLP {layers} (ReLU), Adam lr {self.lr:g}, batch {self.batch_size}{wd}"


@dataclass(frozen=True, kw_only=True)
class Stopping:
    """Early stopping on a validation loss.

    The validation loss is measured every epoch (at least every ``eval_every`` steps).
    Patience is ``patience_epochs`` epochs, counted in steps and kept within
    ``[min_patience_steps, max_patience_steps]`` (so tiny and large training sets both get a
    sensible budget); the learning rate is multiplied by ``lr_factor`` after a quarter of the
    patience without improvement; training stops after the whole patience without
    improvement, at ``max_steps`` or ``max_epochs``, or once the validation loss is below
    ``separated_loss`` (the classes are separated: more steps only shrink the loss towards 0),
    and the weights with the lowest validation loss are kept.
    """

    patience_epochs: int = 25
    min_patience_steps: int = 250
    max_patience_steps: int = 1000
    max_steps: int = 20_000
    max_epochs: int = 200
    separated_loss: float = 1e-3  # validation loss this low: the classes are separated
    eval_every: int = 50
    lr_factor: float = 0.5
    min_improvement: float = 1e-4  # relative

    def patience(self, steps_per_epoch: int) -> int:
        """Patience in steps for a training set of ``steps_per_epoch`` steps per epoch."""
        return int(min(max(self.patience_epochs * steps_per_epoch, self.min_patience_steps),
                       self.max_patience_steps))


@dataclass(frozen=True)
class TrainedMLP:
    """A trained network (eval mode) and how training went."""

    net: nn.Module
    steps: int
    best_step: int
    val_loss: float


def mlp(d_in: int, d_out: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(d_in, width), nn.ReLU()]
        d_in = width
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch on ``n`` CPU threads (``None``: unchanged), then restore the previous count.
    Small networks gain nothing from more threads and lose much to contention. In background
    work (:mod:`gmbench.core.background`) the count is the thread budget's, and left alone."""
    from gmbench.core.background import in_background

    if in_background():
        yield
        return
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _loss(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    if logits.shape[1] == 1:  # binary: y in {0, 1} as floats
        per = nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y, reduction="none")
    else:
        per = nn.functional.cross_entropy(logits, y, reduction="none")
    return per.mean() if w is None else (per * w).sum() / w.sum()


def train_mlp(x: np.ndarray, y: np.ndarray, *, out: int, spec: MLPSpec, seed: int,
              steps: int | None = None, stopping: Stopping | None = None,
              validation: tuple[np.ndarray, np.ndarray] | None = None,
              weights: np.ndarray | None = None, device: str = "cpu") -> TrainedMLP:
    """Train an MLP on ``x`` ``(n, d)`` float32 with labels ``y`` ``(n,)``.

    Args:
        x, y: inputs (already scaled) and labels: ``{0, 1}`` for ``out = 1`` (logistic loss),
            integer classes ``[0, out)`` otherwise (cross-entropy).
        out: number of outputs.
        spec: the network and optimizer.
        seed: seeds the initialization and the minibatch order.
        steps: train exactly this many optimizer steps (no validation) ...
        stopping, validation: ... or stop early on the loss of ``validation = (x_val, y_val)``.
        weights: optional ``(n,)`` non-negative per-example loss weights (a bootstrap
            resample as multiplicities).
        device: where to train.
    """
    assert (steps is None) != (stopping is None and validation is None), \
        "give either steps, or stopping and validation"
    binary = out == 1
    label_dtype = torch.float32 if binary else torch.long
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
    yt = torch.as_tensor(np.asarray(y), dtype=label_dtype, device=device)
    wt = None if weights is None else torch.as_tensor(weights, dtype=torch.float32,
                                                      device=device)
    n = len(xt)
    with forked_rng(seed):  # the global generator draws the initial weights, nothing after
        net = mlp(xt.shape[1], out, spec.hidden).to(device)
    with torch.enable_grad():
        opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        order_gen = torch.Generator().manual_seed(seed)
        total = steps if steps is not None else stopping.max_steps  # type: ignore[union-attr]
        if validation is not None:
            xv = torch.as_tensor(np.ascontiguousarray(validation[0]), dtype=torch.float32,
                                 device=device)
            yv = torch.as_tensor(np.asarray(validation[1]), dtype=label_dtype, device=device)
            per_epoch = math.ceil(n / spec.batch_size)
            check_every = max(1, min(per_epoch, stopping.eval_every))  # type: ignore[union-attr]
            patience = stopping.patience(per_epoch)  # type: ignore[union-attr]
            total = min(total, stopping.max_epochs * per_epoch)  # type: ignore[union-attr]
        best_loss, best_state, best_step = math.inf, None, 0
        since_best = since_decay = 0
        step = 0
        while step < total:
            perm = torch.randperm(n, generator=order_gen).to(device)
            for start in range(0, n, spec.batch_size):
                idx = perm[start:start + spec.batch_size]
                net.train()
                loss = _loss(net(xt[idx]), yt[idx], None if wt is None else wt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if validation is not None and step % check_every == 0:
                    assert stopping is not None
                    net.eval()
                    with torch.no_grad():
                        val = float(_loss(net(xv), yv, None))
                    if val < best_loss * (1 - stopping.min_improvement):
                        best_loss, best_step = val, step
                        best_state = {k: v.clone() for k, v in net.state_dict().items()}
                        since_best = since_decay = 0
                        if val < stopping.separated_loss:
                            total = step
                    else:
                        since_best += check_every
                        since_decay += check_every
                        if since_decay >= patience // 4:
                            for group in opt.param_groups:
                                group["lr"] *= stopping.lr_factor
                            since_decay = 0
                        if since_best >= patience:
                            total = step
                if step >= total:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
    return TrainedMLP(net=net.eval(), steps=step, best_step=best_step or step,
                      val_loss=best_loss)


@torch.no_grad()
def predict_logits(net: nn.Module, x: np.ndarray, *, device: str = "cpu",
                   batch_size: int = 4096) -> np.ndarray:
    """Logits of every row of ``x`` ``(n, d)``, shape ``(n, out)`` float32."""
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.ascontiguousarray(x[start:start + batch_size]),
                             dtype=torch.float32, device=device)
        out.append(net(xb).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 1), np.float32)


class ParallelMLP(nn.Module):
    """``members`` independent one-hidden-layer ReLU networks evaluated together: the first
    layer of all members is one matrix product over the shared input, the second a batched
    product. Members share nothing but the input."""

    def __init__(self, d_in: int, hidden: int, d_out: int, members: int) -> None:
        super().__init__()
        self.members, self.hidden = members, hidden
        bound1, bound2 = 1 / math.sqrt(d_in), 1 / math.sqrt(hidden)  # nn.Linear's defaults
        self.w1 = nn.Parameter(torch.empty(d_in, members * hidden).uniform_(-bound1, bound1))
        self.b1 = nn.Parameter(torch.empty(members * hidden).uniform_(-bound1, bound1))
        self.w2 = nn.Parameter(torch.empty(members, hidden, d_out).uniform_(-bound2, bound2))
        self.b2 = nn.Parameter(torch.empty(members, 1, d_out).uniform_(-bound2, bound2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, d_in)`` shared by every member, or ``(members, B, d_in)``, a batch for
        each. Returns logits ``(members, B, d_out)``."""
        if x.dim() == 3:
            w1 = self.w1.view(-1, self.members, self.hidden).transpose(0, 1)  # (M, d_in, hidden)
            b1 = self.b1.view(self.members, 1, self.hidden)
            h = torch.relu(torch.baddbmm(b1, x, w1))  # (M, B, hidden)
        else:
            h = torch.relu(torch.addmm(self.b1, x, self.w1))  # (B, members * hidden)
            h = h.view(x.shape[0], self.members, self.hidden).transpose(0, 1)  # (M, B, hidden)
        return torch.baddbmm(self.b2, h, self.w2)


def train_parallel_mlp(x: np.ndarray, y: np.ndarray, *, classes: int, hidden: int,
                       weights: np.ndarray, steps: int, seed: int, batch_size: int = 256,
                       lr: float = 1e-3, device: str = "cpu") -> ParallelMLP:
    """Train one classifier per row of ``weights`` ``(members, n)`` (per-example loss
    weights: ones for the full data, bootstrap multiplicities for a resample) on ``x``
    ``(n, d)`` float32 and labels ``y`` ``(n,)``, each from its own initialization and on its
    own seeded minibatch order, with Adam for exactly ``steps`` steps.

    Since the members share no parameter, this equals training each alone, at the cost of one
    wider network: the replicates carry every source of the classifier's randomness
    (resampling, initialization and minibatch order).
    """
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    wt = torch.as_tensor(np.asarray(weights), dtype=torch.float32, device=device)  # (M, n)
    n, members = len(xt), wt.shape[0]
    with forked_rng(seed):  # the global generator draws the initial weights, nothing after
        net = ParallelMLP(xt.shape[1], hidden, classes, members).to(device)
    with torch.enable_grad():
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        orders = [torch.Generator().manual_seed(child_seed(seed, "order", r))
                  for r in range(members)]
        step = 0
        while step < steps:
            perm = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)
            for start in range(0, n, batch_size):
                idx = perm[:, start:start + batch_size]  # (M, B): each member's own batch
                logits = net(xt[idx])  # (M, B, classes)
                per = nn.functional.cross_entropy(
                    logits.reshape(-1, classes), yt[idx].reshape(-1),
                    reduction="none").view(members, -1)  # (M, B)
                w = torch.gather(wt, 1, idx)
                loss = ((per * w).sum(1) / w.sum(1).clamp_min(1e-6)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step >= steps:
                    break
    return net.eval()


@torch.no_grad()
def predict_parallel(net: ParallelMLP, x: np.ndarray, *, device: str = "cpu",
                     batch_size: int = 4096) -> np.ndarray:
    """Predicted class of every row of ``x`` by every member, ``(members, n)`` int64."""
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.ascontiguousarray(x[start:start + batch_size]),
                             dtype=torch.float32, device=device)
        out.append(net(xb).argmax(-1).cpu().numpy())
    return np.concatenate(out, axis=1) if out else np.empty((net.members, 0), np.int64)
