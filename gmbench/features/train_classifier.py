"""Train a classifier feature space: ``python -m gmbench.features.train_classifier --dataset fashion-mnist``.

For a bundled dataset the weights go into the package (its bundled classifier); for your own
labelled image dataset (``--dataset PATH``, a ``.npz`` or image folder) into ``--out DIR``
(default ``$GMBENCH_CLASSIFIERS``, else ``gmbench-classifiers/``), named after the dataset,
with the dataset's content hash in the record; set ``GMBENCH_CLASSIFIERS=DIR`` and ``auto``
(and ``--feature-extractor classifier``) use it. The same data, seed, thread count and
command give the same weights, so two users get the same feature space.

Seeded and rerunnable on CPU or CUDA. Trains :class:`~gmbench.features.net.ConvClassifier`
on the dataset's train split (Adam, cosine learning-rate decay, cross-entropy), measures its
accuracy on the test split, and writes, atomically, ``<out>/<dataset>.safetensors`` (the
weights; loaded without pickle) and ``<out>/<dataset>.json`` (architecture, test accuracy,
weights sha256, training time, device, seed and settings). ``--out`` defaults to the package
directory, which is where :func:`gmbench.features.classifier.classifier_for` looks.

On CPU, results are bit-reproducible for a given seed, torch version and thread count; CUDA
runs are reproducible up to the usual nondeterminism of cuDNN kernels.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from gmbench.core.errors import DatasetError, GmbenchError
from gmbench.core.files import atomic_write, sha256_bytes
from gmbench.datasets import get_dataset
from gmbench.features.classifier import SHARED, WEIGHTS_DIR
from gmbench.features.net import ARCHITECTURES, ConvClassifier, architecture_for

__all__ = ["TrainConfig", "main", "shared_accuracies", "train_classifier"]

@dataclass(frozen=True)
class TrainConfig:
    """Training settings (recorded in the JSON record)."""

    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    # the share of each minibatch's images binarized afresh (each pixel 1 with probability
    # its intensity): MNIST's classifier also scores mnist-binarized, in one feature space
    binarized: float = 0.0


DEFAULTS = {
    "fashion-mnist": TrainConfig(epochs=3),
    "mnist": TrainConfig(epochs=4, binarized=0.5),
    "digits": TrainConfig(epochs=20, batch_size=64),
}


def _as_float(x: np.ndarray, levels: int) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32) / (levels - 1))


@torch.no_grad()
def accuracy(model: ConvClassifier, x: torch.Tensor, y: torch.Tensor, *, device: str,
             batch_size: int = 1000) -> float:
    """Fraction of ``x`` (``(n, C, H, W)`` in [0, 1]) whose argmax logit equals ``y``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size].to(device))[1]
        correct += int((logits.argmax(1).cpu() == y[i:i + batch_size]).sum())
    return correct / len(x)


def shared_accuracies(model: ConvClassifier, source: str, *, device: str = "cpu",
                      data_root: str | None = None) -> dict[str, float]:
    """The accuracy of ``source``'s classifier on the test split of each bundled dataset
    scored in its feature space (:data:`~gmbench.features.classifier.SHARED`), keyed as its
    record holds them (``mnist``: ``test_accuracy_binarized``, on ``mnist-binarized``'s fixed
    binarization)."""
    out = {}
    for name, shared in SHARED.items():
        if shared.source == source:
            data = get_dataset(name, data_root)
            assert data.test.y is not None
            out[shared.accuracy_key] = round(accuracy(
                model, _as_float(data.test.x, shared.levels),
                torch.from_numpy(data.test.y.astype(np.int64)), device=device), 6)
    return out


def train_classifier(dataset_name: str, *, config: TrainConfig, device: str = "cpu",
                     data_root: str | None = None, log: bool = True
                     ) -> tuple[dict[str, torch.Tensor], dict]:
    """Train the classifier of ``dataset_name``; return ``(state_dict, record)``."""
    dataset = get_dataset(dataset_name, data_root)
    info = dataset.info
    if info.kind != "image" or info.levels is None or info.num_classes is None \
            or dataset.train.y is None or dataset.test.y is None:
        raise DatasetError(f"A classifier feature space needs labelled images; {info.name} is "
                           f"{info.kind} data" + ("" if info.num_classes else " without labels")
                           + ". Use --feature-extractor pixels for it.")
    arch = architecture_for(info.name, info.shape, info.num_classes)
    torch.manual_seed(config.seed)
    model = ConvClassifier(arch).to(device)
    x_train = _as_float(dataset.train.x, info.levels)
    y_train = torch.from_numpy(dataset.train.y.astype(np.int64))
    x_test = _as_float(dataset.test.x, info.levels)
    y_test = torch.from_numpy(dataset.test.y.astype(np.int64))
    n = len(x_train)
    steps = config.epochs * math.ceil(n / config.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    shuffle = torch.Generator().manual_seed(config.seed)
    draws = torch.Generator().manual_seed(config.seed + 1)
    started, cpu_started = time.time(), time.process_time()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=shuffle)
        total = 0.0
        for i in range(0, n, config.batch_size):
            idx = order[i:i + config.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if config.binarized:
                pick = torch.rand(len(xb), generator=draws) < config.binarized
                ones = (torch.rand(xb[pick].shape, generator=draws) < xb[pick]).float()
                xb = xb.clone()
                xb[pick] = ones
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb)[1], yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log:
            print(f"epoch {epoch + 1}/{config.epochs}: train loss {total / n:.4f} "
                  f"({time.time() - started:.0f} s)", flush=True)
    seconds, cpu_seconds = time.time() - started, time.process_time() - cpu_started
    test_acc = accuracy(model, x_test, y_test, device=device)
    if log:
        print(f"test accuracy {test_acc:.4f}", flush=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    record = {
        "dataset": info.name,
        "dataset_sha256": dataset.sha256,
        "levels": info.levels,
        "architecture": arch.to_dict(),
        "feature_dim": arch.hidden,
        "feature_layer": "penultimate (ReLU of the hidden linear layer)",
        "input": "x / (levels - 1) in [0, 1], shape (n, C, H, W)",
        "test_accuracy": round(test_acc, 6),
        **shared_accuracies(model, info.name, device=device, data_root=data_root),
        "n_test": len(x_test),
        "training": {
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),
            "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name()})",
            "threads": torch.get_num_threads(),
            "seed": config.seed,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "optimizer": "AdamW + OneCycleLR",
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            **({"binarized": config.binarized} if config.binarized else {}),
            "torch_version": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": f"python -m gmbench.features.train_classifier --dataset {dataset_name} "
                       f"--seed {config.seed} --device {device}",
        },
    }
    return state, record


def save(state: dict[str, torch.Tensor], record: dict, out_dir: Path) -> Path:
    """Write ``<dataset>.safetensors`` and ``<dataset>.json`` (with the weights sha256)."""
    from safetensors.torch import save as save_bytes

    name = record["dataset"]
    blob = save_bytes(state, metadata={"dataset": name})
    record = {**record, "weights_file": f"{name}.safetensors", "weights_sha256": sha256_bytes(blob)}
    with atomic_write(out_dir / f"{name}.safetensors", mode="wb") as fh:
        fh.write(blob)
    with atomic_write(out_dir / f"{name}.json") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")
    for path in (out_dir / f"{name}.safetensors", out_dir / f"{name}.json"):
        path.chmod(0o644)  # package data, readable by every user
    return out_dir / f"{name}.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True,
                        help=f"{', '.join(sorted(ARCHITECTURES))}, or the path of your own "
                             "labelled image dataset (.npz or folder)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: the package for a bundled dataset, else "
                             "$GMBENCH_CLASSIFIERS, else gmbench-classifiers/")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = WEIGHTS_DIR if args.dataset in ARCHITECTURES else Path(
            os.environ.get("GMBENCH_CLASSIFIERS") or "gmbench-classifiers")
    args.out.mkdir(parents=True, exist_ok=True)
    base = DEFAULTS.get(args.dataset, TrainConfig(epochs=10, batch_size=64))
    config = dataclasses.replace(base, epochs=args.epochs or base.epochs, seed=args.seed)
    try:
        state, record = train_classifier(args.dataset, config=config, device=args.device,
                                         data_root=args.data_root)
    except GmbenchError as exc:
        print(f"gmbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {save(state, record, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
