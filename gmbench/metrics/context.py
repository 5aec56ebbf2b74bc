"""What a metric may read from the evaluation it runs in: a typed protocol.

Metrics depend on this protocol, never on :class:`gmbench.run.evaluation.Evaluation` itself, so the
evaluation (which imports the metric registry to run it) and the metrics do not import each
other. Everything here is computed at most once per evaluation and shared by every metric that
asks (``memo``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from gmbench.datasets import Dataset, DatasetInfo
    from gmbench.features.extractors import FeatureExtractor
    from gmbench.models.model import Model

__all__ = ["Context", "RunSettings"]

T = TypeVar("T")


class RunSettings(Protocol):
    """The evaluation options a metric reads."""

    @property
    def seed(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def dequant_samples(self) -> int: ...

    @property
    def max_train(self) -> int: ...

    @property
    def context(self) -> int | None: ...

    @property
    def stride(self) -> int | None: ...

    @property
    def device(self) -> str: ...


class Context(Protocol):
    """One evaluation as the metrics see it.

    Attributes:
        model: the model behind validated, seeded calls.
        dataset: the dataset, its splits and ground truth.
        info: ``dataset.info``.
        config: the evaluation options.
        seed: the run seed.
        n_samples: how many samples sample metrics use.
    """

    @property
    def model(self) -> Model: ...

    @property
    def dataset(self) -> Dataset: ...

    @property
    def config(self) -> RunSettings: ...

    @property
    def info(self) -> DatasetInfo: ...

    @property
    def seed(self) -> int: ...

    @property
    def n_samples(self) -> int: ...

    def rng(self, *names: str | int) -> np.random.Generator:
        """A generator private to the consumer ``names``, derived from the run seed."""
        ...

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per evaluation under ``key``."""
        ...

    def computed(self, key: str) -> bool: ...

    def wanted(self, key: str) -> bool:
        """Whether metric ``key`` runs in this evaluation (work it shares with the asking
        metric may then be done in the same pass)."""
        ...

    def background(self, key: str, compute: Callable[[], object]) -> None:
        """Start ``compute()`` in the background (where the thread budget allows; else now);
        ``memo(key, ...)`` then waits for its value. ``compute`` must not call the model."""
        ...

    @property
    def test_log_prob(self) -> np.ndarray: ...

    @property
    def train_log_prob(self) -> np.ndarray: ...

    @property
    def train_index(self) -> np.ndarray: ...

    @property
    def samples(self) -> np.ndarray: ...

    @property
    def extractor(self) -> FeatureExtractor: ...

    @property
    def feature_space(self) -> str: ...

    def feature_pass(self, split: str) -> dict[str, np.ndarray]: ...

    def features(self, split: str) -> np.ndarray: ...

    def logits(self, split: str) -> np.ndarray: ...

    def pixels(self, split: str) -> np.ndarray: ...

    def model_independent(self, key: str, compute: Callable[[], dict[str, np.ndarray]], *,
                          rows: int) -> dict[str, np.ndarray]:
        """Arrays that depend only on the dataset and the feature space (``key`` names them):
        computed once per machine and cached beside the features, keyed and verified like
        them; ``rows``: the length every array must have."""
        ...
