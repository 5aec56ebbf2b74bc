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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gmbench.run.request import RunRequest

__all__ = ["Gathered", "gather_samples", "shard_blocks"]


def shard_blocks(n: int, shards: int, block: int) -> list[tuple[int, int]]:
    """Contiguous ``(first, stop)`` block ranges, as even as blocks allow; never empty."""
    blocks = math.ceil(n / block)
    shards = max(1, min(shards, blocks))
    edges = [round(i * blocks / shards) for i in range(shards + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


@dataclass(frozen=True)
class Gathered:
    """What the shards of one evaluation drew: the samples in block order, their feature
    pass (``"features"`` and, for classifiers, ``"logits"``), and how it went."""

    samples: np.ndarray
    features: dict[str, np.ndarray]
    shards: int
    seconds: float


def _shard(request: RunRequest, n: int, blocks: tuple[int, int], threads: int
           ) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
    """In a worker: this shard's samples (compact dtype in transit), their dtype and their
    feature pass."""
    import torch

    from gmbench.core.rng import child_seed
    from gmbench.datasets import open_dataset
    from gmbench.features.extractors import extract_all, get_extractor
    from gmbench.models.boundary import process_state
    from gmbench.models.model import build_model, import_model_file

    torch.set_num_threads(threads)
    with process_state():
        module, source = import_model_file(request.model)
        data = open_dataset(request.dataset, request.data_root)
        model = build_model(module, source, data.info, request.device)
        x = model.sample(n, seed=child_seed(request.seed, "samples"), blocks=blocks)
        feats = extract_all(get_extractor(request.feature_extractor, data,
                                          inception_weights=request.inception_weights,
                                          device=request.device), x)
    compact = x
    if x.dtype.kind in "iu" and x.size and x.min() >= 0 and x.max() <= 255:
        compact = x.astype(np.uint8)  # 8x less to send; widened again by the driver
    return compact, str(x.dtype), feats


def gather_samples(ray: Any, request: RunRequest, n: int, retries: int = 2) -> Gathered:
    """Run ``request.workers`` shards of ``n`` samples on Ray (each with the request's CPUs
    and GPUs per worker); the request names a model file and a dataset."""
    from gmbench.models.model import SAMPLE_BLOCK

    task = ray.remote(num_cpus=request.cpus_per_worker, num_gpus=request.gpus_per_worker,
                      max_retries=retries)(_shard)
    tic = time.perf_counter()
    ranges = shard_blocks(n, request.workers, SAMPLE_BLOCK)
    threads = max(1, int(request.cpus_per_worker))
    parts = ray.get([task.remote(request, n, r, threads) for r in ranges])
    samples = np.concatenate([x.astype(dtype, copy=False) for x, dtype, _ in parts])
    features = {k: np.concatenate([f[k] for _, _, f in parts]) for k in parts[0][2]}
    return Gathered(samples, features, len(ranges), time.perf_counter() - tic)
