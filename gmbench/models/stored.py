"""Stored samples as a model: a ``.npz``, a ``.npy``, a folder of PNG images, or an array.

Researchers often have samples on disk already. :func:`read_samples` reads and validates them
against the dataset (shape, dtype, range, count), and :class:`StoredSamples` hands them out in
order, so a stored set goes through exactly the checks, seeds and metrics a model's samples
do. Accepted layouts: images ``(n, C, H, W)`` or ``(n, H, W, C)`` (``(n, H, W)`` for one
channel), integer levels ``0..levels-1``, ``uint8`` ``0..255`` rescaled to the dataset's levels
when it has 256, or floats in ``[0, 1]``; ``(n, d)`` arrays for vector data. A ``.npz`` holds one
array, or several with one named ``samples``. PNG folders are read in file-name order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gmbench.datasets import DatasetInfo
from gmbench.errors import ModelError
from gmbench.files import sha256_bytes, sha256_file

__all__ = ["StoredSamples", "read_samples", "samples_sha256"]

IMAGE_SUFFIXES = (".png",)


def samples_sha256(x: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(x)
    return sha256_bytes(f"{a.dtype}|{a.shape}|".encode() + a.tobytes())


def _load_file(path: Path) -> np.ndarray:
    where = f"stored samples {path}"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ModelError(f"{where}: the folder holds no .png images. Put one image per "
                             "sample in it, or pass a .npz/.npy array.")
        from PIL import Image, UnidentifiedImageError

        images = []
        for f in files:
            try:
                with Image.open(f) as img:
                    mode = "L" if img.mode in ("L", "1", "I;16", "P") else "RGB"
                    images.append(np.asarray(img.convert(mode)))
            except (UnidentifiedImageError, OSError) as exc:
                raise ModelError(f"{where}: {f.name} is not a readable PNG ({exc}).") from None
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ModelError(f"{where}: the images differ in size or channels "
                             f"({', '.join(map(str, sorted(shapes)))}); every sample must have "
                             "the dataset's shape.")
        return np.stack(images)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if "samples" in names:
                    return z["samples"]
                if len(names) == 1:
                    return z[names[0]]
                raise ModelError(f"{where} holds {len(names)} arrays ({', '.join(names)}); "
                                 "name the samples 'samples' or store only them.")
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(f"{where} cannot be read as a NumPy file ({exc}); it may be "
                         "truncated or not a .npy/.npz (pickled arrays are refused).") from None
    raise ModelError(f"{where}: use a .npz, a .npy or a folder of .png images.")


def read_samples(source: str | Path | np.ndarray | torch.Tensor, info: DatasetInfo
                 ) -> tuple[np.ndarray, str, str]:
    """The samples of ``source`` in the dataset's own layout, ``(n, *info.shape)``, not yet
    mapped to levels (the model boundary does that, as for any model), with a name and the
    sha256 of the file (or the array).

    Raises:
        ModelError: unreadable file, wrong shape, dtype or range, too few samples.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ModelError(f"stored samples {path} do not exist; pass a .npz, .npy or a "
                             "folder of .png images.")
        if not path.is_dir() and not path.is_file():
            raise ModelError(f"stored samples {path} is not a regular file (a pipe or a "
                             "device); save the samples to a .npz or .npy file.")
        x = _load_file(path)
        name = path.stem if path.is_file() else path.name
        digest = sha256_file(path) if path.is_file() else samples_sha256(x)
        where = f"stored samples {path}"
    else:
        x = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else \
            np.asarray(source)
        name, digest, where = "stored-samples", samples_sha256(x), "the stored samples"
    if x.dtype == np.bool_ or x.dtype.kind not in "iuf":
        raise ModelError(f"{where} have dtype {x.dtype}; store numbers (uint8 images, integer "
                         "levels, or floats in [0, 1]).")
    shape = tuple(info.shape)
    if info.kind == "image" and x.ndim == 4 and x.shape[1:] != shape and \
            x.shape[1:] == (shape[1], shape[2], shape[0]):
        x = np.transpose(x, (0, 3, 1, 2))  # NHWC -> NCHW
    if info.kind == "image" and x.ndim == 3 and shape[0] == 1 and x.shape[1:] == shape[1:]:
        x = x[:, None]
    if x.ndim < 1 or tuple(x.shape[1:]) != shape:
        raise ModelError(f"{where} have shape {tuple(x.shape)}; {info.name} needs "
                         f"(n, {', '.join(map(str, shape))})"
                         + (" (or (n, H, W, C))" if info.kind == "image" else "") + ".")
    if info.levels is not None and x.dtype == np.uint8 and info.levels != 256 and \
            x.max(initial=0) > info.levels - 1:
        raise ModelError(f"{where} are uint8 with values up to {x.max()}, but {info.name} has "
                         f"{info.levels} levels: store levels 0..{info.levels - 1}, or floats "
                         "in [0, 1].")
    return np.array(x, copy=True), name, digest


class StoredSamples:
    """A fixed set of samples behind the model contract: ``sample(n)`` hands them out in
    order, never twice, and says so when they run out."""

    log_prob_kind = "exact"

    def __init__(self, samples: np.ndarray, *, name: str) -> None:
        self.samples = samples
        self.name = name
        self._next = 0

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, n: int, *, seed: int | None = None) -> np.ndarray:
        stop = self._next + n
        if stop > len(self.samples):
            raise ModelError(f"{self.name}: {len(self.samples)} stored samples, but "
                             f"{stop} were asked for; pass --n-samples "
                             f"{len(self.samples)} or fewer.")
        out = self.samples[self._next:stop]
        self._next = stop
        return out
