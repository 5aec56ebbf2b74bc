"""What a dataset is: its description (:class:`DatasetInfo`), its splits and its ground truth."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

__all__ = ["Dataset", "DatasetInfo", "Documents", "GroundTruth", "Split"]


@dataclass(frozen=True)
class DatasetInfo:
    """Describes a dataset; passed to a model file's ``load(dataset, device)``.

    Attributes:
        name: registry name, e.g. ``"fashion-mnist"``.
        kind: ``"image"``, ``"sequence"``, ``"continuous"`` or ``"text"`` (documents of
            bytes; ``shape`` is that of one passage, what ``sample()`` returns per sample).
        shape: shape of one example; images are ``(channels, height, width)``.
        levels: discrete values per dimension (``None`` for continuous data).
        num_classes: number of labels, or ``None`` for unlabelled data.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    levels: int | None
    num_classes: int | None

    @property
    def dim(self) -> int:
        """Number of dimensions ``D`` of one example."""
        return int(np.prod(self.shape))

    @property
    def is_discrete(self) -> bool:
        return self.levels is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "levels": self.levels,
            "num_classes": self.num_classes,
        }


class GroundTruth(Protocol):
    """The true distribution ``P`` of a generated dataset."""

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Exact ``log P(x)`` in nats (a log-mass for discrete data), shape ``(n,)``."""
        ...

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` exact draws, shape ``(n, *shape)``."""
        ...

    @property
    def entropy(self) -> float | None:
        """``H(P)`` of one example in nats, or ``None`` when no closed form is known."""
        ...


@dataclass(frozen=True, eq=False)
class Documents:
    """Documents of one split: ``data`` their bytes concatenated (uint8), ``starts`` the
    offset of each document and the total at the end (``(n + 1,)`` int64)."""

    names: tuple[str, ...]
    data: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, docs: Sequence[tuple[str, bytes]]) -> Documents:
        lengths = [len(b) for _, b in docs]
        starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
        data = np.frombuffer(b"".join(b for _, b in docs), dtype=np.uint8).copy()
        data.flags.writeable = False
        starts.flags.writeable = False
        return cls(tuple(n for n, _ in docs), data, starts)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.data[self.starts[i]:self.starts[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    @property
    def n_bytes(self) -> int:
        return int(self.starts[-1])

    def passages(self, length: int) -> np.ndarray:
        """Every document cut into consecutive ``length``-byte passages, ``(m, length)`` uint8."""
        rows = [doc[:len(doc) // length * length].reshape(-1, length) for doc in self]
        return np.concatenate(rows) if rows else np.zeros((0, length), np.uint8)


@dataclass(frozen=True)
class Split:
    """One split. ``x``: ``(n, *shape)`` (uint8/int64 for discrete data, float32 otherwise);
    ``y``: ``(n,)`` int64 labels or ``None``; ``documents``: a text split's documents, whose
    passages ``x`` holds (``None`` for other data)."""

    x: np.ndarray
    y: np.ndarray | None = None
    documents: Documents | None = None

    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every array of the split (what the dataset's hash covers)."""
        docs = () if self.documents is None else (self.documents.data, self.documents.starts)
        return tuple(a for a in (self.x, self.y, *docs) if a is not None)

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: description, fixed splits, ground truth if generated, and origin."""

    info: DatasetInfo
    train: Split
    test: Split
    truth: GroundTruth | None = None
    source: str = "generated"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def sha256(self) -> str:
        """Hash of the description and every array of both splits (computed once)."""
        self._crc32_at_hash  # noqa: B018 - the quick fingerprint of the same arrays
        return self.current_sha256()

    @cached_property
    def _crc32_at_hash(self) -> tuple[int, ...]:
        return self._crc32()

    def _crc32(self) -> tuple[int, ...]:
        """CRC-32 of every array (about 5x faster than SHA-256: checked after every run)."""
        return tuple(zlib.crc32(np.ascontiguousarray(a).data) for split in (self.train, self.test)
                     for a in split.arrays())

    def changed(self) -> bool:
        """Whether the arrays changed since :attr:`sha256` was computed: something (a model
        holding them through ``get_dataset``) wrote into the shared, cached copy. Compared by
        CRC-32, which detects any accidental change (a deliberate collision is out of scope:
        model code runs in gmbench's process and could do anything)."""
        return self._crc32() != self._crc32_at_hash

    def current_sha256(self) -> str:
        """:attr:`sha256` recomputed from the arrays as they are now."""
        digest = hashlib.sha256(repr(self.info.to_dict()).encode())
        for split in (self.train, self.test):
            for array in split.arrays():
                digest.update(str(array.dtype).encode() + str(array.shape).encode())
                digest.update(np.ascontiguousarray(array).data)  # its bytes, uncopied
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info.to_dict(),
            "sha256": self.sha256,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "source": self.source,
        }
