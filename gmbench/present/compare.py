"""Comparing results: ranks among baselines, Pareto fronts, dominance; every comparison judges
a metric in its :class:`~gmbench.core.direction.Direction` (a target-valued metric by its distance
from the ideal)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gmbench.core.direction import Direction
from gmbench.storage.leaderboard import BoardRow, latest_rows
from gmbench.storage.results import MetricRecord, neutralise, records

__all__ = ["Comparison", "compare_with_baselines", "dominates", "pareto_front", "rank_of"]

K = TypeVar("K")  # what names a point: a model, a run


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[Direction]
              ) -> bool:
    """``a`` is at least as good as ``b`` in every coordinate and better in one (each axis
    judged by its :class:`~gmbench.core.direction.Direction`: a target-valued axis by the distance
    from its ideal)."""
    pairs = [(d.badness(x), d.badness(y)) for x, y, d in zip(a, b, directions, strict=True)]
    return any(x < y for x, y in pairs) and not any(x > y for x, y in pairs)


def pareto_front(points: Mapping[K, Sequence[float]], directions: Sequence[Direction], *,
                 references: Collection[K] = ()) -> set[K]:
    """Names of the competitors no other competitor dominates; ``references`` (the memorizer,
    the ground truth: reference points, not competitors) are never on the front and do not
    push others off it."""
    rivals = {name: p for name, p in points.items() if name not in references}
    return {name for name, p in rivals.items()
            if not any(dominates(q, p, directions) for other, q in rivals.items()
                       if other != name)}


@dataclass(frozen=True)
class Comparison:
    """One metric of a run beside the baselines' most recent values.

    Attributes:
        metric: the metric key.
        record: the run's record of the metric.
        baselines: baseline model name -> its row for this metric.
        rank: the run's rank among itself and the comparable baselines (1 = best), or ``None``
            when the run's value is not finite.
        ranked: how many values were ranked.
        mismatched: baselines measured in another feature space, (sample metrics) on
            another number of samples, or under another protocol version of the metric: not
            ranked against.
        references: baselines that are reference points (the memorizer, the ground truth):
            shown, but neither ranked against nor ever the best baseline.
        other_protocol: the mismatched baselines whose row is of another protocol version of
            the metric than the run's (its definition changed: ``gmbench check`` refuses to
            compare them).
    """

    metric: str
    record: MetricRecord
    baselines: Mapping[str, BoardRow]
    rank: int | None
    ranked: int
    mismatched: frozenset[str]
    references: frozenset[str] = frozenset()
    other_protocol: frozenset[str] = frozenset()

    @property
    def unranked_reason(self) -> str:
        """Why no baseline is ranked against (``""`` when some are), in plain words."""
        rivals = [n for n in self.baselines if n not in self.references]
        if not rivals:
            return "no competing baseline on the board measures this metric"
        if not all(n in self.mismatched for n in rivals):
            return ""
        rec = self.record
        counts = self.other_sample_counts
        spaces = sorted({self.baselines[n].feature_space for n in rivals
                         if self.baselines[n].feature_space != rec.feature_space})
        protocols = sorted({self.baselines[n].protocol for n in rivals
                            if n in self.other_protocol})
        parts = []
        if counts:
            parts.append(f"on another number of samples (this run {rec.n_samples}, the "
                         f"board {', '.join(str(c) for c in counts)})")
        if spaces:
            parts.append(f"in another feature space (this run: {rec.feature_space}; "
                         f"the board: {', '.join(spaces)})")
        if protocols:
            parts.append(f"under another protocol version of the metric (this run: protocol "
                         f"{rec.protocol}; the board: {', '.join(str(p) for p in protocols)})")
        return "every baseline was measured " + " or ".join(parts)

    @property
    def other_sample_counts(self) -> list[int]:
        """The sample counts of the competing baselines measured on another number of samples
        than this run (sorted)."""
        n = self.record.n_samples
        return sorted({r.n_samples for name, r in self.baselines.items()
                       if name in self.mismatched and name not in self.references
                       and r.n_samples is not None and n is not None and r.n_samples != n})

    def best(self) -> tuple[str, BoardRow] | None:
        """The best baseline measured in the run's feature space, in the metric's direction."""
        direction = Direction.of(self.record)
        candidates = [(name, row, row.value) for name, row in self.baselines.items()
                      if name not in self.mismatched and name not in self.references
                      and row.value is not None]
        if not candidates:
            return None
        name, row, _ = min(candidates, key=lambda item: direction.badness(item[2]))
        return name, row


def rank_of(value: float, others: Sequence[float], *, direction: Direction) -> int:
    """1 + the number of ``others`` strictly better than ``value`` in ``direction``; values
    whose badness is equal to within float32 rounding (relative 1e-6: metrics computed in
    float32 on two platforms differ in the last digits) tie and share a rank."""
    mine = direction.badness(value)
    better = [o for o in others if direction.badness(o) < mine
              and not math.isclose(direction.badness(o), mine, rel_tol=1e-6, abs_tol=1e-12)]
    return 1 + len(better)


def compare_with_baselines(result: Mapping[str, Any], baselines: Sequence[BoardRow]
                           ) -> tuple[list[str], list[Comparison]]:
    """Pure: the baseline names and, per metric of ``result``, its :class:`Comparison`.

    Rows of the run's own model file (same sha256) are left out, so re-evaluating a baseline
    compares it with the others rather than with itself. Reference models (rows with a
    ``reference``) are kept for orientation but not ranked against. A baseline's row of the
    run's protocol version of a metric is preferred to a more recent row of another; rows of
    another protocol are shown but not ranked against (the metric's definition changed).
    """
    own = neutralise(str(result["model"].get("sha256") or ""))
    dataset = neutralise(str(result["dataset"]["name"]))
    measured = records(result)
    protocols = {neutralise(str(k)): rec.protocol for k, rec in measured.items()}
    current = latest_rows([r for r in baselines if r.protocol == protocols.get(r.metric)])
    chosen = {k: r for k, r in {**latest_rows(baselines), **current}.items()
              if k[0] == dataset and r.model_sha256 != own}
    names = sorted({k[1] for k in chosen})
    out = []
    for key, rec in measured.items():
        metric = neutralise(str(key))
        rows = {name: chosen[(dataset, name, metric)] for name in names
                if (dataset, name, metric) in chosen}
        space = neutralise(rec.feature_space)
        n_samples = rec.n_samples
        other_protocol = frozenset(n for n, r in rows.items() if r.protocol != rec.protocol)
        mismatched = other_protocol | frozenset(
            n for n, r in rows.items() if r.feature_space != space
            or (n_samples is not None and r.n_samples is not None and r.n_samples != n_samples))
        references = frozenset(n for n, r in rows.items() if r.reference)
        others = [r.value for n, r in rows.items() if n not in mismatched
                  and n not in references and r.value is not None]
        rank = (None if rec.value is None else
                rank_of(float(rec.value), others, direction=Direction.of(rec)))
        out.append(Comparison(key, rec, rows, rank, len(others) + 1, mismatched, references,
                              other_protocol))
    return names, out
