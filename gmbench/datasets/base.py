"""What a dataset is: its description (:class:`DatasetInfo`), its splits and its ground truth."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

__all__ = ["Dataset", "DatasetInfo", "GroundTruth", "Split"]


@dataclass(frozen=True)
class DatasetInfo:
    """Describes a dataset; passed to a model file's ``load(dataset, device)``.

    Attributes:
        name: registry name, e.g. ``"fashion-mnist"``.
        kind: ``"image"``, ``"sequence"`` or ``"continuous"``.
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


@dataclass(frozen=True)
class Split:
    """One split. ``x``: ``(n, *shape)`` (uint8/int64 for discrete data, float32 otherwise);
    ``y``: ``(n,)`` int64 labels or ``None``."""

    x: np.ndarray
    y: np.ndarray | None = None

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
                     for a in (split.x, split.y) if a is not None)

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
            for array in (split.x, split.y):
                if array is not None:
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
