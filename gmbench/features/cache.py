"""On-disk cache of real-data features, keyed by the dataset's and the extractor's hashes.

Features of a dataset split depend only on the split's contents and the extractor's weights,
so they are computed once per machine and reused by every later evaluation (by the same
computation: :data:`COMPUTATION`). Files live in
``$XDG_CACHE_HOME/gmbench/features`` (default ``~/.cache/gmbench/features``), one
safetensors file per (dataset, split, extractor), written atomically; a file whose recorded
hashes do not match is recomputed, and one whose arrays do not match the content hash stored
with them (altered on disk) is recomputed with a warning. ``GMBENCH_FEATURE_CACHE=off``
disables the cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gmbench.core.errors import warn
from gmbench.core.files import atomic_write

__all__ = ["COMPUTATION", "cache_dir", "cache_path", "cached_arrays", "content_sha256"]

# What the cached arrays depend on beyond the dataset's and extractor's hashes: the code that
# computes them. Change it whenever a change alters their values, even by round-off (files
# of another computation are recomputed quietly), so that a cache never mixes the two.
# 2: the bundled classifier runs channels-last on the CPU (features differ by ~1e-6).
COMPUTATION = "2"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gmbench/features``, default ``~/.cache/gmbench/features``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gmbench" / "features"


def cache_path(*, dataset: str, split: str, dataset_sha256: str, extractor: str,
               extractor_sha256: str) -> Path:
    return cache_dir() / (f"{dataset}-{split}-{dataset_sha256[:16]}-{extractor}-"
                          f"{extractor_sha256[:16]}.safetensors")


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _read(path: Path, expected: dict[str, str]) -> tuple[dict[str, np.ndarray] | None, str]:
    """The file's arrays, or ``None`` and why not (``""``: another key, silently replaced)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            if {k: meta.get(k) for k in expected} != expected:
                return None, ""
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception:  # noqa: BLE001 - a corrupt or partial file is recomputed
        return None, "it cannot be read (corrupt or truncated)"
    if "content_sha256" not in meta:  # written by gmbench 0.1: replaced quietly
        return None, ""
    if meta["content_sha256"] != content_sha256(arrays):
        return None, "its arrays do not match the content hash it was written with"
    return arrays, ""


def cached_arrays(*, dataset: str, split: str, dataset_sha256: str, extractor: str,
                  extractor_sha256: str, n: int, compute: Callable[[], dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """Arrays of one (dataset, split, extractor) from the cache, else ``compute()`` them and
    store them. A cached file whose arrays do not match its recorded content hash (altered
    on disk) or cannot be read is recomputed, with a warning.

    Args:
        dataset, split: names; dataset_sha256: hash of the dataset's contents.
        extractor, extractor_sha256: the extractor's name and weights hash.
        n: rows expected in every array (a mismatch means a stale file).
        compute: returns ``{name: (n, ...) array}`` (e.g. ``features``, ``logits``).
    """
    if os.environ.get("GMBENCH_FEATURE_CACHE", "").lower() in ("off", "0", "false", "no"):
        return compute()
    keys = {"dataset": dataset, "split": split, "dataset_sha256": dataset_sha256,
            "extractor": extractor, "extractor_sha256": extractor_sha256, "rows": str(n),
            "computation": COMPUTATION}
    path = cache_path(dataset=dataset, split=split, dataset_sha256=dataset_sha256,
                      extractor=extractor, extractor_sha256=extractor_sha256)
    if path.is_file():
        arrays, problem = _read(path, keys)
        if arrays is not None and all(len(a) == n for a in arrays.values()):
            return arrays
        if problem:
            warn(f"the cached {split} arrays {path} were not used: {problem}; recomputing "
                 "them")
    arrays = compute()
    from safetensors.numpy import save

    meta = {**keys, "content_sha256": content_sha256(arrays)}
    blob = save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=meta)
    try:
        with atomic_write(path, mode="wb") as fh:
            fh.write(blob)
    except OSError:  # a read-only cache must not fail the evaluation
        pass
    return arrays
