"""Which way a metric is good: higher, lower, or close to an ideal value.

Most metrics are better the higher (precision) or the lower (FID) they are. Some have an ideal
value and are worse on *both* sides of it: ``nn_distance_ratio`` (1: samples as far from the
training set as unseen data; below: copying; above: underfitting), ``data_copying_ct`` (0),
``c2st_accuracy`` (0.5: indistinguishable), ``density`` (1), ``copy_rate`` (0.01, the rate of
unseen data; the regression gate counts only its rises), and the divergences whose
unbiased or Monte Carlo estimates scatter around 0 for a perfect model, so a value below 0 is
noise, not better than 0: ``kl_exact``, ``kl_knn``, ``mmd``, ``mmd_multiscale``, ``kid`` (0). Such a metric is ranked, gated and
drawn by its distance from the ideal, ``|value - ideal|``; its ``higher_is_better`` is
``False``, read as "a smaller distance from the ideal is better".

Every comparison in gmbench (ranks, the regression gate, Pareto fronts, the report) goes
through :meth:`Direction.badness`, so the three kinds are handled in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Direction"]


@dataclass(frozen=True)
class Direction:
    """A metric's direction.

    Attributes:
        higher_is_better: ``True`` for higher-is-better metrics; ``False`` for lower-is-better
            ones and for target-valued ones (smaller distance from ``ideal`` is better).
        ideal: the ideal value of a target-valued metric, else ``None``.
    """

    higher_is_better: bool
    ideal: float | None = None

    def __post_init__(self) -> None:
        assert self.ideal is None or not self.higher_is_better, \
            "a target-valued metric is judged by its distance from the ideal (lower is better)"

    @property
    def targeted(self) -> bool:
        return self.ideal is not None

    def badness(self, value: float) -> float:
        """A number that is lower for better values: ``-value``, ``value``, or
        ``|value - ideal|``."""
        if self.ideal is not None:
            return abs(value - self.ideal)
        return -value if self.higher_is_better else value

    def worse_by(self, new: float, reference: float) -> float:
        """How much worse ``new`` is than ``reference`` (negative: better), in the metric's
        unit: the growth of the distance from the ideal for target-valued metrics."""
        return self.badness(new) - self.badness(reference)

    @property
    def arrow(self) -> str:
        """``↑`` higher is better, ``↓`` lower is better, ``◎`` closer to the ideal is better."""
        if self.ideal is not None:
            return "◎"
        return "↑" if self.higher_is_better else "↓"

    def describe(self) -> str:
        if self.ideal is not None:
            return f"closest to {self.ideal:g} is best"
        return "higher is better" if self.higher_is_better else "lower is better"

    @classmethod
    def of(cls, record: Any) -> Direction:
        """The direction of a metric record, a board row or a metric (anything with
        ``higher_is_better`` and optionally ``ideal``)."""
        hib, ideal = record.higher_is_better, getattr(record, "ideal", None)
        ideal = None if ideal is None or (isinstance(ideal, float) and math.isnan(ideal)) \
            else float(ideal)
        return cls(bool(hib) and ideal is None, ideal)
