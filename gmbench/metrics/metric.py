"""The metric registry: each metric declares what it needs and which way is better, as data.

A metric is a :class:`Metric` record whose ``compute`` is a small function of an
:class:`~gmbench.metrics.context.Context` returning a :class:`Measurement`; the record adds the
declared unit and direction. Metric modules call :func:`register` at import time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gmbench.core.direction import Direction
from gmbench.core.errors import MetricError
from gmbench.core.registry import Registry
from gmbench.estimators.uncertainty import Estimate
from gmbench.gate.check import Definition
from gmbench.storage.results import MetricRecord

if TYPE_CHECKING:
    from gmbench.datasets import Dataset
    from gmbench.metrics.context import Context

__all__ = ["METRICS", "Measurement", "Metric", "get_metric", "register",
           "registered_definitions", "registered_directions"]


@dataclass(frozen=True)
class Measurement:
    """What a metric's ``compute`` returns: the estimate and where it was measured."""

    estimate: Estimate
    feature_space: str
    kind: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def always(_dataset: Dataset) -> str | None:
    return None


@dataclass(frozen=True, kw_only=True)
class Metric:
    """A registered metric.

    Attributes:
        key: the public key (the contract, ``docs/CONTRACT.md`` section 4).
        description: one line for ``gmbench metrics``.
        needs: model capabilities required (subset of ``gmbench.models.model.CAPABILITIES``);
            ``needs_any`` instead lists alternatives of which one suffices.
        higher_is_better: direction (``False`` for target-valued metrics: see ``ideal``).
        ideal: the value a perfect model scores, for metrics that are worse on both sides of
            it (``nn_distance_ratio`` 1, ``c2st_accuracy`` 0.5, ...); ranked and gated by the
            distance from it (:class:`~gmbench.core.direction.Direction`).
        protocol: version of the metric's definition, bumped whenever its meaning changes
            (estimator, classifier, direction, what its interval covers); ``gmbench check``
            refuses to compare values of different protocols.
        unit: unit of the value.
        compute: the function that measures it.
        applies: returns why the metric does not apply to a dataset, or ``None`` if it does.
        needs_logits: it reads class logits of the feature extractor (the default selection
            skips it where the extractor has none, e.g. pixels).
        judged_with: the metric this one is a deterministic transform of (``bits_per_dim`` of
            ``nll``): the regression gate judges them once, together.
        n_samples_free: its expected value does not depend on the number of samples (an
            unbiased estimator such as ``mmd``): the gate compares it across sample counts.
        bounds: the range of its values (the gate leaves out a test whose whole range lies
            within the noise).
        interval: what its 95% interval covers, recorded as ``interval_covers``:
            ``"population"`` (the value a new test split and new samples would give: "is the
            model's distribution different from the data?"), ``"runs"`` (what changes between
            runs on this test split: the model's samples and gmbench's own randomness), or
            ``"bound"`` (a one-sided confidence bound: the value is the bound, the interval
            reaches to the far end of the range). Where the two differ, ``stderr_runs`` is the
            standard error between runs (what ``gmbench check`` compares).
        unestimable_by_chance: whether a run finds it "not estimable" depends on that run's
            samples (the k-NN KL refuses samples repeating a point more than k times): the
            gate reports a run on either side of that line as not compared instead of failing.
        rise_regresses: ranked by the distance from ``ideal``, but the gate counts only a rise
            as a regression (``copy_rate``: the data's own rate is its ideal, yet copying less
            than the reference did is no regression).
        kinds: the kinds of data (``DatasetInfo.kind``) it is defined for.
        prepare: starts, at the metric's turn, work it needs that can run in the background
            (``Context.background``: estimator arithmetic on arrays, never the model); the
            metric itself then runs after all the others, so that work overlaps theirs.
    """

    key: str
    description: str
    needs: tuple[str, ...] = ()
    needs_any: tuple[str, ...] = ()
    higher_is_better: bool
    ideal: float | None = None
    protocol: int = 1
    unit: str
    compute: Callable[[Context], Measurement]
    applies: Callable[[Dataset], str | None] = always
    kinds: tuple[str, ...] = ("image", "sequence", "continuous")
    prepare: Callable[[Context], None] | None = None
    needs_logits: bool = False
    judged_with: str | None = None
    n_samples_free: bool = False
    bounds: tuple[float, float] = (-math.inf, math.inf)
    interval: str = "runs"
    unestimable_by_chance: bool = False
    rise_regresses: bool = False

    @property
    def direction(self) -> Direction:
        return Direction(self.higher_is_better, self.ideal)

    @property
    def uses_samples(self) -> bool:
        return any(n.startswith("sample") for n in (*self.needs, *self.needs_any))

    def wrong_kind(self, dataset: Dataset) -> str | None:
        """Why the metric is not defined for ``dataset``'s kind of data, or ``None``."""
        if dataset.info.kind not in self.kinds:
            return f"not defined for {dataset.info.kind} data"
        return None

    def not_applicable(self, dataset: Dataset) -> str | None:
        """Why the metric is not defined for ``dataset``, or ``None``."""
        return self.wrong_kind(dataset) or self.applies(dataset)

    def definition(self) -> Definition:
        """What the regression gate needs to know of this metric."""
        return Definition(protocol=self.protocol, direction=self.direction,
                          judged_with=self.judged_with,
                          sample_count_matters=self.uses_samples and not self.n_samples_free,
                          low=self.bounds[0], high=self.bounds[1],
                          unestimable_by_chance=self.unestimable_by_chance,
                          rise_regresses=self.rise_regresses)

    def missing(self, capabilities: frozenset[str]) -> str | None:
        """Why a model with ``capabilities`` cannot be scored, or ``None``."""
        lacking = [n for n in self.needs if n not in capabilities]
        if lacking:
            return f"needs {' and '.join(lacking)}"
        if self.needs_any and not set(self.needs_any) & capabilities:
            return f"needs {' or '.join(self.needs_any)}"
        return None

    def run(self, evaluation: Context) -> MetricRecord:
        m = self.compute(evaluation)
        m = replace(m, details={"interval_covers": self.interval, **m.details})
        if self.uses_samples:
            # how many samples it used: a value measured on another count is not comparable
            m = replace(m, details={"n_samples": evaluation.n_samples, **m.details})
        if not math.isfinite(m.estimate.value) and "not_estimable" not in m.details:
            m = replace(m, details={**m.details, "not_estimable": (
                "the estimate is not a finite number on these samples")})
        return MetricRecord.measured(self.key, m.estimate, unit=self.unit,
                                     higher_is_better=self.higher_is_better, ideal=self.ideal,
                                     protocol=self.protocol, feature_space=m.feature_space,
                                     kind=m.kind, details=m.details, artifacts=m.artifacts)


METRICS: Registry[Metric] = Registry("metric", error=MetricError, listing="gmbench metrics")


INTERVALS = ("population", "runs", "bound")


def register(metric: Metric) -> Metric:
    """Add ``metric`` to :data:`METRICS` (metric modules call this at import time)."""
    assert metric.ideal is None or not metric.higher_is_better, metric.key
    assert metric.interval in INTERVALS, metric.key
    return METRICS.register(metric.key, metric)


def registered_directions() -> dict[str, tuple[int, Direction]]:
    """Each registered metric's current protocol and direction: the authority a results file
    or board row of that protocol must agree with (``gmbench check``)."""
    return {key: (m.protocol, m.direction) for key, m in METRICS.items()}


def registered_definitions() -> dict[str, Definition]:
    """Each registered metric as the regression gate needs it (:class:`Definition`)."""
    return {key: m.definition() for key, m in METRICS.items()}


def get_metric(key: str) -> Metric:
    """The registered metric ``key``; a :class:`MetricError` with a suggestion otherwise."""
    return METRICS.get(key)
