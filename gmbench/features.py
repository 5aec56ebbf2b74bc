"""Feature spaces for sample metrics.

A feature extractor maps a batch in the dataset's own representation ``(n, *shape)`` to
``(n, F)`` float32 features. Until a dataset has a bundled classifier, sample metrics use
:class:`PixelFeatures` (flattened values scaled to ``[0, 1]`` for discrete data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gmbench.datasets import Dataset, DatasetInfo

__all__ = ["FeatureExtractor", "PixelFeatures", "default_extractor", "feature_space_label"]


class FeatureExtractor(Protocol):
    """Maps ``(n, *shape)`` data to ``(n, F)`` float32 features."""

    name: str
    sha256: str  # of the weights; "" for parameter-free features

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PixelFeatures:
    """Flattened data; discrete values ``k`` become ``k / (levels - 1)``."""

    info: DatasetInfo
    name: str = "pixels"
    sha256: str = ""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = np.asarray(x).reshape(len(x), -1).astype(np.float32)
        if self.info.levels is not None:
            flat /= self.info.levels - 1
        return flat


def feature_space_label(extractor: FeatureExtractor) -> str:
    """``"pixels"``, or ``"<name> (sha256 <first 12 hex>)"`` for learned extractors."""
    return extractor.name if not extractor.sha256 else f"{extractor.name} (sha256 {extractor.sha256[:12]})"


def default_extractor(dataset: Dataset) -> FeatureExtractor:
    """The feature space sample metrics use on ``dataset`` by default."""
    return PixelFeatures(dataset.info)
