"""One evaluation's sampling and feature extraction split across Ray workers.

The split is the single-process path's own chunking: :meth:`Model.sample` draws blocks of
:data:`~gmbench.models.model.SAMPLE_BLOCK` samples, block ``b`` seeded from ``(seed, b)``, so
shard ``i`` draws a contiguous run of blocks and the shards' samples, concatenated in block
order, are the single-process samples exactly. Each shard also runs the feature extractor
over its samples; the driver gathers samples and features and computes every metric once
(the likelihood metrics there too, from its own copy of the model). How the samples are
batched changes no bit of their features; a worker with another thread count than the
single process rounds the extractor's float32 kernels differently (4e-7 relative), and at
equal thread counts the metric values agree within 1e-6 relative
(``tests/test_distributed.py``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

__all__ = ["gather_samples", "shard_blocks"]


def shard_blocks(n: int, shards: int, block: int) -> list[tuple[int, int]]:
    """Contiguous ``(first, stop)`` block ranges, as even as blocks allow; never empty."""
    blocks = math.ceil(n / block)
    shards = max(1, min(shards, blocks))
    edges = [round(i * blocks / shards) for i in range(shards + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _shard(model_path: str, dataset: str, data_root: str | None, device: str, n: int,
           seed: int, blocks: tuple[int, int], extractor: str, inception_weights: str | None,
           threads: int) -> dict[str, Any]:
    """In a worker: this shard's samples (compact dtype in transit) and their feature pass."""
    import torch

    from gmbench.datasets import get_dataset
    from gmbench.features.extractors import extract_all, get_extractor
    from gmbench.models.boundary import process_state
    from gmbench.models.model import build_model, import_model_file
    from gmbench.rng import child_seed

    torch.set_num_threads(threads)
    with process_state():
        module, source = import_model_file(model_path)
        data = get_dataset(dataset, data_root)
        model = build_model(module, source, data.info, device)
        x = model.sample(n, seed=child_seed(seed, "samples"), blocks=blocks)
        feats = extract_all(get_extractor(extractor, data, inception_weights=inception_weights,
                                          device=device), x)
    compact = x
    if x.dtype.kind in "iu" and x.size and x.min() >= 0 and x.max() <= 255:
        compact = x.astype(np.uint8)  # 8x less to send; widened again by the driver
    return {"samples": compact, "dtype": str(x.dtype), "features": feats}


def gather_samples(ray: Any, *, model_path: str, dataset: str, data_root: str | None,
                   device: str, n: int, seed: int, shards: int, extractor: str,
                   inception_weights: str | None, cpus: float = 1, gpus: float = 0,
                   retries: int = 2) -> dict[str, Any]:
    """Run the shards on Ray; the memo entries ``"samples"`` and ``"feature_pass/samples"``
    of the whole evaluation, and ``{"shards": ..., "shard_seconds": ...}`` for provenance."""
    from gmbench.models.model import SAMPLE_BLOCK

    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries)(_shard)
    tic = time.perf_counter()
    ranges = shard_blocks(n, shards, SAMPLE_BLOCK)
    parts = ray.get([task.remote(model_path, dataset, data_root, device, n, seed, r,
                                 extractor, inception_weights, max(1, int(cpus)))
                     for r in ranges])
    samples = np.concatenate([p["samples"].astype(p["dtype"], copy=False) for p in parts])
    keys = parts[0]["features"].keys()
    features = {k: np.concatenate([p["features"][k] for p in parts]) for k in keys}
    return {"samples": samples, "feature_pass/samples": features,
            "provenance": {"shards": len(ranges),
                           "shard_seconds": round(time.perf_counter() - tic, 3)}}
