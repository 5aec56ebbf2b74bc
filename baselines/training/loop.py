"""A seeded training loop that stops at a wall-clock budget and resumes from its checkpoint.

Long baselines (convolutional flow, PixelCNN, ...) train for hours on a CPU, longer than one
sitting. :func:`train_resumable` therefore

- draws every epoch's order and every step's noise from seeds derived from ``(seed, epoch,
  step)``, so a run resumed mid-epoch takes exactly the steps an uninterrupted one would;
- keeps an exponential moving average (Polyak averaging) of the weights, with a warm-up of
  its decay, the weights it saves: a good model at any stopping point, without a schedule
  that must reach its end;
- writes a checkpoint (weights, averaged weights, Adam state, position, learning curve; one
  safetensors file and no pickle) every ``checkpoint_every`` seconds and when the budget runs
  out, atomically, so a killed run loses at most that much;
- records the learning curve: per epoch (and at a budget stop) the mean training loss and the
  averaged model's loss on a fixed held-out subset, with the wall time so far.

A checkpoint is resumed only when its family, dataset, seed and settings match the run's;
otherwise it is refused with what differs (pass ``restart`` to discard it).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gmbench_baselines.training.fitting import Fitted, TrainLog
from gmbench_baselines.training.settings import Training
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from gmbench.core.files import atomic_write
from gmbench.core.rng import child_seed
from gmbench.errors import GmbenchError

__all__ = ["CHECKPOINT_DIR", "Budget", "TrainResult", "checkpoint_path", "dynamic_binarization",
           "fit_images", "train_resumable"]

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
EMA_DECAY = 0.999
WARMUP_STEPS = 200
HELD_OUT = 2000  # held-out examples scored after each epoch (a fixed subset)


@dataclass(frozen=True)
class Budget:
    """Wall-clock seconds this invocation may train (``None``: until the planned epochs end),
    and how often it writes a checkpoint."""

    seconds: float | None = None
    checkpoint_every: float = 600.0
    restart: bool = False


@dataclass
class TrainResult:
    """How a (possibly partial) run went: planned and finished epochs, the curve, the time."""

    planned_epochs: int
    epochs: float  # finished epochs, fractional at a budget stop
    complete: bool
    final_train_loss: float | None
    wall_time_s: float  # over every invocation of this run
    sessions: int
    curve: list[dict[str, float]] = field(default_factory=list)
    ema_decay: float = EMA_DECAY
    steps: int = 0  # optimizer steps over every session: what the weights depend on

    def record(self) -> dict[str, Any]:
        return {"planned_epochs": self.planned_epochs, "epochs_done": round(self.epochs, 4),
                "steps": self.steps,
                "complete": self.complete, "training_wall_time_s": round(self.wall_time_s, 1),
                "sessions": self.sessions, "learning_curve": self.curve,
                "weights": f"exponential moving average of the weights (decay "
                           f"{self.ema_decay} per step)"}


def checkpoint_path(family: str, dataset: str, seed: int) -> Path:
    return CHECKPOINT_DIR / f"{family}-{dataset}-seed{seed}.safetensors"


def _ema_decay(step: int, decay: float) -> float:
    """The average's decay at ``step`` (1-based count of updates so far): ``(1 + t) / (10 +
    t)`` until that reaches ``decay``, so that early on the average follows the iterates
    instead of keeping the random initialization (at a fixed 0.999 it still weighs 39% after
    one Fashion-MNIST epoch of 938 steps)."""
    return min(decay, (1 + step) / (10 + step))


def _lr(step: int, epoch: int, lr: float, decay: float) -> float:
    return lr * min(1.0, (step + 1) / WARMUP_STEPS) * decay ** epoch


def _save(path: Path, model: torch.nn.Module, ema: torch.nn.Module,
          opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    opt_state = opt.state_dict()
    names = [n for n, _ in model.named_parameters()]
    for index, slot in opt_state["state"].items():
        for key, value in slot.items():
            tensors[f"adam.{names[index]}.{key}"] = torch.as_tensor(value)
    blob = safetensors_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                            metadata={"state": json.dumps(state, sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, mode="wb") as handle:
        handle.write(blob)


def _load(path: Path, model: torch.nn.Module, ema: torch.nn.Module,
          opt: torch.optim.Optimizer, device: str) -> dict[str, Any]:
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        state = json.loads((handle.metadata() or {})["state"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for index, (name, _) in enumerate(model.named_parameters()):
        prefix = f"adam.{name}."
        slot = {k[len(prefix):]: v.to(device) for k, v in tensors.items()
                if k.startswith(prefix)}
        if slot:
            slot["step"] = slot["step"].cpu()
            slots[index] = slot
    opt_state = opt.state_dict()
    opt_state["state"] = slots
    opt.load_state_dict(opt_state)
    return state


Update = Callable[[torch.Tensor, torch.Generator, torch.optim.Optimizer], float]
Draw = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def dynamic_binarization(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh Bernoulli draw of each pixel of 8-bit ``batch``: 1 with probability
    ``intensity / 255`` (int64 levels 0/1, the shape kept)."""
    u = torch.rand(batch.shape, generator=generator, dtype=torch.float64)
    return (u * 255.0 < batch).long()


def train_resumable(model: torch.nn.Module,
                    loss_of: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
                    x: torch.Tensor, *, held_out: torch.Tensor, family: str, dataset: str,
                    seed: int, epochs: int, batch_size: int, lr: float, log: TrainLog,
                    budget: Budget | None = None, lr_decay: float = 0.9,
                    ema_decay: float = EMA_DECAY, per_example_to_bpd: float | None = None,
                    settings: dict[str, Any] | None = None, update: Update | None = None,
                    probe: Callable[[], dict[str, float]] | None = None,
                    betas: tuple[float, float] = (0.9, 0.999),
                    draw: Draw | None = None) -> TrainResult:
    """Adam (linear warm-up, then ``lr * lr_decay ** epoch``) on ``loss_of(batch, generator)``
    (the mean loss of a batch; the generator, seeded per step, draws any noise it needs) over
    shuffled minibatches of ``x``. On return ``model`` holds the averaged weights.

    ``per_example_to_bpd`` converts a per-example loss in nats to bits per dimension for the
    log lines and the curve. ``settings`` (the architecture, ...) must match a checkpoint's
    for it to be resumed. ``ema_decay``: per step; a run of few steps per epoch (a small
    dataset) wants a shorter average than :data:`EMA_DECAY`.

    ``update(batch, generator, optimizer)``, where one loss and one step do not fit (a GAN's
    alternating discriminator and generator steps), takes the step(s) itself and returns the
    value to log; ``loss_of`` may then be ``None`` (no held-out loss). ``probe()`` scores the
    averaged weights for the curve (a GAN's FID on a few thousand samples): a dict of named
    numbers added to each curve point. ``draw(batch, generator)`` turns each training
    minibatch of ``x`` into the examples trained on (a fresh binarization of 8-bit images:
    dynamic binarization); the held-out examples are scored as they are.
    """
    if loss_of is None and update is None:
        raise ValueError("train_resumable needs loss_of, update or both")
    budget = budget or Budget()
    device = next(model.parameters()).device.type
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
    identity = {"family": family, "dataset": dataset, "seed": seed, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "lr_decay": lr_decay,
                "n_train": len(x), "settings": settings or {}}
    if ema_decay != EMA_DECAY:  # (checkpoints written before it was a setting had the default)
        identity["ema_decay"] = ema_decay
    if betas != (0.9, 0.999):
        identity["betas"] = list(betas)
    path = checkpoint_path(family, dataset, seed)
    state: dict[str, Any] = {"identity": identity, "epoch": 0, "step": 0, "global_step": 0,
                             "wall_time_s": 0.0, "sessions": 0, "curve": [], "epoch_loss": 0.0,
                             "epoch_count": 0}
    if path.is_file() and not budget.restart:
        try:
            saved = _load(path, model, ema, opt, device)
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            raise GmbenchError(f"the checkpoint {path} cannot be read ({exc}); delete it or "
                               "pass --restart to train from the start.") from None
        if saved["identity"] != identity:
            differ = sorted(k for k in identity if saved["identity"].get(k) != identity[k])
            raise GmbenchError(f"the checkpoint {path} is of another run (differs in "
                               f"{', '.join(differ)}); pass --restart to discard it, or the "
                               "same settings to resume it.")
        state = saved
        log(f"resuming at epoch {state['epoch'] + 1} step {state['step']} "
            f"({state['wall_time_s'] / 60:.1f} min trained before)")
    state["sessions"] += 1
    steps_per_epoch = math.ceil(len(x) / batch_size)
    gen_held = torch.Generator().manual_seed(child_seed(seed, "held-out"))
    held = held_out[torch.randperm(len(held_out), generator=gen_held)[:HELD_OUT]]
    started, saved_at, base = time.monotonic(), time.monotonic(), state["wall_time_s"]

    def bpd(nats: float) -> str:
        return f"{nats * per_example_to_bpd:.4f} bits/dim" if per_example_to_bpd else \
            f"loss {nats:.4f}"

    def held_out_loss() -> float | None:
        if loss_of is None:
            return None
        ema.eval()
        with torch.no_grad():
            total = sum(float(loss_of(held[i:i + 500], torch.Generator().manual_seed(
                child_seed(seed, "held-out-noise", i)))) * len(held[i:i + 500])
                for i in range(0, len(held), 500))
        return total / len(held)

    def point(epochs_done: float) -> None:
        train_loss = state["epoch_loss"] / max(state["epoch_count"], 1)
        swap_in(ema)
        test_loss = held_out_loss()
        probed = probe() if probe is not None else {}
        swap_in(None)
        entry: dict[str, Any] = {"epoch": round(epochs_done, 4), "train_loss": train_loss}
        if test_loss is not None:
            entry["held_out_loss"] = test_loss
        entry["wall_time_s"] = round(elapsed(), 1)
        if per_example_to_bpd and test_loss is not None:
            entry |= {"train_bpd": train_loss * per_example_to_bpd,
                      "held_out_bpd": test_loss * per_example_to_bpd}
        entry |= probed
        state["curve"].append(entry)
        scored = "".join(f", {k} {v:.4g}" for k, v in probed.items())
        held_text = "" if test_loss is None else f", held-out (averaged weights) {bpd(test_loss)}"
        log(f"epoch {epochs_done:.2f}/{epochs} train {bpd(train_loss)}{held_text}{scored}")

    live: dict[str, torch.Tensor] = {}  # the iterates, while ``ema``'s weights are scored

    def swap_in(source: torch.nn.Module | None) -> None:
        """Score with ``ema``'s weights through ``loss_of`` (which closes over ``model``)."""
        if source is None:
            model.load_state_dict(live)
            model.train()
        else:
            live.clear()
            live.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            model.load_state_dict(source.state_dict())
            model.eval()

    def elapsed() -> float:
        return base + time.monotonic() - started

    def stop_now() -> bool:
        return budget.seconds is not None and time.monotonic() - started >= budget.seconds

    stopped = False
    model.train()
    while state["epoch"] < epochs and not stopped:
        epoch = state["epoch"]
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(
            child_seed(seed, "epoch", epoch)))
        for step in range(state["step"], steps_per_epoch):
            if stop_now():
                stopped = True
                break
            idx = order[step * batch_size:(step + 1) * batch_size]
            for group in opt.param_groups:
                group["lr"] = _lr(state["global_step"], epoch, lr, lr_decay)
            noise = torch.Generator().manual_seed(child_seed(seed, "step", epoch, step))
            batch = x[idx] if draw is None else draw(x[idx], noise)
            if update is not None:
                value = update(batch, noise, opt)
            else:
                assert loss_of is not None
                loss = loss_of(batch, noise)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
                opt.step()
                value = loss.item()
            with torch.no_grad():
                decay = _ema_decay(state["global_step"], ema_decay)
                for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                    p_ema.lerp_(p, 1 - decay)
                for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
                    b_ema.copy_(b)
            state["epoch_loss"] += value * len(idx)
            state["epoch_count"] += len(idx)
            state["step"], state["global_step"] = step + 1, state["global_step"] + 1
            if time.monotonic() - saved_at >= budget.checkpoint_every:
                state["wall_time_s"] = elapsed()
                _save(path, model, ema, opt, state)
                saved_at = time.monotonic()
        if not stopped:
            point(epoch + 1)
            state.update(epoch=epoch + 1, step=0, epoch_loss=0.0, epoch_count=0)
    done = state["epoch"] + state["step"] / steps_per_epoch
    if stopped:
        point(done)
        log(f"budget of {budget.seconds:.0f} s spent at epoch {done:.2f}/{epochs}; the "
            f"checkpoint {path} resumes it")
    state["wall_time_s"] = elapsed()
    _save(path, model, ema, opt, state)
    curve = state["curve"]
    model.load_state_dict(ema.state_dict())
    model.eval()
    return TrainResult(planned_epochs=epochs, epochs=done, complete=not stopped,
                       final_train_loss=curve[-1]["train_loss"] if curve else None,
                       wall_time_s=state["wall_time_s"], sessions=state["sessions"],
                       curve=curve, ema_decay=ema_decay, steps=state["global_step"])


def fit_images(model: torch.nn.Module,
               loss_of: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
               x: torch.Tensor, test: torch.Tensor, *, family: str, dataset: str,
               config: dict[str, Any], settings: dict[str, Any], seed: int, epochs: int,
               plan: Training, budget: Budget | None, lr: float, loss: str,
               in_nats: bool = True, update: Update | None = None,
               probe: Callable[[], dict[str, float]] | None = None,
               betas: tuple[float, float] = (0.9, 0.999), draw: Draw | None = None) -> Fitted:
    """:func:`train_resumable` on an image dataset's training images ``x`` (``test``: the
    held-out images of the curve), with the minibatch size, learning-rate decay and weight
    average of the family's ``plan`` (:mod:`.settings`), a curve in bits per dimension where the loss is in nats per example
    (``in_nats``), and what it did as a :class:`Fitted` (``config`` rebuilds the model;
    ``settings`` must match a checkpoint's to resume it). ``update``, ``probe`` and
    ``betas`` and ``draw``: as in :func:`train_resumable`; ``mnist-binarized`` draws its
    training minibatches by :func:`dynamic_binarization` of its 8-bit images."""
    dims = math.prod(x.shape[1:])
    if draw is None:
        x, draw = _dynamic(dataset, x)
    if draw is not None:
        settings = {**settings, "draw": getattr(draw, "__name__", repr(draw))}
    result = train_resumable(
        model, loss_of, x, held_out=test, family=family, dataset=dataset, seed=seed,
        epochs=epochs, batch_size=plan.batch_size, lr=lr, budget=budget,
        lr_decay=plan.lr_decay, ema_decay=plan.ema_decay,
        log=TrainLog(f"{family} {dataset}"),
        per_example_to_bpd=1 / (dims * math.log(2)) if in_nats else None,
        settings=settings, update=update, probe=probe, betas=betas, draw=draw)
    return Fitted(dict(model.state_dict()), config, final_train_loss=result.final_train_loss,
                  epochs=result.epochs, extra={"loss": loss, **result.record()})


def _dynamic(dataset: str, x: torch.Tensor) -> tuple[torch.Tensor, Draw | None]:
    """The training images of ``dataset`` and how each minibatch is drawn from them:
    ``mnist-binarized`` trains on its 8-bit images binarized afresh per use
    (:func:`dynamic_binarization`; ``x``, its fixed binarization, gives the shape); other
    datasets on ``x`` as it is."""
    from gmbench.datasets import get_dataset

    try:
        intensities = get_dataset(dataset).extra.get("intensities")
    except GmbenchError:  # a dataset made in memory (tests): not one that binarizes
        intensities = None
    if intensities is None:
        return x, None
    return (torch.from_numpy(intensities["train"].astype(np.int64)).reshape(x.shape),
            dynamic_binarization)
