"""Baseline weights: where they live, and saving/loading them with safetensors (no pickle).

A weights file ``baselines/weights/<family>-<dataset>.safetensors`` holds the tensors and, in
its metadata, the JSON ``config`` that rebuilds the architecture; the training record
``<family>-<dataset>.json`` beside it says how, where and for how long it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from gmbench.core.files import atomic_write, sha256_file
from gmbench.errors import ModelError

__all__ = ["WEIGHTS_DIR", "load_weights", "record_path", "save_weights", "weights_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def weights_path(family: str, dataset: str) -> Path:
    return WEIGHTS_DIR / f"{family}-{dataset}.safetensors"


def record_path(family: str, dataset: str) -> Path:
    return WEIGHTS_DIR / f"{family}-{dataset}.json"


def save_weights(*, family: str, dataset: str, tensors: dict[str, torch.Tensor],
                 config: dict[str, Any], record: dict[str, Any]) -> Path:
    """Write the weights (atomically) and the training record; return the weights path."""
    path = weights_path(family, dataset)
    blob = safetensors_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                            metadata={"config": json.dumps(config, sort_keys=True)})
    with atomic_write(path, mode="wb") as handle:
        handle.write(blob)
    path.chmod(0o644)  # atomic_write's temporary file is private (0600); weights are shipped
    full = {**record, "family": family, "dataset": dataset, "config": config,
            "n_parameters": int(sum(v.numel() for v in tensors.values())),
            "weights_bytes": path.stat().st_size, "weights_sha256": sha256_file(path)}
    with atomic_write(record_path(family, dataset)) as handle:
        json.dump(full, handle, indent=2, sort_keys=True)
        handle.write("\n")
    record_path(family, dataset).chmod(0o644)
    return path


def load_weights(family: str, dataset: str, device: str = "cpu"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, config)`` of a trained baseline; a :class:`ModelError` saying how to train
    it when no weights exist for ``dataset``."""
    path = weights_path(family, dataset)
    if not path.is_file():
        have = sorted(p.stem.split("-", 1)[1] for p in WEIGHTS_DIR.glob(f"{family}-*.safetensors"))
        raise ModelError(
            f"baselines/{family}.py has no weights for dataset '{dataset}' (looked for "
            f"{path}). Bundled: {', '.join(have) or 'none'}. Train them with `python -m "
            f"gmbench_baselines.training.train --family {family} --dataset {dataset}`, or evaluate on a "
            "bundled dataset with --dataset.")
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        config = json.loads((handle.metadata() or {}).get("config", "{}"))
        for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
            tensors[key] = handle.get_tensor(key).to(device)
    return tensors, config
