"""The CI regression gate: compare a new ``results.json`` with a model's row on a board.

The rule. For every metric with a finite reference, let ``worse`` be how much worse the new
value is in the metric's direction (``ref - new`` when higher is better, ``new - ref`` when
lower is better, the growth of ``|value - ideal|`` for target-valued metrics) and
``se = sqrt(se_new^2 + se_ref^2)`` the standard error of the difference of two independent
estimates (each ``se`` the larger of the recorded standard error and the 95% interval's
``half-width / 1.96``). Its one-sided p-value is ``1 - Phi(worse / se)``. The metrics'
p-values go through the Holm-Bonferroni step-down procedure at level ``alpha`` (default 5%):
sorted ascending, ``p_(j)`` is rejected while ``p_(j) <= alpha / (m - j + 1)``. A metric
**regresses** when Holm rejects it **and** ``worse`` exceeds its tolerance. A value that is
no longer finite is a regression.

Holm controls the family-wise error rate: when no metric got worse, the probability that the
gate fails at all is at most ``alpha``, whatever the dependence between the metrics (they are
strongly dependent: precision and density, FID and KID). Each metric's line also states the
smallest worsening it can detect alone: ``max(tolerance, z_(1 - alpha/m) * se)``.

Values of different protocol versions (a metric whose definition changed) are not compared:
the check stops with exit status 2 and says to re-record the reference.

References:
    Holm, "A simple sequentially rejective multiple test procedure", Scandinavian Journal of
    Statistics 6(2), 1979. pytest-benchmark's ``--benchmark-compare-fail`` (a threshold
    without noise) is what this improves on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from scipy import stats

from gmbench.direction import Direction
from gmbench.errors import BoardError, did_you_mean
from gmbench.estimators.uncertainty import Z95
from gmbench.storage.leaderboard import (
    BoardRow,
    identity_conflicts,
    neutralise,
    rows_from_results,
    select_model,
)

__all__ = [
    "ALPHA",
    "CheckReport",
    "Tolerance",
    "Verdict",
    "check_results",
    "holm",
    "judge",
    "parse_tolerances",
    "pick_reference",
    "provenance_warnings",
]

ALPHA = 0.05
# Two runs that agree to this relative precision are the same number (float rounding across
# platforms and BLAS builds); a zero-variance metric is not failed for a difference this small.
ROUNDING_REL = 1e-6
ROUNDING_ABS = 1e-12
RULE = ("a metric regresses only when it is worse than the reference in its direction by more "
        "than its tolerance (absolute in the metric's unit, or 'N%' of the reference; default "
        "0) AND the Holm-Bonferroni procedure over all judged metrics rejects 'not worse' at "
        "level ALPHA (one-sided z-test of the difference, se = sqrt(se_new^2 + se_ref^2)): the "
        "probability of a false alarm for an unchanged model is at most ALPHA (default 5%)")


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

    ``status`` is ``"pass"``, ``"improved"`` (better by more than the 95% noise),
    ``"regression"``, ``"new"`` (no reference on the board) or ``"missing"`` (on the board, not
    in the results).

    Attributes:
        worse_by: how much worse than the reference, in the metric's unit (negative: better).
        tolerance: the accepted worsening in the metric's unit.
        se: standard error of the difference.
        p_value: one-sided p-value of ``worse_by`` under "not worse" (``None`` without one).
        detectable: the smallest worsening this metric flags on its own (Bonferroni step).
    """

    metric: str
    status: str
    new: float | None
    reference: float | None
    worse_by: float | None
    tolerance: float
    se: float
    direction: Direction
    unit: str = ""
    p_value: float | None = None
    detectable: float | None = None

    @property
    def failed(self) -> bool:
        """A regression, or a gated metric the new results lack (a run that dropped or
        could not compute it must not pass the gate)."""
        return self.status in ("regression", "missing")

    @property
    def noise(self) -> float:
        """The 95% noise of the difference, ``1.96 se``."""
        return Z95 * self.se


def judge(*, metric: str, new: float | None, new_stderr: float, reference: float | None,
          reference_stderr: float, direction: Direction, tolerance: float = 0.0,
          unit: str = "") -> Verdict:
    """Pure: one metric's difference, its standard error and one-sided p-value; the status
    is ``"regression"`` here when the metric would fail on its own at the 95% level (the
    family-wise decision is :func:`holm`'s, applied by :func:`check_results`).

    Args:
        new, reference: the two values (``None``: not finite / absent).
        new_stderr, reference_stderr: their standard errors (>= 0).
        direction: the metric's direction.
        tolerance: accepted worsening, in the metric's unit (>= 0); at least the float
            rounding of the two values (``ROUNDING_REL`` relative).
    """
    se = math.hypot(new_stderr, reference_stderr)
    worse: float | None
    p: float | None = None
    if reference is None:
        status, worse = "new", None
    elif new is None:  # a metric that was finite and is no longer
        status, worse, p = "regression", math.inf, 0.0
    else:
        worse = direction.worse_by(new, reference)
        tolerance = max(tolerance, ROUNDING_REL * max(abs(new), abs(reference)) + ROUNDING_ABS)
        p = float(stats.norm.sf(worse / se)) if se > 0 else (0.0 if worse > 0 else 1.0)
        if worse > tolerance and p <= stats.norm.sf(Z95):
            status = "regression"
        elif -worse > Z95 * se:
            status = "improved"
        else:
            status = "pass"
    return Verdict(metric=metric, status=status, new=new, reference=reference, worse_by=worse,
                   tolerance=tolerance, se=se, direction=direction, unit=unit, p_value=p)


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm-Bonferroni step-down: which of ``p_values`` are rejected at family-wise level
    ``alpha``."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    rejected = [False] * m
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


_OUT_OF_RANGE = re.compile(r"^\s*[^=\s]+\s*=\s*(-\S*|[-+]?(inf|infinity|nan))\s*%?\s*$",
                           re.IGNORECASE)
_TOL = re.compile(r"^\s*([^=\s]+)\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*$")


def parse_tolerances(items: Sequence[str]) -> dict[str, Tolerance]:
    """Parse ``key=value`` / ``key=N%`` items; the key ``*`` sets the default for every metric."""
    out: dict[str, Tolerance] = {}
    for item in items:
        m = _TOL.match(item)
        if not m and _OUT_OF_RANGE.match(item):
            raise BoardError(f"--tolerance {item!r}: a tolerance is an accepted worsening, a "
                             "finite number >= 0 (e.g. `--tolerance fid=2.5` or "
                             "`--tolerance precision=5%`); negative, infinite and nan values "
                             "are refused.")
        if not m:
            raise BoardError(f"--tolerance {item!r} is not KEY=VALUE: write e.g. "
                             "`--tolerance fid=2.5` (absolute, in the metric's unit), "
                             "`--tolerance precision=5%` (of the reference), or "
                             "`--tolerance '*=1%'` for every metric.")
        value = float(m.group(2))
        if not math.isfinite(value):
            raise BoardError(f"--tolerance {item!r}: {m.group(2)} is not a finite number; a "
                             "tolerance that large would accept every regression.")
        out[m.group(1)] = Tolerance(value, relative=bool(m.group(3)))
    return out


def pick_reference(rows: Sequence[BoardRow], metric: str, feature_space: str,
                   protocol: int | None = None) -> BoardRow | None:
    """The model's reference row for ``metric``: its most recent evaluation, preferring rows
    of the same protocol, then in the same feature space (ties on date go to the lowest
    seed)."""
    candidates = [r for r in rows if r.metric == metric]
    if protocol is not None and any(r.protocol == protocol for r in candidates):
        candidates = [r for r in candidates if r.protocol == protocol]
    same = [r for r in candidates if r.feature_space == feature_space]
    pool = same or candidates
    if not pool:
        return None
    return sorted(pool, key=lambda r: (r.date, -r.seed))[-1]


def provenance_warnings(new: Sequence[BoardRow], refs: Mapping[str, BoardRow]) -> list[str]:
    """Differences in what was measured: dataset file, weights, feature space, likelihood
    kind, version."""
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
    weights = {r.weights_sha256 for r in ref_rows if r.weights_sha256} - {first.weights_sha256}
    if weights and first.weights_sha256:
        warnings.append(f"the reference was another checkpoint: weights sha256 "
                        f"{', '.join(sorted(w[:12] for w in weights))} on the board, "
                        f"{first.weights_sha256[:12]} now")
    versions = {r.gmbench_version for r in ref_rows} - {first.gmbench_version}
    if versions:
        warnings.append(f"gmbench version differs: new {first.gmbench_version}, reference "
                        f"{', '.join(sorted(versions))}: see CHANGELOG.md for metric changes")
    configs = {r.eval_config for r in ref_rows} - {first.eval_config}
    if configs:
        warnings.append(f"evaluation options differ: new {first.eval_config}, reference "
                        f"{'; '.join(sorted(configs))}: re-run with the reference's options to "
                        "compare like with like")
    counts = {r.n_samples for r in ref_rows if r.n_samples is not None} - {first.n_samples}
    if counts and first.n_samples is not None:
        warnings.append(f"sample count differs: new {first.n_samples}, reference "
                        f"{', '.join(str(c) for c in sorted(counts))}: sample metrics such as "
                        "FID and KID move with the count, so pass --n-samples as the "
                        "reference did")
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
        if ref.direction != row.direction:
            warnings.append(f"{row.metric}: direction differs from the board; judged by the "
                            "new results' direction")
    return warnings


@dataclass(frozen=True)
class CheckReport:
    """All verdicts of one check, the reference rows used, provenance warnings and the
    family-wise level."""

    verdicts: tuple[Verdict, ...]
    references: dict[str, BoardRow]
    warnings: tuple[str, ...]
    alpha: float = ALPHA

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]

    @property
    def judged(self) -> int:
        """How many metrics took part in the family-wise test."""
        return sum(1 for v in self.verdicts if v.p_value is not None)

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def _protocol_error(mismatched: Sequence[tuple[str, int, int]], model: str) -> BoardError:
    listed = "; ".join(f"{m}: board protocol {old}, now {new}" for m, old, new in mismatched)
    return BoardError(
        f"The reference rows of '{model}' were measured under other protocol versions than "
        f"this gmbench uses ({listed}): the metrics' definitions changed (CHANGELOG.md), so "
        "the values are not comparable. Re-record the reference with this gmbench: `gmbench "
        "evaluate MODEL --seed S --out DIR` then `gmbench leaderboard add DIR/results.json "
        "--board BOARD --replace`.")


def _refuse_edited_directions(rows: Sequence[BoardRow],
                              defined: Mapping[str, tuple[int, Direction]]) -> None:
    for row in rows:
        protocol, direction = defined.get(row.metric, (None, None))
        if protocol == row.protocol and direction != row.direction:
            assert direction is not None
            raise BoardError(
                f"{row.model}/{row.metric} ({row.dataset}, seed {row.seed}) says "
                f"{_describe(row.direction)}, but {row.metric} (protocol {protocol}) is "
                f"{_describe(direction)}: the results file or board was edited. Restore it "
                "from the `gmbench evaluate` output (or re-run the evaluation).")


def _describe(d: Direction) -> str:
    if d.ideal is not None:
        return f"best at {d.ideal:g}"
    return "higher is better" if d.higher_is_better else "lower is better"


def check_results(result: Mapping[str, Any], board: Sequence[BoardRow], *, model: str,
                  tolerances: Mapping[str, Tolerance] | None = None,
                  alpha: float = ALPHA, metrics: Sequence[str] | None = None,
                  defined: Mapping[str, tuple[int, Direction]] | None = None) -> CheckReport:
    """Judge every metric of ``result`` (a ``results.json`` dict) against ``model`` on
    ``board`` under the family-wise rule of this module's docstring. A metric on the board
    that the results lack fails the check (status ``"missing"``).

    Args:
        metrics: gate only these metrics (default: every metric in the results or on the
            board for ``model``).
        defined: ``metric -> (protocol, direction)`` as gmbench defines them today (the
            metric registry): a row of that protocol claiming another direction was edited,
            and is refused rather than judged the wrong way round.

    Raises:
        BoardError: ``model`` is not on the board for this dataset, a tolerance or ``metrics``
            names a metric that is neither in the results nor on the board, or a metric's
            reference was measured under another protocol version.
    """
    if not 0 < alpha < 1:
        raise BoardError(f"--alpha {alpha} must lie strictly between 0 and 1 (e.g. 0.05).")
    tolerances = dict(tolerances or {})
    new_rows = rows_from_results(result)
    mine = select_model(board, model, result["dataset"]["name"])
    known = {r.metric for r in new_rows} | {r.metric for r in mine}
    if metrics is not None:
        gated = {neutralise(k) for k in metrics}
        for key in metrics:
            if neutralise(key) not in known:
                raise BoardError(f"--metrics names '{key}', which is neither in the results "
                                 f"nor on the board.{did_you_mean(key, sorted(known))}")
        if not gated:
            raise BoardError("--metrics is empty: name the metrics to gate, e.g. "
                             "--metrics nll,fid, or leave it out to gate every metric.")
        new_rows = [r for r in new_rows if r.metric in gated]
        mine = [r for r in mine if r.metric in gated]
        known = gated
    for key in tolerances:
        if key != "*" and neutralise(key) not in known:
            raise BoardError(f"--tolerance names metric '{key}', which is neither in the "
                             f"results nor on the board.{did_you_mean(key, sorted(known))}")
    _refuse_edited_directions([*new_rows, *mine], defined or {})
    default = tolerances.get("*", Tolerance(0.0))
    verdicts, refs, mismatched = [], {}, []
    for row in new_rows:
        ref = pick_reference(mine, row.metric, row.feature_space, row.protocol)
        if ref is not None and ref.protocol != row.protocol:
            mismatched.append((row.metric, ref.protocol, row.protocol))
            continue
        if ref is not None:
            refs[row.metric] = ref
        tol = tolerances.get(row.metric, default)
        verdicts.append(judge(
            metric=row.metric, new=row.value, new_stderr=row.sigma,
            reference=None if ref is None else ref.value,
            reference_stderr=0.0 if ref is None else ref.sigma,
            direction=row.direction,
            tolerance=0.0 if ref is None or ref.value is None else tol.of(ref.value),
            unit=row.unit))
    if mismatched:
        raise _protocol_error(mismatched, model)
    judged = [i for i, v in enumerate(verdicts) if v.p_value is not None]
    m = max(len(judged), 1)
    z_crit = float(stats.norm.isf(alpha / m))
    rejected = holm([verdicts[i].p_value for i in judged], alpha)  # type: ignore[misc]
    for i, reject in zip(judged, rejected, strict=True):
        v = verdicts[i]
        assert v.worse_by is not None
        failed = v.new is None or (reject and v.worse_by > v.tolerance)
        status = "regression" if failed else ("improved" if v.status == "improved" else "pass")
        verdicts[i] = replace(v, status=status, detectable=max(v.tolerance, z_crit * v.se))
    seen = {r.metric for r in new_rows}
    for metric in sorted({r.metric for r in mine} - seen):
        ref = pick_reference(mine, metric, "")
        assert ref is not None
        verdicts.append(Verdict(metric=metric, status="missing", new=None, reference=ref.value,
                                worse_by=None, tolerance=0.0, se=0.0, direction=ref.direction,
                                unit=ref.unit))
    warnings = provenance_warnings(new_rows, refs) + identity_conflicts(mine)
    return CheckReport(tuple(verdicts), refs, tuple(warnings), alpha)
