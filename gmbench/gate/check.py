"""The CI regression gate: compare a new ``results.json`` with a model's rows on a board.

What is compared. For every metric, the model's reference row on the board (same protocol,
same feature space, the same weights where the board has them, then the same seed, then the
most recent). Only comparable numbers are compared: a reference in another feature space, of
another protocol, on other data (dataset sha256), or, for a metric whose value depends on the
sample count, at another ``n_samples`` is refused with exit status 2 and a message saying
what differs and how to re-record (``allow`` accepts a documented difference: ``dataset``,
``n-samples``).

Reproduction. Where both runs share the seed, the options, the weights' identity, the data and
the platform (machine, libraries, device, thread count: ``provenance.platform_id``), the new
run must reproduce the reference within float rounding (:data:`REPRODUCTION_REL`, or the
metric's tolerance): any other difference, better or worse, is ``not reproduced`` and fails.

The statistical rule, otherwise. For each metric ``worse`` is how much worse the new value is
in the metric's direction (the growth of ``|value - ideal|`` for target-valued metrics). Its
standard error is

* **paired** where the metric is a mean over examples and both runs kept their per-example
  values (:mod:`gmbench.storage.per_example`): the standard error of the mean per-example
  difference over the examples both scored (gmbench's own randomness in likelihood scoring is
  keyed by the example, so an unchanged model differs by nothing);
* otherwise ``sqrt(se_new^2 + se_ref^2)`` of the two runs' standard errors between runs on this
  test split (``stderr_runs``, else the larger of ``stderr`` and the 95% half-width / 1.96),
  with Welch–Satterthwaite degrees of freedom from their own (``df_runs``).

Its one-sided p-value is the t-test's. A metric that is a deterministic transform of another
(``bits_per_dim``, ``perplexity``, ``cross_entropy``, ``entropy_gap`` of ``nll``; ``cas_ratio`` of
``cas``; ``tv_lower_bound`` of ``c2st_accuracy``) is judged once, with it. Where both runs
have the same weights and kept sample features in one feature space, a permutation test of
"the samples' distribution is unchanged" (MMD², multi-scale RBF kernel) joins the family with
half of its weight: it sees a changed sampler long before any single metric does. A test that
cannot reject at ``alpha`` even alone (a bounded metric whose whole range is within its noise)
stays out of the family. The family goes through Holm's weighted step-down procedure at
``alpha`` (default 5%), which bounds the probability that an unchanged model fails the check
by ``alpha`` for any dependence between the metrics. A metric **regresses** when Holm
rejects it **and** ``worse`` exceeds its tolerance; a value that is no longer finite is a
regression. Each verdict states the worsening it detects with 80% probability at its level.

References:
    Holm 1979 (weighted step-down); Gretton et al. 2012 (kernel two-sample test); Student's
    paired t-test. pytest-benchmark's ``--benchmark-compare-fail`` (a threshold without noise)
    is what this improves on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gmbench.core.direction import Direction
from gmbench.core.errors import BoardError, did_you_mean
from gmbench.estimators.hypothesis import (
    POWER,
    detectable,
    holm,
    one_sided_p,
    quantile,
    welch_df,
)
from gmbench.estimators.mmd import median_bandwidth, mmd2_permutation_test, multiscale_bandwidths
from gmbench.storage.leaderboard import (
    BoardRow,
    identity_conflicts,
    neutralise,
    options_differ,
    rows_from_results,
    select_model,
)
from gmbench.storage.per_example import PerExample, differences, parse_terms
from gmbench.storage.results import MetricRecord, records

__all__ = [
    "ALLOWED",
    "ALPHA",
    "POWER",
    "SAMPLES",
    "CheckReport",
    "Definition",
    "Tolerance",
    "Verdict",
    "check_results",
    "holm",
    "judge",
    "parse_allowed",
    "parse_tolerances",
    "pick_reference",
    "provenance_warnings",
]

ALPHA = 0.05
# Two runs that agree to this relative precision are the same number (float rounding across
# platforms and BLAS builds); a zero-variance metric is not failed for a difference this small.
ROUNDING_REL = 1e-6
ROUNDING_ABS = 1e-12
# Reproduction on one platform: seeded runs are bit for bit the same there (measured: every
# digits baseline, twice, `benchmarks/gate_calibration.py --reproduce`); this allows for a
# summation order that a library picks by alignment.
REPRODUCTION_REL = 1e-9
REPRODUCTION_ABS = 1e-12
NOT_ESTIMABLE = "not estimable"  # how a row's ci_method starts when its value is not estimable
SAMPLES = "samples"  # the verdict of the two-sample test of the samples' distribution
SAMPLES_WEIGHT = 0.5  # its share of alpha in the weighted Holm family
PERMUTATIONS = 500
ALLOWED = {
    "dataset": "compare results measured on data with another sha256 under the same dataset "
               "name (the same examples stored differently, say): you vouch that the test "
               "split is the same",
    "n-samples": "compare sample metrics measured at another --n-samples (FID, precision, "
                 "recall, IS, ... move with it: only a worsening beyond that shift is real)",
}
RULE = ("a metric regresses only when it is worse than the reference in its direction by more "
        "than its tolerance (absolute in the metric's unit, or 'N%' of the reference; default "
        "0) AND Holm's procedure over the judged metrics rejects 'not worse' at level ALPHA "
        "(one-sided t-tests: paired over the test examples where both runs kept per-example "
        "values, else of the two runs' standard errors between runs; a permutation test of "
        "the samples' distribution joins when the weights are the same): the probability of a "
        "false alarm for an unchanged model is at most ALPHA (default 5%). Runs with the same "
        "seed, options, weights and platform must reproduce the reference exactly")


@dataclass(frozen=True)
class Definition:
    """How gmbench defines a metric today (from the metric registry), as the gate needs it.

    Attributes:
        protocol: the definition's version; rows of another are refused.
        direction: which way is better; a row of this protocol claiming another was edited.
        judged_with: the metric this one is a deterministic transform of (judged once, with it).
        sample_count_matters: its value moves with the number of samples (FID, precision, ...):
            a reference at another ``n_samples`` is refused.
        low, high: the range of its values.
        unestimable_by_chance: whether a run finds it not estimable depends on that run's
            samples; such a run is reported as not compared instead of failing.
        rise_regresses: ranked by the distance from its ideal, gated as lower-is-better (only
            a rise regresses: ``copy_rate``).
    """

    protocol: int
    direction: Direction
    judged_with: str | None = None
    sample_count_matters: bool = False
    low: float = -math.inf
    high: float = math.inf
    unestimable_by_chance: bool = False
    rise_regresses: bool = False


def _as_gated(row: BoardRow, defined: Mapping[str, Definition]) -> BoardRow:
    """``row`` as the gate judges it: a metric whose rise alone regresses (ranked by its
    distance from the ideal) as lower-is-better."""
    d = defined.get(row.metric)
    if d is not None and d.rise_regresses and d.protocol == row.protocol:
        return replace(row, ideal=None, higher_is_better=False)
    return row


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
    """The outcome for one metric (or for the samples' two-sample test, metric
    :data:`SAMPLES`).

    ``status`` is ``"pass"``, ``"improved"`` (better beyond the 95% noise), ``"regression"``,
    ``"new"`` (no reference on the board), ``"missing"`` (on the board, not in the results),
    ``"reproduced"`` / ``"not reproduced"`` (the runs should be identical), ``"excluded"``
    (it cannot reject at this level: out of the family), or ``"not estimable"`` (one run found
    a metric ``unestimable_by_chance`` not estimable on its samples: not compared).

    Attributes:
        worse_by: how much worse than the reference, in the metric's unit (negative: better).
        tolerance: the accepted worsening in the metric's unit.
        se: standard error of the difference; df: its degrees of freedom (``inf``: normal).
        p_value: one-sided p-value of ``worse_by`` under "not worse" (``None`` without one).
        detectable: the worsening it detects with 80% probability (its first Holm step).
        paired: how the difference was formed (``"paired over 360 test examples"``), or
            ``None`` for the unpaired test.
        judged_with: the metric whose verdict this one shares (a transform of it).
        weight: its share of ``alpha`` in the family.
        note: why it was judged as it was (fallbacks, exclusions).
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
    df: float = math.inf
    paired: str | None = None
    judged_with: str | None = None
    weight: float | None = None
    note: str = ""

    @property
    def failed(self) -> bool:
        """A regression, a gated metric the new results lack (a run that dropped or could not
        compute it must not pass the gate), or a run that should reproduce its reference and
        does not. A transform judged with another metric fails with it, counted once."""
        return self.judged_with is None and self.status in (
            "regression", "missing", "not reproduced")

    @property
    def noise(self) -> float:
        """The 95% two-sided noise of the difference."""
        return quantile(0.975, self.df) * self.se


def judge(*, metric: str, new: float | None, new_stderr: float, reference: float | None,
          reference_stderr: float, direction: Direction, tolerance: float = 0.0,
          unit: str = "", new_df: float | None = None, reference_df: float | None = None
          ) -> Verdict:
    """Pure: one metric's unpaired difference, its standard error, degrees of freedom and
    one-sided p-value; the status is ``"regression"`` here when the metric would fail on its
    own at the 95% level (the family-wise decision is :func:`holm`'s, applied by
    :func:`check_results`).

    Args:
        new, reference: the two values (``None``: not finite / absent).
        new_stderr, reference_stderr: their standard errors between runs (>= 0).
        new_df, reference_df: their degrees of freedom (``None``: many).
        direction: the metric's direction.
        tolerance: accepted worsening, in the metric's unit (>= 0); at least the float
            rounding of the two values (``ROUNDING_REL`` relative).
    """
    se = math.hypot(new_stderr, reference_stderr)
    df = welch_df(new_stderr, new_df, reference_stderr, reference_df)
    return _verdict(metric=metric, new=new, reference=reference, se=se, df=df,
                    direction=direction, tolerance=tolerance, unit=unit)


def _verdict(*, metric: str, new: float | None, reference: float | None, se: float,
             df: float, direction: Direction, tolerance: float, unit: str,
             paired: str | None = None, note: str = "") -> Verdict:
    worse: float | None
    p: float | None = None
    if reference is None:
        status, worse = "new", None
    elif new is None:  # a metric that was finite and is no longer
        status, worse, p = "regression", math.inf, 0.0
    else:
        worse = direction.worse_by(new, reference)
        tolerance = max(tolerance, ROUNDING_REL * max(abs(new), abs(reference)) + ROUNDING_ABS)
        # a difference within float rounding is no difference, however small its noise
        p = one_sided_p(worse, se, df) if abs(worse) > tolerance or se > 0 else 1.0
        if worse > tolerance and p <= 0.025:
            status = "regression"
        elif -worse > quantile(0.975, df) * se and -worse > tolerance:
            status = "improved"
        else:
            status = "pass"
    return Verdict(metric=metric, status=status, new=new, reference=reference, worse_by=worse,
                   tolerance=tolerance, se=se, direction=direction, unit=unit, p_value=p,
                   df=df, paired=paired, note=note)


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


def parse_allowed(items: Sequence[str]) -> frozenset[str]:
    """The ``--allow`` items (comma-separated or repeated), each one of :data:`ALLOWED`."""
    chosen = {x.strip() for item in items for x in item.split(",") if x.strip()}
    for item in sorted(chosen):
        if item not in ALLOWED:
            raise BoardError(f"--allow {item!r} is not a difference gmbench can allow; use "
                             f"one of: " + "; ".join(f"{k} ({v})" for k, v in ALLOWED.items())
                             + ". Feature spaces and protocol versions are never compared.")
    return frozenset(chosen)


def pick_reference(rows: Sequence[BoardRow], metric: str, feature_space: str,
                   protocol: int | None = None, *, weights: str = "", seed: int | None = None
                   ) -> BoardRow | None:
    """The model's reference row for ``metric``: preferring rows of the same protocol, then of
    the same feature space, then of the same weights, then of the same seed, then the most
    recent (ties on date go to the lowest seed)."""
    pool = [r for r in rows if r.metric == metric]
    for keep in (lambda r: r.protocol == protocol, lambda r: r.feature_space == feature_space,
                 lambda r: bool(weights) and r.weights_sha256 == weights,
                 lambda r: r.seed == seed):
        narrower = [r for r in pool if keep(r)]
        pool = narrower or pool
    if not pool:
        return None
    return sorted(pool, key=lambda r: (r.date, -r.seed))[-1]


def provenance_warnings(new: Sequence[BoardRow], refs: Mapping[str, BoardRow]) -> list[str]:
    """Differences in what was measured that do not stop the comparison: the weights, the
    likelihood kind, the gmbench version, the options."""
    warnings: list[str] = []
    if not new:
        return warnings
    first = new[0]
    ref_rows = list(refs.values())
    weights = {r.weights_sha256 for r in ref_rows if r.weights_sha256} - {first.weights_sha256}
    if weights and first.weights_sha256:
        warnings.append(f"the reference was another checkpoint: weights sha256 "
                        f"{', '.join(sorted(w[:12] for w in weights))} on the board, "
                        f"{first.weights_sha256[:12]} now")
    versions = {r.gmbench_version for r in ref_rows} - {first.gmbench_version}
    if versions:
        warnings.append(f"gmbench version differs: new {first.gmbench_version}, reference "
                        f"{', '.join(sorted(versions))}: see CHANGELOG.md for metric changes")
    counts = {r.n_samples for r in ref_rows if r.n_samples is not None} - {first.n_samples}
    if counts and first.n_samples is not None:
        warnings.append(f"sample count differs: new {first.n_samples}, reference "
                        f"{', '.join(str(c) for c in sorted(counts))} (the metrics compared "
                        "do not move with it, or --allow n-samples was given)")
    configs = {r.eval_config for r in ref_rows if options_differ(r.eval_config,
                                                                  first.eval_config)}
    if configs:
        warnings.append(f"evaluation options differ: new {first.eval_config}, reference "
                        f"{'; '.join(sorted(configs))}: re-run with the reference's options to "
                        "compare like with like")
    for row in new:
        ref = refs.get(row.metric)
        if ref is None:
            continue
        if ref.kind != row.kind:
            warnings.append(f"{row.metric}: likelihood kind differs: new {row.kind!r}, "
                            f"reference {ref.kind!r}")
        if ref.direction != row.direction:
            warnings.append(f"{row.metric}: direction differs from the board; judged by the "
                            "new results' direction")
    return warnings


@dataclass(frozen=True)
class CheckReport:
    """All verdicts of one check, the reference rows used, warnings, the family-wise level and
    how the runs were compared (``"statistical"`` or ``"reproduction"``)."""

    verdicts: tuple[Verdict, ...]
    references: dict[str, BoardRow]
    warnings: tuple[str, ...]
    alpha: float = ALPHA
    mode: str = "statistical"

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]

    @property
    def judged(self) -> int:
        """How many tests took part in the family-wise test."""
        return sum(1 for v in self.verdicts if v.weight is not None)

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
                              defined: Mapping[str, Definition]) -> None:
    for row in rows:
        d = defined.get(row.metric)
        if d is not None and d.protocol == row.protocol and d.direction != row.direction:
            raise BoardError(
                f"{row.model}/{row.metric} ({row.dataset}, seed {row.seed}) says "
                f"{row.direction.describe()}, but {row.metric} (protocol {d.protocol}) is "
                f"{d.direction.describe()}: the results file or board was edited. Restore it "
                "from the `gmbench evaluate` output (or re-run the evaluation).")


def _incomparable(new_rows: Sequence[BoardRow], refs: Mapping[str, BoardRow],
                  defined: Mapping[str, Definition], allow: Collection[str], model: str
                  ) -> BoardError | None:
    """Why the new rows cannot be judged against their references, or ``None``."""
    lines = []
    spaces = [(r.metric, r.feature_space, refs[r.metric].feature_space) for r in new_rows
              if r.metric in refs and refs[r.metric].feature_space != r.feature_space]
    if spaces:
        shown = "; ".join(f"{m}: new {a!r}, reference {b!r}" for m, a, b in spaces[:4])
        lines.append(f"feature spaces differ ({shown}{' ...' if len(spaces) > 4 else ''}): "
                     "values in different feature spaces are in different units. Re-run "
                     "with the reference's --feature-extractor (and weights), or record a "
                     "reference in this feature space")
    data = sorted({refs[r.metric].dataset_sha256 for r in new_rows if r.metric in refs}
                  - {new_rows[0].dataset_sha256}) if new_rows else []
    if data and "dataset" not in allow:
        lines.append(f"the data differ: the results were measured on dataset sha256 "
                     f"{new_rows[0].dataset_sha256[:12]}, the reference on "
                     f"{', '.join(d[:12] for d in data)} (other files under the same name). "
                     "Evaluate on the reference's data, or re-record the reference on these "
                     "(`--allow dataset` if you know the test split is the same)")
    counted = [(r.metric, r.n_samples, refs[r.metric].n_samples) for r in new_rows
               if r.metric in refs and defined.get(r.metric, Definition(1, r.direction))
               .sample_count_matters and r.n_samples != refs[r.metric].n_samples]
    if counted and "n-samples" not in allow:
        metrics = ", ".join(m for m, _, _ in counted[:6]) + (" ..." if len(counted) > 6 else "")
        lines.append(f"the sample counts differ: new {counted[0][1]}, reference "
                     f"{counted[0][2]}, and {metrics} move with the sample count. Re-run with "
                     f"--n-samples {counted[0][2]} (or record a reference at "
                     f"{counted[0][1]}; `--allow n-samples` compares them anyway)")
    if not lines:
        return None
    return BoardError(f"The results cannot be judged against '{model}': "
                      + "; and ".join(lines) + ".")


def _reproducible(new: BoardRow, ref: BoardRow) -> bool:
    """Whether ``new`` should reproduce ``ref``: the same seed, options, sample count, weights,
    data, feature space, protocol and platform."""
    return (new.seed == ref.seed and new.eval_config == ref.eval_config
            and (new.n_samples == ref.n_samples or new.n_samples is None)  # None: no samples
            and bool(new.weights_sha256)
            and new.weights_sha256 == ref.weights_sha256 and bool(new.platform)
            and new.platform == ref.platform and new.dataset_sha256 == ref.dataset_sha256
            and new.feature_space == ref.feature_space and new.protocol == ref.protocol)


def _reproduction(row: BoardRow, ref: BoardRow, tolerance: float) -> Verdict:
    same = row.value is None and ref.value is None
    worse = None
    if row.value is not None and ref.value is not None:
        worse = row.direction.worse_by(row.value, ref.value)
        allowed = max(tolerance, REPRODUCTION_REL * max(abs(row.value), abs(ref.value))
                      + REPRODUCTION_ABS)
        same = abs(row.value - ref.value) <= allowed
    return Verdict(metric=row.metric, status="reproduced" if same else "not reproduced",
                   new=row.value, reference=ref.value, worse_by=worse, tolerance=tolerance,
                   se=0.0, direction=row.direction, unit=row.unit)


def _paired(row: BoardRow, ref: BoardRow, record: MetricRecord | None,
            new_side: PerExample | None, ref_side: PerExample | None, tolerance: float
            ) -> tuple[Verdict | None, str]:
    """The paired verdict of a metric that is a mean over examples, or ``None`` and why not."""
    terms = parse_terms(None if record is None else record.detail("paired"))
    if terms is None or row.value is None or ref.value is None:
        return None, ""
    if new_side is None or ref_side is None:
        which = "the new run" if new_side is None else "the reference"
        return None, f"unpaired: {which} kept no per-example values"
    if any(t.array not in new_side or t.array not in ref_side for t in terms):
        return None, "unpaired: a run lacks these per-example values"
    same_examples = all(np.array_equal(new_side.examples(t.array)[0],
                                       ref_side.examples(t.array)[0]) for t in terms)
    if not same_examples:
        return None, "unpaired: the runs scored different examples (--max-train differs?)"
    result = differences(new_side, ref_side, terms)
    if result is None:
        return None, "unpaired: too few common examples"
    diff, se, df = result
    scale = max(abs(row.value), abs(ref.value), 1.0)
    if abs(diff - (row.value - ref.value)) > 1e-6 * scale:
        return None, ("unpaired: the per-example values do not add up to the recorded values "
                      "(a file of another run?)")
    splits = " and ".join(sorted({f"{len(new_side.examples(t.array)[0])} "
                                  f"{t.array.split('_')[0]}" for t in terms}, reverse=True))
    verdict = _verdict(metric=row.metric, new=row.value, reference=ref.value, se=se,
                       df=float(df), direction=row.direction, tolerance=tolerance,
                       unit=row.unit, paired=f"paired over {splits} examples")
    return verdict, ""


def _can_alarm(v: Verdict, ref: BoardRow, definition: Definition | None, level: float) -> bool:
    """Whether the worst value the metric's range allows would be rejected at ``level``."""
    if definition is None or v.reference is None or v.se <= 0:
        return True
    worst = max(v.direction.worse_by(definition.low, v.reference)
                if math.isfinite(definition.low) else math.inf,
                v.direction.worse_by(definition.high, v.reference)
                if math.isfinite(definition.high) else math.inf)
    return one_sided_p(worst, v.se, v.df) <= level


def _not_estimable(row: BoardRow, ref: BoardRow, record: MetricRecord | None,
                   definition: Definition | None) -> str:
    """Why ``row`` and ``ref`` cannot be compared because one run found the metric not
    estimable on its own samples (the k-NN KL on samples that repeat a point: a metric
    ``unestimable_by_chance``), or ``""``. For a model near the estimator's limit that is
    itself random, so it is reported, not failed; any other value that turned non-finite (or
    not estimable, as a likelihood of a model that stopped being normalised) still fails."""
    if definition is None or not definition.unestimable_by_chance:
        return ""

    def unestimable(r: BoardRow) -> bool:
        return r.value is None and r.ci_method.startswith(NOT_ESTIMABLE)

    if unestimable(row):
        reason = (record.not_estimable if record is not None else None) or ""
        return ("not estimable in the new run" + (f": {reason}" if reason else "")
                + "; not compared")
    if unestimable(ref):
        return "not estimable in the reference run; not compared"
    return ""


def _samples_test(new_side: PerExample | None, ref_side: PerExample | None, *, seed: int
                  ) -> tuple[Verdict | None, str]:
    """The permutation test of "the samples' distribution is unchanged", or why it does not
    run."""
    if new_side is None or ref_side is None:
        return None, ""
    if "sample_features" not in new_side or "sample_features" not in ref_side:
        return None, ""
    if new_side.meta.get("feature_space") != ref_side.meta.get("feature_space"):  # not a metric: a file's
        return None, "samples: not tested (their features are in other spaces)"
    x = np.asarray(ref_side.arrays["sample_features"], np.float32)
    y = np.asarray(new_side.arrays["sample_features"], np.float32)
    if min(len(x), len(y)) < 20:
        return None, ""
    rng = np.random.default_rng(seed)
    sigma = median_bandwidth(x, y, rng=rng)
    test = mmd2_permutation_test(x, y, bandwidth=multiscale_bandwidths(sigma), rng=rng,
                                 permutations=PERMUTATIONS)
    se = test.null_std
    verdict = Verdict(metric=SAMPLES, status="pass", new=test.statistic, reference=0.0,
                      worse_by=test.statistic - test.null_mean, tolerance=0.0, se=se,
                      direction=Direction(False, 0.0), unit="MMD^2", p_value=test.p_value,
                      note=f"the samples' distribution against the reference run's (the "
                           f"same weights): MMD^2 of {len(y)} new and {len(x)} reference "
                           f"samples' features, multi-scale RBF kernel, permutation p-value "
                           f"({test.permutations} relabellings)")
    return verdict, ""


def check_results(result: Mapping[str, Any], board: Sequence[BoardRow], *, model: str,
                  tolerances: Mapping[str, Tolerance] | None = None,
                  alpha: float = ALPHA, metrics: Sequence[str] | None = None,
                  defined: Mapping[str, Definition] | None = None,
                  allow: Collection[str] = (), per_example: PerExample | None = None,
                  reference_per_example: Callable[[str], PerExample | None] | None = None
                  ) -> CheckReport:
    """Judge every metric of ``result`` (a ``results.json`` dict) against ``model`` on
    ``board`` under the rules of this module's docstring. A metric on the board that the
    results lack fails the check (status ``"missing"``).

    Args:
        metrics: gate only these metrics (default: every metric in the results or on the
            board for ``model``).
        defined: ``metric -> Definition`` as gmbench defines them today (the metric
            registry, :func:`gmbench.metrics.registered_definitions`): protocols, directions,
            transforms and sample-count dependence. Without it every metric is judged on its
            own and sample counts are not checked.
        allow: differences of :data:`ALLOWED` to compare across.
        per_example: the new run's per-example values (paired tests, the samples' test).
        reference_per_example: reads the board's per-example values by sha256 (``None``
            where they are not kept).

    Raises:
        BoardError: ``model`` is not on the board for this dataset, a tolerance or ``metrics``
            names a metric that is neither in the results nor on the board, a reference was
            measured under another protocol version or is not comparable (another feature
            space, other data, another sample count).
    """
    if not 0 < alpha < 1:
        raise BoardError(f"--alpha {alpha} must lie strictly between 0 and 1 (e.g. 0.05).")
    tolerances = dict(tolerances or {})
    defined = dict(defined or {})
    new_rows = rows_from_results(result)
    measured = records(result)
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
    _refuse_edited_directions([*new_rows, *mine], defined)
    new_rows = [_as_gated(r, defined) for r in new_rows]
    mine = [_as_gated(r, defined) for r in mine]
    default = tolerances.get("*", Tolerance(0.0))
    refs: dict[str, BoardRow] = {}
    mismatched = []
    for row in new_rows:
        ref = pick_reference(mine, row.metric, row.feature_space, row.protocol,
                             weights=row.weights_sha256, seed=row.seed)
        if ref is not None and ref.protocol != row.protocol:
            mismatched.append((row.metric, ref.protocol, row.protocol))
        elif ref is not None:
            refs[row.metric] = ref
    if mismatched:
        raise _protocol_error(mismatched, model)
    problem = _incomparable(new_rows, refs, defined, allow, model)
    if problem is not None:
        raise problem
    warnings = provenance_warnings(new_rows, refs) + identity_conflicts(mine)

    def tolerance_of(row: BoardRow) -> float:
        ref = refs.get(row.metric)
        if ref is None or ref.value is None:
            return 0.0
        return tolerances.get(row.metric, default).of(ref.value)

    sidecars: dict[str, PerExample | None] = {}

    def reference_side(ref: BoardRow) -> PerExample | None:
        digest = ref.per_example_sha256
        if not digest or reference_per_example is None:
            return None
        if digest not in sidecars:
            try:
                sidecars[digest] = reference_per_example(digest)
            except BoardError as exc:
                warnings.append(f"the reference's per-example values cannot be used ({exc}); "
                                "its metrics are compared unpaired")
                sidecars[digest] = None
        return sidecars[digest]

    verdicts: list[Verdict] = []
    reproducing = bool(refs) and all(_reproducible(r, refs[r.metric]) for r in new_rows
                                     if r.metric in refs)
    for row in new_rows:
        ref = refs.get(row.metric)
        if ref is None:
            verdicts.append(_verdict(metric=row.metric, new=row.value, reference=None, se=0.0,
                                     df=math.inf, direction=row.direction, tolerance=0.0,
                                     unit=row.unit))
        elif reproducing:
            verdicts.append(_reproduction(row, ref, tolerance_of(row)))
        else:
            unestimable = _not_estimable(row, ref, measured.get(row.metric),
                                         defined.get(row.metric))
            if unestimable:
                verdicts.append(Verdict(metric=row.metric, status="not estimable",
                                        new=row.value, reference=ref.value, worse_by=None,
                                        tolerance=0.0, se=0.0, direction=row.direction,
                                        unit=row.unit, note=unestimable))
                continue
            tol = tolerance_of(row)
            paired, why = _paired(row, ref, measured.get(row.metric), per_example,
                                  reference_side(ref), tol)
            if paired is None:
                paired = replace(judge(
                    metric=row.metric, new=row.value, new_stderr=row.sigma_runs,
                    reference=ref.value, reference_stderr=ref.sigma_runs,
                    direction=row.direction, tolerance=tol, unit=row.unit,
                    new_df=row.df_runs, reference_df=ref.df_runs), note=why)
            verdicts.append(paired)
    sample_refs = [refs[r.metric] for r in new_rows if r.metric in refs
                   and r.n_samples is not None and r.weights_sha256
                   and r.weights_sha256 == refs[r.metric].weights_sha256]
    if sample_refs and not reproducing:
        test, why = _samples_test(per_example, reference_side(sample_refs[0]),
                                  seed=int(result.get("seed") or 0))
        if test is not None:
            verdicts.append(test)
        elif why:
            warnings.append(why)
    if not reproducing:
        verdicts = _family(verdicts, refs, defined, alpha)
    seen = {r.metric for r in new_rows}
    for metric in sorted({r.metric for r in mine} - seen):
        ref = pick_reference(mine, metric, "")
        assert ref is not None
        verdicts.append(Verdict(metric=metric, status="missing", new=None, reference=ref.value,
                                worse_by=None, tolerance=0.0, se=0.0, direction=ref.direction,
                                unit=ref.unit))
    return CheckReport(tuple(verdicts), refs, tuple(warnings), alpha,
                       "reproduction" if reproducing else "statistical")


def _family(verdicts: list[Verdict], refs: Mapping[str, BoardRow],
            defined: Mapping[str, Definition], alpha: float) -> list[Verdict]:
    """Group the transforms with their metric, keep the tests that can alarm, run the
    weighted Holm procedure, and set each verdict's status, weight and detectable size."""
    present = {v.metric for v in verdicts if v.p_value is not None}
    leader: dict[str, str] = {}
    for v in verdicts:
        base = defined.get(v.metric)
        if base is not None and base.judged_with in present and v.p_value is not None:
            leader[v.metric] = base.judged_with
    candidates = [i for i, v in enumerate(verdicts)
                  if v.p_value is not None and v.metric not in leader]
    has_samples = any(verdicts[i].metric == SAMPLES for i in candidates)
    others = sum(1 for i in candidates if verdicts[i].metric != SAMPLES)

    def weight_of(v: Verdict) -> float:
        if v.metric == SAMPLES:
            return SAMPLES_WEIGHT if others else 1.0
        return (1.0 - SAMPLES_WEIGHT if has_samples else 1.0) / max(others, 1)

    family = []
    for i in candidates:
        v = verdicts[i]
        level = alpha * weight_of(v)
        ref = refs.get(v.metric)
        if v.metric != SAMPLES and ref is not None and v.new is not None and not _can_alarm(
                v, ref, defined.get(v.metric), alpha):
            verdicts[i] = replace(v, status="excluded", note=(
                f"cannot alarm: its whole range lies within {alpha:g}-level noise of the "
                "reference, so it stays out of the family"))
            continue
        family.append(i)
        verdicts[i] = replace(v, weight=weight_of(v), detectable=None if v.metric == SAMPLES
                              else max(v.tolerance, detectable(v.se, v.df, level)))
    rejected = holm([verdicts[i].p_value for i in family], alpha,  # type: ignore[misc]
                    [verdicts[i].weight for i in family])  # type: ignore[misc]
    for i, reject in zip(family, rejected, strict=True):
        v = verdicts[i]
        assert v.worse_by is not None
        failed = v.new is None or (reject and v.worse_by > v.tolerance)
        status = "regression" if failed else ("improved" if v.status == "improved" else "pass")
        verdicts[i] = replace(v, status=status)
    by_metric = {v.metric: v for v in verdicts}
    for i, v in enumerate(verdicts):
        if v.metric in leader:
            head = by_metric[leader[v.metric]]
            verdicts[i] = replace(v, status=head.status if head.status != "excluded" else "pass",
                                  judged_with=head.metric)
    return verdicts

