"""The CI regression gate: compare a new ``results.json`` with a model's row on a board.

The rule, per metric: with ``worse`` the amount by which the new value is worse than the
reference in the metric's direction (``ref - new`` when higher is better, ``new - ref`` when
lower is better), the metric **regresses** only when

    worse > tolerance   and   worse > 1.96 * sqrt(se_new**2 + se_ref**2)

i.e. the drop is larger than what the user said they accept *and* larger than the 95% noise of
the difference of two independent estimates. Either condition alone passes. Each ``se`` is
the larger of the recorded standard error and the 95% interval's ``half-width / 1.96`` (the
same for normal intervals; larger where a standard error degenerates, e.g. an exact binomial
interval for a rate of 0), or 0 when neither is known.

References:
    pytest-benchmark's ``--benchmark-compare-fail`` (a threshold without noise), and the
    two-sample z-test for a difference of independent estimates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gmbench.errors import BoardError, did_you_mean
from gmbench.leaderboard import BoardRow, neutralise, rows_from_results, select_model
from gmbench.stats import Z95

__all__ = [
    "CheckReport",
    "Tolerance",
    "Verdict",
    "check_results",
    "judge",
    "parse_tolerances",
    "pick_reference",
    "provenance_warnings",
]

RULE = ("a metric regresses only when the new value is worse than the reference, in the "
        "metric's direction, by more than BOTH its tolerance (absolute in the metric's unit, "
        "or 'N%' of the reference value; default 0) AND the combined 95% uncertainty "
        "1.96*sqrt(se_new^2 + se_ref^2)")


@dataclass(frozen=True)
class Tolerance:
    """An accepted worsening: ``amount`` in the metric's unit, or a percentage of the reference."""

    amount: float
    relative: bool = False

    def of(self, reference: float) -> float:
        return self.amount / 100 * abs(reference) if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.amount:g}%" if self.relative else f"{self.amount:g}"


@dataclass(frozen=True)
class Verdict:
    """The outcome for one metric.

    ``status`` is ``"pass"``, ``"improved"`` (better by more than the noise), ``"regression"``,
    ``"new"`` (no reference on the board) or ``"missing"`` (on the board, not in the results).
    """

    metric: str
    status: str
    new: float | None
    reference: float | None
    worse_by: float | None
    tolerance: float
    noise: float
    higher_is_better: bool
    unit: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "regression"

    def line(self) -> str:
        from gmbench.table import format_number as f

        arrow = "↑" if self.higher_is_better else "↓"
        label = {"regression": "REGRESSION"}.get(self.status, self.status)
        head = f"{label:<10}  {arrow} {self.metric:<22}"
        if self.status == "new":
            return f"{head} {f(self.new)} (no reference on the board)"
        if self.status == "missing":
            return f"{head} reference {f(self.reference)}, not in the new results"
        if self.new is None:
            return f"{head} new value is not finite (reference {f(self.reference)})"
        assert self.worse_by is not None
        unit = f" {self.unit}" if self.unit else ""
        change = (f"worse by {f(self.worse_by)}{unit}" if self.worse_by > 0 else
                  f"better by {f(-self.worse_by)}{unit}" if self.worse_by < 0 else "unchanged")
        limit = max(self.tolerance, self.noise)
        cmp = ">" if self.failed else "<="
        why = (f"{cmp} tolerance {f(self.tolerance)} and noise {f(self.noise)}" if self.failed
               else f"limit max(tolerance {f(self.tolerance)}, noise {f(self.noise)}) = "
                    f"{f(limit)}")
        return f"{head} {f(self.new)} vs {f(self.reference)}: {change}; {why}"


def judge(*, metric: str, new: float | None, new_stderr: float, reference: float | None,
          reference_stderr: float, higher_is_better: bool, tolerance: float = 0.0,
          unit: str = "") -> Verdict:
    """Pure: the verdict for one metric under the rule of this module's docstring.

    Args:
        new, reference: the two values (``None``: not finite / absent).
        new_stderr, reference_stderr: their standard errors (>= 0).
        higher_is_better: the metric's direction.
        tolerance: accepted worsening, in the metric's unit (>= 0).
    """
    noise = Z95 * math.hypot(new_stderr, reference_stderr)
    worse: float | None
    if reference is None:
        status, worse = "new", None
    elif new is None:  # a metric that was finite and is no longer
        status, worse = "regression", math.inf
    else:
        worse = reference - new if higher_is_better else new - reference
        if worse > tolerance and worse > noise:
            status = "regression"
        elif -worse > noise:
            status = "improved"
        else:
            status = "pass"
    return Verdict(metric=metric, status=status, new=new, reference=reference, worse_by=worse,
                   tolerance=tolerance, noise=noise, higher_is_better=higher_is_better,
                   unit=unit)


_TOL = re.compile(r"^\s*([^=\s]+)\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*$")


def parse_tolerances(items: Sequence[str]) -> dict[str, Tolerance]:
    """Parse ``key=value`` / ``key=N%`` items; the key ``*`` sets the default for every metric."""
    out: dict[str, Tolerance] = {}
    for item in items:
        m = _TOL.match(item)
        if not m:
            raise BoardError(f"--tolerance {item!r} is not KEY=VALUE: write e.g. "
                             "`--tolerance fid=2.5` (absolute, in the metric's unit), "
                             "`--tolerance precision=5%` (of the reference), or "
                             "`--tolerance '*=1%'` for every metric.")
        out[m.group(1)] = Tolerance(float(m.group(2)), relative=bool(m.group(3)))
    return out


def pick_reference(rows: Sequence[BoardRow], metric: str, feature_space: str
                   ) -> BoardRow | None:
    """The model's reference row for ``metric``: its most recent evaluation, preferring rows
    in the same feature space (ties on date go to the lowest seed)."""
    candidates = [r for r in rows if r.metric == metric]
    same = [r for r in candidates if r.feature_space == feature_space]
    pool = same or candidates
    if not pool:
        return None
    return sorted(pool, key=lambda r: (r.date, -r.seed))[-1]


def provenance_warnings(new: Sequence[BoardRow], refs: Mapping[str, BoardRow]) -> list[str]:
    """Differences in what was measured: dataset file, feature space, likelihood kind, version."""
    warnings: list[str] = []
    if not new:
        return warnings
    first = new[0]
    ref_rows = list(refs.values())
    datasets = {r.dataset_sha256 for r in ref_rows} - {first.dataset_sha256}
    if datasets:
        warnings.append(f"dataset sha256 differs: new {first.dataset_sha256[:12]}, reference "
                        f"{', '.join(sorted(d[:12] for d in datasets))}: the data changed, so "
                        "the numbers may not be comparable")
    versions = {r.gmbench_version for r in ref_rows} - {first.gmbench_version}
    if versions:
        warnings.append(f"gmbench version differs: new {first.gmbench_version}, reference "
                        f"{', '.join(sorted(versions))}: see CHANGELOG.md for metric changes")
    for row in new:
        ref = refs.get(row.metric)
        if ref is None:
            continue
        if ref.feature_space != row.feature_space:
            warnings.append(f"{row.metric}: feature space differs (extractor or its weights): "
                            f"new {row.feature_space!r}, reference {ref.feature_space!r}")
        if ref.kind != row.kind:
            warnings.append(f"{row.metric}: likelihood kind differs: new {row.kind!r}, "
                            f"reference {ref.kind!r}")
        if ref.higher_is_better != row.higher_is_better:
            warnings.append(f"{row.metric}: direction differs from the board; judged by the "
                            "new results' direction")
    return warnings


@dataclass(frozen=True)
class CheckReport:
    """All verdicts of one check, the reference rows used, and provenance warnings."""

    verdicts: tuple[Verdict, ...]
    references: dict[str, BoardRow]
    warnings: tuple[str, ...]

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def check_results(result: Mapping[str, Any], board: Sequence[BoardRow], *, model: str,
                  tolerances: Mapping[str, Tolerance] | None = None) -> CheckReport:
    """Judge every metric of ``result`` (a ``results.json`` dict) against ``model`` on ``board``.

    Raises:
        BoardError: ``model`` is not on the board for this dataset, or a tolerance names a
            metric that is neither in the results nor on the board.
    """
    tolerances = dict(tolerances or {})
    new_rows = rows_from_results(result)
    mine = select_model(board, model, result["dataset"]["name"])
    known = {r.metric for r in new_rows} | {r.metric for r in mine}
    for key in tolerances:
        if key != "*" and neutralise(key) not in known:
            raise BoardError(f"--tolerance names metric '{key}', which is neither in the "
                             f"results nor on the board.{did_you_mean(key, sorted(known))}")
    default = tolerances.get("*", Tolerance(0.0))
    verdicts, refs = [], {}
    for row in new_rows:
        ref = pick_reference(mine, row.metric, row.feature_space)
        if ref is not None:
            refs[row.metric] = ref
        tol = tolerances.get(row.metric, default)
        verdicts.append(judge(
            metric=row.metric, new=row.value, new_stderr=row.sigma,
            reference=None if ref is None else ref.value,
            reference_stderr=0.0 if ref is None else ref.sigma,
            higher_is_better=row.higher_is_better,
            tolerance=0.0 if ref is None or ref.value is None else tol.of(ref.value),
            unit=row.unit))
    seen = {r.metric for r in new_rows}
    for metric in sorted({r.metric for r in mine} - seen):
        ref = pick_reference(mine, metric, "")
        assert ref is not None
        verdicts.append(Verdict(metric=metric, status="missing", new=None, reference=ref.value,
                                worse_by=None, tolerance=0.0, noise=0.0,
                                higher_is_better=ref.higher_is_better, unit=ref.unit))
    return CheckReport(tuple(verdicts), refs, tuple(provenance_warnings(new_rows, refs)))
