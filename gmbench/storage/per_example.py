"""A run's per-example values: the sidecar ``per_example.npz`` beside ``results.json``.

Metrics that are means over examples (the likelihoods, ``reconstruction_error``) keep the value
of every example, and sample metrics keep the features of up to :data:`MAX_FEATURES` samples,
so that ``gmbench check`` can compare two runs on the *same* test examples (a paired test, whose
noise is the spread of the per-example differences, not of the test split) and test whether the
samples' distribution changed. The file is a NumPy ``.npz`` archive written byte for byte the
same for the same arrays (fixed zip timestamps, no pickle), so its sha256 identifies it: a
board stores the sidecars of its rows under their hash (:func:`store`), and ``results.json``
names the file and its hash (:meth:`PerExample.describe`).

Arrays (every one optional):

==================== ======== ================================================================
name                 dtype    what
==================== ======== ================================================================
``test_log_prob``    float64  ``(n_test,)`` ``log P(x)`` in nats of every test example, in order
``train_log_prob``   float64  ``(m,)`` the same for the scored train examples ...
``train_index``      int64    ``(m,)`` ... at these indices of the train split
``test_squared_error`` float64 ``(n_test,)`` reconstruction error per dimension per test example
``sample_features``  float16/32 ``(k, F)`` features of the first ``k`` samples in the run's
                              feature space (``meta["feature_space"]``)
``test_text_blocks`` float64  ``(B,)`` a text's loss in nats over each block of its test
                              documents, divided by the mean block size (their mean: nats/byte)
==================== ======== ================================================================

A metric whose value is an affine function of per-example means records it in its
``details["paired"]``: a list of ``[array, coefficient]`` with ``value = constant +
sum(coefficient * mean(array))`` (``nll``: ``[["test_log_prob", -1]]``).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gmbench.core.errors import BoardError
from gmbench.core.files import NotARegularFile, TooLarge, atomic_write, read_bounded, sha256_bytes

__all__ = ["FILE", "MAX_FEATURES", "PerExample", "Term", "beside", "differences", "parse_terms",
           "store", "store_dir", "stored"]

FILE = "per_example.npz"
MAX_FEATURES = 2000  # sample features kept for the two-sample test of the regression gate
MAX_BYTES = 256 << 20
FORMAT = 1
_STAMP = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: the bytes do not depend on when
_ARRAYS: dict[str, tuple[str, int]] = {  # name -> (dtype kinds allowed, dimensions)
    "test_log_prob": ("f", 1),
    "train_log_prob": ("f", 1),
    "train_index": ("iu", 1),
    "test_squared_error": ("f", 1),
    "sample_features": ("f", 2),
    "test_text_blocks": ("f", 1),
}


@dataclass(frozen=True)
class Term:
    """One term of a metric's value: ``coefficient * mean(array)``."""

    array: str
    coefficient: float


def parse_terms(spec: Any) -> tuple[Term, ...] | None:
    """The ``details["paired"]`` list of a metric record as terms; ``None`` when absent or
    not of that form (a record written by an earlier gmbench)."""
    if not isinstance(spec, list) or not spec:
        return None
    terms = []
    for item in spec:
        if (not isinstance(item, list) or len(item) != 2 or item[0] not in _ARRAYS
                or isinstance(item[1], bool) or not isinstance(item[1], (int, float))
                or not math.isfinite(item[1])):
            return None
        terms.append(Term(str(item[0]), float(item[1])))
    return tuple(terms)


@dataclass(frozen=True)
class PerExample:
    """The per-example arrays of one run and what they were measured on.

    Attributes:
        arrays: name -> array (see the module docstring).
        meta: ``dataset_sha256`` and, with ``sample_features``, their ``feature_space``.
    """

    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, arr in self.arrays.items():
            problem = _array_problem(name, arr)
            assert problem is None, problem

    def __contains__(self, name: object) -> bool:
        return name in self.arrays

    def examples(self, array: str) -> tuple[np.ndarray, np.ndarray]:
        """``(index, values)`` of a 1-D array: the split indices its values belong to."""
        values = np.asarray(self.arrays[array], np.float64)
        if array.startswith("train_"):
            return np.asarray(self.arrays["train_index"], np.int64), values
        return np.arange(len(values)), values

    def to_bytes(self) -> bytes:
        """The ``.npz`` bytes: the same arrays and meta always give the same bytes."""
        buffer = io.BytesIO()
        meta = json.dumps({"format": FORMAT, **self.meta}, sort_keys=True).encode()
        members = {"meta": np.frombuffer(meta, dtype=np.uint8), **self.arrays}
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(members):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_STAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w") as handle:
                    np.lib.format.write_array(handle, np.ascontiguousarray(members[name]),
                                              allow_pickle=False)
        return buffer.getvalue()

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.to_bytes())

    def describe(self) -> dict[str, Any]:
        """The ``per_example`` block of ``results.json``: file, hash and array shapes."""
        return {"file": FILE, "sha256": self.sha256,
                "arrays": {k: list(v.shape) for k, v in sorted(self.arrays.items())}}

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> PerExample:
        """Read and validate a sidecar (no pickle; names, dtypes, shapes and values checked).

        Raises:
            BoardError: naming ``where`` and what is wrong.
        """
        def bad(why: str) -> BoardError:
            return BoardError(f"{where} is not a gmbench per-example file ({why}). Re-run "
                              "`gmbench evaluate` to regenerate it, or delete it (the gate "
                              "then falls back to the unpaired test).")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                members = {name: archive[name] for name in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from None
        meta_bytes = members.pop("meta", None)
        if meta_bytes is None or meta_bytes.dtype != np.uint8 or meta_bytes.ndim != 1:
            raise bad("no meta record")
        try:
            meta = json.loads(meta_bytes.tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad("its meta record is not JSON") from None
        if not isinstance(meta, dict) or meta.pop("format", None) != FORMAT:
            raise bad(f"format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                      f"this gmbench reads format {FORMAT}")
        for name, arr in members.items():
            problem = _array_problem(name, arr)
            if problem:
                raise bad(problem)
        if ("train_log_prob" in members) != ("train_index" in members) or (
                "train_index" in members
                and members["train_index"].shape != members["train_log_prob"].shape):
            raise bad("train_log_prob and train_index do not match")
        return cls(members, meta)

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, sha256: str | None = None) -> PerExample:
        """Read ``path``, checking its hash against ``sha256`` when given.

        Raises:
            BoardError: the file is missing, unreadable, altered or malformed.
        """
        try:
            data = read_bounded(path, MAX_BYTES)
        except FileNotFoundError:
            raise BoardError(f"{path} does not exist: the per-example values were not kept "
                             "beside their results (copy the whole run folder, or re-add the "
                             "run with `gmbench leaderboard add`).") from None
        except (NotARegularFile, TooLarge, IsADirectoryError, PermissionError) as exc:
            raise BoardError(f"{path} cannot be read as a per-example file ({exc}).") from None
        if sha256 is not None and sha256_bytes(data) != sha256:
            raise BoardError(f"{path} does not match the sha256 its results record "
                             f"({sha256[:12]}): it was altered or belongs to another run. "
                             "Restore it, or re-run `gmbench evaluate`.")
        return cls.from_bytes(data, where=str(path))


def _array_problem(name: str, arr: Any) -> str | None:
    spec = _ARRAYS.get(name)
    if spec is None:
        return f"unknown array {name!r}"
    kinds, ndim = spec
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in kinds or arr.ndim != ndim:
        return (f"{name} must be a {ndim}-D {'float' if kinds == 'f' else 'integer'} array, "
                f"got {getattr(arr, 'dtype', type(arr).__name__)} of shape "
                f"{getattr(arr, 'shape', '?')}")
    if kinds == "f" and not np.isfinite(arr).all():
        return f"{name} holds non-finite values"
    if name == "train_index" and arr.size and arr.min() < 0:
        return "train_index holds negative indices"
    return None


# ------------------------------------------------------------------ beside a board
def store_dir(board: str | os.PathLike[str]) -> Path:
    """Where a board keeps the sidecars of its rows: ``<board>.per-example/`` beside it."""
    path = Path(board)
    return path.with_name(f"{path.stem}.per-example")


def store(board: str | os.PathLike[str], data: bytes) -> str:
    """Keep sidecar bytes beside ``board`` under their sha256 (written atomically, once);
    returns the hash."""
    digest = sha256_bytes(data)
    target = store_dir(board) / f"{digest}.npz"
    if not target.is_file():
        with atomic_write(target, mode="wb") as handle:
            handle.write(data)
    return digest


def stored(board: str | os.PathLike[str], digest: str) -> PerExample:
    """The sidecar ``digest`` kept beside ``board`` (a symbolic link's target, where
    :func:`store` keeps them; hash verified)."""
    return PerExample.read(store_dir(Path(board).resolve()) / f"{digest}.npz", sha256=digest)


def differences(new: PerExample, ref: PerExample, terms: Sequence[Term]
                ) -> tuple[float, float, int] | None:
    """The paired difference ``new - ref`` of ``sum(c * mean(array))`` over the examples
    both runs scored, its standard error and degrees of freedom; ``None`` when an array is
    missing from either run or they share fewer than 2 examples.

    Terms over different example sets (test and train) are independent: their variances add.
    """
    total, variance, df = 0.0, 0.0, math.inf
    for term in terms:
        if term.array not in new or term.array not in ref:
            return None
        i_new, v_new = new.examples(term.array)
        i_ref, v_ref = ref.examples(term.array)
        common, a, b = np.intersect1d(i_new, i_ref, assume_unique=True, return_indices=True)
        if len(common) < 2:
            return None
        d = term.coefficient * (v_new[a] - v_ref[b])  # (n_common,)
        total += float(d.mean())
        variance += float(d.var(ddof=1)) / len(d)
        df = min(df, len(d) - 1)
    return total, math.sqrt(variance), int(df) if math.isfinite(df) else 0


def beside(results: str | os.PathLike[str], document: Mapping[str, Any]
           ) -> tuple[PerExample | None, str | None]:
    """The per-example values a ``results.json`` names (the file beside it), and a warning
    when it names some that cannot be used."""
    block = document.get("per_example")
    if not isinstance(block, dict) or not isinstance(block.get("file"), str):
        return None, None
    path = Path(results).parent / Path(block["file"]).name
    try:
        return PerExample.read(path, sha256=block.get("sha256")), None
    except BoardError as exc:
        return None, f"the new run's per-example values cannot be used ({exc})"
