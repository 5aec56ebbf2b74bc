"""Your own dataset: ``--dataset PATH`` for a ``.npz`` file or a folder of images.

- ``.npz``: arrays ``x_train`` and ``x_test`` (required), ``y_train`` and ``y_test``
  (optional, both or neither); read without pickle. Images as ``(n, H, W)``,
  ``(n, H, W, C)`` or ``(n, C, H, W)`` (``C`` of 1 or 3) of integer levels ``0..255``;
  other integer arrays ``(n, D)`` are discrete vectors; float arrays ``(n, D)`` continuous.
- a folder with ``train/`` and ``test/``, each holding image files (PNG, JPEG, BMP, ...),
  either directly or in one sub-folder per class (the classes: the sub-folders' names,
  sorted; the same in both splits). Images are read in sorted file-name order (within each
  class), so files named in array order reproduce the arrays. All images must share one
  size and be all grayscale or all RGB. Hidden entries (names starting with ``.``, such as
  Jupyter's ``.ipynb_checkpoints/``) are not part of the dataset, files other than images
  (notes, ``.txt``) are left out, and a broken symbolic link is refused.

The dataset's name is the file's or folder's name (without ``.npz``); its content hash is
recorded in every result, so two users with the same data get comparable numbers. Labels
enable CAS.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gmbench.core.errors import DatasetError
from gmbench.core.files import npz_overclaim
from gmbench.datasets.base import Dataset, DatasetInfo, Split
from gmbench.datasets.folders import listing

__all__ = ["IMAGE_SUFFIXES", "holds_images", "looks_like_path", "make_local_dataset"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
HOW = ("A dataset file is a .npz with x_train and x_test (optional y_train, y_test); a dataset "
       "folder holds train/ and test/ with image files, optionally in one sub-folder per class")


def looks_like_path(name: str) -> bool:
    """Whether ``--dataset`` names a file or folder rather than a registered dataset."""
    return name.endswith(".npz") or os.sep in name or "/" in name or Path(name).exists()


def _image_files(entries: list[Path]) -> list[Path]:
    """The image files among ``entries`` (by suffix); one that is not a regular file (a
    pipe, a device) is refused, not read (a read would block)."""
    images = [e for e in entries if e.suffix.lower() in IMAGE_SUFFIXES and not e.is_dir()]
    for e in images:
        if not e.is_file():
            raise DatasetError(f"{e} is not a regular file (a pipe or a device); keep only "
                               "image files in a dataset folder.")
    return images


def holds_images(path: Path) -> bool:
    """Whether ``path/train`` or ``path/test`` holds image files, directly or in a
    sub-folder (one per class)."""
    for split in (path / "train", path / "test"):
        if not split.is_dir():
            continue
        entries = listing(split)
        if _image_files(entries) or any(_image_files(listing(d)) for d in entries
                                        if d.is_dir()):
            return True
    return False


def _name(path: Path, registered: Callable[[str], bool]) -> str:
    name = path.name[:-4] if path.name.endswith(".npz") else path.name
    if not name or registered(name):
        raise DatasetError(f"{path}: a dataset of your own cannot be named '{name}', the name "
                           "of a built-in dataset (its bundled feature space and boards would "
                           "be taken for yours); rename the file or folder.")
    return name


def _as_images(x: np.ndarray, what: str) -> np.ndarray:
    """``(n, C, H, W)`` from ``(n, H, W)``, ``(n, H, W, C)`` or ``(n, C, H, W)``."""
    if x.ndim == 3:
        return x[:, None]
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.shape[1] in (1, 3):
        return x
    raise DatasetError(f"{what} has shape {x.shape}: images need 1 or 3 channels, as "
                       "(n, H, W), (n, H, W, C) or (n, C, H, W).")


def _labels(y: np.ndarray | None, n: int, what: str) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(f"{what} has shape {y.shape}; it needs one label per image "
                           f"({n},).")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and int(y.min()) < 0):
        raise DatasetError(f"{what} must hold non-negative integer class labels "
                           f"(got {y.dtype}).")
    if len(y) and int(y.max()) >= max(n, 2):  # the classes are 0..max: more than examples
        raise DatasetError(f"{what} holds the label {int(y.max())}, which makes "
                           f"{int(y.max()) + 1} classes for {n} examples; number the classes "
                           "0, 1, ..., K-1.")
    return y.astype(np.int64)


def _from_npz(path: Path) -> dict[str, np.ndarray | None]:
    overclaim = npz_overclaim(path)
    if overclaim is not None:
        raise DatasetError(f"{path} is damaged (or was not written by np.savez): {overclaim}. "
                           f"{HOW}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"Cannot read {path}: {exc}. {HOW}.") from None
    missing = [k for k in ("x_train", "x_test") if k not in arrays]
    if missing:
        raise DatasetError(f"{path} has no {' or '.join(missing)} (it holds "
                           f"{', '.join(sorted(arrays)) or 'nothing'}). {HOW}.")
    if ("y_train" in arrays) != ("y_test" in arrays):
        raise DatasetError(f"{path} has labels for one split only; give both y_train and "
                           "y_test, or neither.")
    return {k: arrays.get(k) for k in ("x_train", "x_test", "y_train", "y_test")}


def _eight_bit(a: np.ndarray, path: Path) -> np.ndarray:
    """A 16-bit grey image on the 8-bit scale, ``round(v / 257)`` (65535 -> 255), refused
    where two of its distinct values would become one (PIL's own conversion clips every
    value above 255)."""
    if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
        raise DatasetError(f"{path} is an integer image with values outside 0..65535; save "
                           "8- or 16-bit PNGs.")
    q = np.rint(a.astype(np.float64) / 257.0).astype(np.uint8)
    values = len(np.unique(a))
    if len(np.unique(q)) != values:
        raise DatasetError(f"{path} is a 16-bit image whose {values} grey values do "
                           "not fit 256 levels (gmbench datasets hold 8-bit levels); save it "
                           "as an 8-bit PNG with the levels you mean.")
    return q


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img = opened.convert("RGBA" if "transparency" in opened.info else "RGB") \
                if opened.mode == "P" else opened
            if img.mode.startswith("I"):  # 16-bit (or 32-bit integer) grey
                return _eight_bit(np.asarray(img), path)[None]
            if img.mode == "F":  # PIL's conversions clip floats to 0..255 (0..1: all black)
                raise DatasetError(f"{path} is a 32-bit floating-point image (mode F); "
                                   "gmbench datasets hold 8-bit levels: save the images as "
                                   "8-bit (or 16-bit) PNGs, or pass float arrays as x_train "
                                   "and x_test in a .npz (continuous data).")
            if img.mode in ("L", "1"):
                return np.asarray(img.convert("L"))[None]
            if "A" in img.getbands():
                raise DatasetError(f"{path} has an alpha channel ({opened.mode}); save the "
                                   "images as RGB or grayscale.")
            return np.asarray(img.convert("RGB")).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"Cannot read the image {path}: {exc}.") from None


def _split_folder(folder: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    if not folder.is_dir():
        raise DatasetError(f"{folder} is missing. {HOW}.")
    entries = listing(folder)
    subdirs = [e for e in entries if e.is_dir()]
    files = _image_files(entries)
    if subdirs and files:
        named = ", ".join(f"{d.name}/" for d in subdirs[:3]) + ", ..." * (len(subdirs) > 3)
        raise DatasetError(f"{folder} mixes image files and class sub-folders ({named}); use "
                           "one or the other.")
    if subdirs:
        classes = [d.name for d in subdirs]
        items = [(f, i) for i, d in enumerate(subdirs) for f in _image_files(listing(d))]
    else:
        classes = []
        items = [(f, -1) for f in files]
    if not items:
        texts = any(e.suffix.lower() == ".txt" for e in entries)
        raise DatasetError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                           + ("; its .txt files make a text corpus only where neither train/ "
                              "nor test/ holds images" if texts else "") + ".")
    images = [_read_image(f) for f, _ in items]
    first = images[0].shape
    for (f, _), img in zip(items, images, strict=True):
        if img.shape != first:
            kind = {1: "grayscale", 3: "RGB"}
            detail = (f"{kind.get(img.shape[0])} among {kind.get(first[0])} images"
                      if img.shape[0] != first[0] else
                      f"{img.shape[1]}x{img.shape[2]} pixels, not {first[1]}x{first[2]}")
            raise DatasetError(f"{f} is {detail} (first: {items[0][0]}); every image of a "
                               "dataset must have one size and be all grayscale or all RGB.")
    y = np.array([c for _, c in items], dtype=np.int64) if classes else None
    return np.stack(images), y, classes


def _from_folder(path: Path) -> dict[str, np.ndarray | None]:
    x_train, y_train, c_train = _split_folder(path / "train")
    x_test, y_test, c_test = _split_folder(path / "test")
    if c_train != c_test:
        raise DatasetError(f"{path}: train/ and test/ have different class sub-folders "
                           f"({', '.join(c_train) or 'none'} against "
                           f"{', '.join(c_test) or 'none'}).")
    return {"x_train": x_train, "x_test": x_test, "y_train": y_train, "y_test": y_test}


def make_local_dataset(path: str | os.PathLike[str],
                       registered: Callable[[str], bool] = lambda name: False) -> Dataset:
    """The dataset of a ``.npz`` file or an image folder (see the module docstring);
    ``registered(name)``: whether ``name`` is a built-in dataset's (refused as the name of
    yours)."""
    where = Path(path).expanduser()
    if not where.exists():
        raise DatasetError(f"--dataset {path}: no such file or folder. {HOW}, or pass the "
                           "name of a built-in dataset (`gmbench datasets` lists them).")
    if not where.is_dir() and not where.is_file():  # a pipe or a device would block a read
        raise DatasetError(f"--dataset {path} is not a regular file or a folder (a pipe or a "
                           f"device). {HOW}.")
    name = _name(where, registered)
    from gmbench.datasets.text import is_text_folder, make_text_folder

    if where.is_dir() and not holds_images(where) and is_text_folder(where):
        return make_text_folder(where, name)  # images decide: notes beside them are no text
    arrays = _from_folder(where) if where.is_dir() else _from_npz(where)
    x_train, x_test = np.asarray(arrays["x_train"]), np.asarray(arrays["x_test"])
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim < 2 or len(x) == 0:
            raise DatasetError(f"{path}: {key} has shape {x.shape}; it needs at least one "
                               "example along its first axis.")
        if 0 in x.shape[1:]:
            raise DatasetError(f"{path}: {key} has shape {x.shape}: its examples hold no "
                               "values; each example needs at least one value.")
    integer = np.issubdtype(x_train.dtype, np.integer) and np.issubdtype(x_test.dtype,
                                                                        np.integer)
    if integer:
        low = min(int(x_train.min()), int(x_test.min()))
        high = max(int(x_train.max()), int(x_test.max()))
        if low < 0:
            raise DatasetError(f"{path}: integer data must be levels 0, 1, 2, ...; found "
                               f"{low}.")
    elif not (np.issubdtype(x_train.dtype, np.floating)
              and np.issubdtype(x_test.dtype, np.floating)):
        raise DatasetError(f"{path}: x_train ({x_train.dtype}) and x_test ({x_test.dtype}) "
                           "must both be integer levels or both floats.")
    image = integer and x_train.ndim in (3, 4)
    if image:
        x_train, x_test = _as_images(x_train, "x_train"), _as_images(x_test, "x_test")
        if high > 255:
            raise DatasetError(f"{path}: image levels above 255 (found {high}); store 8-bit "
                               "images (0..255).")
        x_train, x_test = x_train.astype(np.uint8), x_test.astype(np.uint8)
        levels: int | None = 256
    elif integer:
        levels = high + 1
        x_train, x_test = x_train.astype(np.int64), x_test.astype(np.int64)
    else:
        levels = None
        x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
        if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
            raise DatasetError(f"{path}: the arrays hold NaN or infinite values.")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{path}: x_train examples have shape {x_train.shape[1:]}, x_test "
                           f"examples {x_test.shape[1:]}; both splits need the same shape.")
    y_train = _labels(arrays["y_train"], len(x_train), "y_train")
    y_test = _labels(arrays["y_test"], len(x_test), "y_test")
    classes = None
    if y_train is not None and y_test is not None:
        classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    kind = "image" if image else "continuous" if levels is None else "sequence"
    info = DatasetInfo(name=name, kind=kind, shape=tuple(int(s) for s in x_train.shape[1:]),
                       levels=levels, num_classes=classes)
    return Dataset(info=info, train=Split(x_train, y_train), test=Split(x_test, y_test),
                   source=str(where.resolve()),
                   description=f"your dataset from {where.name}")
