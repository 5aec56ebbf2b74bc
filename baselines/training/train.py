"""Train one baseline and save its weights and training record.

    python -m gmbench_baselines.training.train --family vae --dataset fashion-mnist [--device cuda]
                              [--epochs N] [--seed S] [--threads T]
                              [--budget-minutes M] [--checkpoint-minutes C] [--restart]

Every family module has ``fit(dataset, *, seed, epochs, device) -> Fitted``; this entry point
seeds, times and records it: ``baselines/weights/<family>-<dataset>.safetensors`` and a JSON
record (device, wall time, epochs, final train loss, torch version, seed, command).

Families trained by the resumable loop (:mod:`.loop`; ``fit`` takes a ``budget``) stop after
``--budget-minutes`` of wall time, write their weights (the averaged weights so far) and a
checkpoint under ``baselines/checkpoints/``; the same command resumes from that checkpoint
(``--restart`` discards it). Their record holds the learning curve and whether the planned
epochs were completed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import torch
from gmbench_baselines import BASELINES, trained_families
from gmbench_baselines.training.loop import Budget
from gmbench_baselines.weights import save_weights

from gmbench.datasets import get_dataset
from gmbench.errors import GmbenchError

__all__ = ["main", "resumable_families", "train"]


def resumable_families() -> list[str]:
    """Trained families whose ``fit`` runs the resumable, budgeted loop."""
    return [name for name, b in BASELINES.items() if b.trained and "budget" in
            inspect.signature(importlib.import_module(f"baselines.{name}").fit).parameters]


def train(*, family: str, dataset: str, seed: int = 0, epochs: int | None = None,
          device: str = "cpu", budget: Budget | None = None) -> dict:
    """Fit ``family`` on ``dataset`` and write its weights; returns the training record.
    ``budget`` (wall time, checkpoints, restart) applies to families trained by the
    resumable loop; the others refuse it."""
    if family not in BASELINES or family not in trained_families(dataset):
        options = ", ".join(trained_families(dataset)) or "none"
        raise GmbenchError(f"No trainable baseline '{family}' for dataset '{dataset}'. "
                           f"Trainable for {dataset}: {options}.")
    data = get_dataset(dataset)
    module = importlib.import_module(f"baselines.{family}")
    resumable = "budget" in inspect.signature(module.fit).parameters
    if budget is not None and not resumable:
        raise GmbenchError(f"baselines/{family}.py trains in one go: --budget-minutes, "
                           "--checkpoint-minutes and --restart apply to the resumable families "
                           f"({', '.join(resumable_families())}).")
    started = time.time()
    kwargs = {"budget": budget} if resumable else {}
    fitted = module.fit(data, seed=seed, epochs=epochs, device=device, **kwargs)
    wall = time.time() - started
    record = {
        "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name()})",
        "threads": torch.get_num_threads(),
        "wall_time_s": round(wall, 2),
        "epochs": fitted.epochs,
        "final_train_loss": fitted.final_train_loss,
        "seed": seed,
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "trained": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": f"python -m gmbench_baselines.training.train --family {family} --dataset {dataset} "
                   f"--seed {seed}" + (f" --epochs {epochs}" if epochs else "")
                   + (f" --device {device}" if device != "cpu" else "")
                   + (f" --budget-minutes {budget.seconds / 60:g}"
                      if budget is not None and budget.seconds is not None else ""),
        **fitted.extra,
    }
    path = save_weights(family=family, dataset=dataset, tensors=fitted.tensors,
                        config=fitted.config, record=record)
    print(f"[{family} {dataset}] wrote {path} in {wall:.1f}s (final train loss "
          f"{fitted.final_train_loss})", file=sys.stderr)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gmbench_baselines.training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True, help="; ".join(BASELINES))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="default: per family/dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: faster than 2 on a shared machine)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop after this much wall time; the same command resumes")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0,
                        help="write a checkpoint this often (default 10)")
    parser.add_argument("--restart", action="store_true",
                        help="discard an existing checkpoint and train from the start")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = None
    if args.budget_minutes is not None or args.restart or "--checkpoint-minutes" in (
            argv if argv is not None else sys.argv):
        if args.budget_minutes is not None and args.budget_minutes <= 0:
            parser.error("--budget-minutes must be positive")
        budget = Budget(seconds=None if args.budget_minutes is None
                        else args.budget_minutes * 60,
                        checkpoint_every=args.checkpoint_minutes * 60, restart=args.restart)
    try:
        train(family=args.family, dataset=args.dataset, seed=args.seed, epochs=args.epochs,
              device=args.device, budget=budget)
    except GmbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
