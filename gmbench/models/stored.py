"""Stored samples as a model: a ``.npz``, a ``.npy``, a folder of PNG images, or an array.

Researchers often have samples on disk already. :func:`read_samples` reads and validates them
against the dataset (shape, dtype, range, count), and :class:`StoredSamples` hands them out in
order, so a stored set goes through exactly the checks, seeds and metrics a model's samples
do. Accepted layouts: images ``(n, C, H, W)`` or ``(n, H, W, C)`` (``(n, H, W)`` for one
channel), integer levels ``0..levels-1``, ``uint8`` ``0..255`` rescaled to the dataset's levels
when it has 256, or floats in ``[0, 1]`` (16-bit PNGs are read as floats, ``value / 65535``); ``(n, d)`` arrays for vector data. A ``.npz`` holds one
array, or several with one named ``samples``. PNG folders are read in file-name order.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmbench.core.errors import ModelError
from gmbench.core.files import npy_claim, npz_overclaim, sha256_bytes, sha256_file
from gmbench.datasets import DatasetInfo

__all__ = ["StoredSamples", "numpy_suffix", "read_samples", "samples_sha256"]

IMAGE_SUFFIXES = (".png",)


def samples_sha256(x: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(x)
    return sha256_bytes(f"{a.dtype}|{a.shape}|".encode() + a.tobytes())


def _image_array(img: Any, name: str, where: str, channels: int) -> np.ndarray:
    """One PNG as ``(H, W)`` (one channel) or ``(H, W, 3)``: uint8, or float32 in [0, 1] for
    16-bit images. Transparency and colour in a grey dataset are refused, not flattened."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img)
        if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
            raise ModelError(f"{where}: {name} is a 32-bit integer image with values outside "
                             "0..65535; save 8- or 16-bit PNGs.")
        return (a.astype(np.float64) / 65535.0).astype(np.float32)  # 16-bit: 0..65535
    rgba = np.asarray(img.convert("RGBA"))  # (H, W, 4) uint8, whatever the 8-bit mode
    if (rgba[..., 3] != 255).any():
        raise ModelError(f"{where}: {name} has transparent pixels (mode {img.mode}); save "
                         "the samples as opaque images (drop the alpha channel).")
    if channels == 1:
        if (rgba[..., 0] != rgba[..., 1]).any() or (rgba[..., 0] != rgba[..., 2]).any():
            raise ModelError(f"{where}: {name} is a colour image (mode {img.mode}), but the "
                             "dataset has one channel; save grey-scale images.")
        return rgba[..., 0]
    return rgba[..., :3]


def _no_images(path: Path) -> str:
    """What to do with a folder given as stored samples that holds no ``.png`` images: pass
    the sub-folder that holds them, or the model file it holds, or say what is read."""
    def holds_png(folder: Path) -> bool:
        try:
            return any(f.suffix.lower() in IMAGE_SUFFIXES for f in folder.iterdir())
        except OSError:
            return False

    entries = sorted(e for e in path.iterdir() if not e.name.startswith("."))
    deeper = [d for d in entries if d.is_dir() and holds_png(d)]
    said = (f"{path} is a directory that holds no .png images (stored samples are the .png "
            "files directly in the folder passed, one per sample)")
    if deeper:
        others = f" (and {len(deeper) - 1} more sub-folders)" if len(deeper) > 1 else ""
        return (f"{said}; its sub-folder {deeper[0].name}/{others} holds some: pass "
                f"{path / deeper[0].name}.")
    models = [e.name for e in entries if e.suffix == ".py" and e.is_file()]
    if models:
        return (f"{said}; it holds {models[0]}: a model is passed as its Python file "
                f"({path / models[0]}).")
    return (f"{said}. Pass stored samples as a folder of .png images, a .npy or a .npz file, "
            "or a model as its Python file (e.g. model.py).")


def numpy_suffix(path: Path) -> str | None:
    """``".npy"`` or ``".npz"`` for a file that is one by its first bytes (whatever its
    name), else ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError:
        return None
    if head == b"\x93NUMPY":
        return ".npy"
    return ".npz" if head[:4] == b"PK\x03\x04" else None


def _read_png_folder(path: Path, where: str, channels: int) -> np.ndarray:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    odd = [p.name for p in files if not p.is_file()]  # a pipe or device would block a read
    if odd:
        raise ModelError(f"{where}: {odd[0]} is not a regular file (a pipe, a device or a "
                         "folder); keep only .png image files in the folder.")
    if not files:
        raise ModelError(_no_images(path))
    from PIL import Image, UnidentifiedImageError

    images = []
    for f in files:
        try:
            with Image.open(f) as img:
                images.append(_image_array(img, f.name, where, channels))
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ModelError(f"{where}: {f.name} is not a readable PNG ({exc}).") from None
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ModelError(f"{where}: the images differ in size or channels "
                         f"({', '.join(map(str, sorted(shapes)))}); every sample must have "
                         "the dataset's shape.")
    deep = [f.name for f, im in zip(files, images, strict=True) if im.dtype == np.float32]
    if deep and len(deep) < len(images):  # 8-bit values may be levels, 16-bit ones never are
        raise ModelError(f"{where}: {len(deep)} of the {len(images)} images are 16-bit "
                         f"({', '.join(deep[:3])}{', ...' if len(deep) > 3 else ''}) and the "
                         "others 8-bit; save them all at one bit depth.")
    return np.stack(images)


def _check_npy_header(path: Path, where: str) -> None:
    """Refuse a ``.npy`` whose header claims more data than the file holds (before NumPy
    tries to allocate it)."""
    with open(path, "rb") as fh:
        claim = npy_claim(fh)
    if claim is None:  # an object array: np.load refuses it (pickled objects)
        return
    shape, dtype, need, offset = claim
    have = path.stat().st_size - offset
    if need > have:
        raise ModelError(f"{where}: its header says {dtype} of shape {tuple(shape)} "
                         f"({need} bytes), but the file holds {have} bytes of data; it is "
                         "truncated or corrupt. Save the samples again with numpy.save.")


def _load_file(path: Path, channels: int) -> np.ndarray:
    where = f"stored samples {path}"
    if path.is_dir():
        return _read_png_folder(path, where, channels)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            _check_npy_header(path, where)
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            overclaim = npz_overclaim(path)
            if overclaim is not None:
                raise ModelError(f"{where} is damaged: {overclaim}. Save the samples again "
                                 "with numpy.savez.")
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if "samples" in names:
                    return z["samples"]
                if len(names) == 1:
                    return z[names[0]]
                raise ModelError(f"{where} holds {len(names)} arrays ({', '.join(names)}); "
                                 "name the samples 'samples' or store only them.")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError,
            KeyError) as exc:
        raise ModelError(f"{where} cannot be read as a NumPy file "
                         f"({type(exc).__name__}: {exc}); it may be truncated or not a "
                         ".npy/.npz (pickled arrays are refused).") from None
    kind = numpy_suffix(path)
    if kind is not None:
        raise ModelError(f"{where} is a NumPy {kind} file named without its suffix; stored "
                         f"samples are read from files named .npy or .npz: rename it "
                         f"{path.name}{kind}.")
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
        x = _load_file(path, info.shape[0] if info.kind == "image" else 1)
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
                         f"{info.levels} levels, and 8-bit values are read as levels: store "
                         f"levels 0..{info.levels - 1}, floats in [0, 1] (.npy/.npz), or "
                         "16-bit PNGs (read as value / 65535).")
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
