"""The one-line verdicts printed for a run: each regression-gate verdict, and the memorization
flag under the table."""

from __future__ import annotations

from collections.abc import Mapping

from gmbench.estimators.copying import (
    COPY_QUANTILE,
    COPY_RATE_FLAG,
    CT_FLAG,
    GAP_FLAG,
    RATIO_FLAG,
)
from gmbench.estimators.text import VERBATIM_MARGIN
from gmbench.gate.check import POWER, SAMPLES, CheckReport, Verdict
from gmbench.present.format import format_number as f
from gmbench.storage.results import MetricRecord

__all__ = ["memorization_line", "summary_line", "text_scoring_line", "verdict_line"]


def verdict_line(v: Verdict) -> str:
    """``REGRESSION  ↓ fid  ...``: one metric's verdict with its numbers."""
    label = {"regression": "REGRESSION", "not reproduced": "NOT REPRODUCED"}.get(v.status,
                                                                                v.status)
    head = f"{label:<10}  {v.direction.arrow} {v.metric:<22}"
    if v.status == "new":
        return f"{head} {f(v.new)} (no reference on the board)"
    if v.status == "missing":
        return f"{head} reference {f(v.reference)}, not in the new results"
    if v.status == "not estimable":
        return f"{head} {v.note}"
    if v.new is None and v.status in ("reproduced", "not reproduced"):
        return f"{head} not finite, reference {f(v.reference)}"
    if v.new is None:
        return f"{head} new value is not finite (reference {f(v.reference)})"
    if v.metric == SAMPLES:
        p = "" if v.p_value is None else f"; p {v.p_value:.2g}"
        return f"{head} MMD^2 {f(v.new)}{p}: {v.note}"
    unit = f" {v.unit}" if v.unit else ""
    if v.status in ("reproduced", "not reproduced"):
        if v.status == "reproduced":
            return f"{head} {f(v.new)} = {f(v.reference)} (same seed, options, weights and " \
                   "platform)"
        return (f"{head} {f(v.new)} vs {f(v.reference)}: changed by "
                f"{f(abs(v.new - (v.reference or 0.0)))}{unit} although the seed, options, "
                "weights and platform are the same; re-record the reference if this is meant")
    assert v.worse_by is not None
    toward = f" (from the ideal {v.direction.ideal:g})" if v.direction.targeted else ""
    change = (f"worse by {f(v.worse_by)}{unit}{toward}" if v.worse_by > 0 else
              f"better by {f(-v.worse_by)}{unit}{toward}" if v.worse_by < 0 else
              "unchanged")
    if v.judged_with is not None:
        return f"{head} {f(v.new)} vs {f(v.reference)}: {change}; judged with {v.judged_with}"
    how = f"{v.paired}; " if v.paired else ""
    p = "" if v.p_value is None else f"p {v.p_value:.2g}; "
    detect = ("" if v.detectable is None
              else f"detects {f(v.detectable)}{unit} at {POWER:.0%} power")
    note = f" ({v.note})" if v.note else ""
    return f"{head} {f(v.new)} vs {f(v.reference)}: {change}; {how}{p}{detect}{note}"


def summary_line(report: CheckReport, *, results: object, model: str, board: object) -> str:
    """The last line of ``gmbench check``: how many failed, how they were judged, ok/FAIL."""
    bad = report.regressions
    missing = sum(v.status == "missing" for v in bad)
    changed = sum(v.status == "not reproduced" for v in bad)
    parts = [f"{len(bad) - missing - changed} regression(s)"]
    if missing:
        parts.append(f"{missing} gated metric(s) missing")
    if changed:
        parts.append(f"{changed} not reproduced")
    if report.mode == "reproduction":
        how = ("the same seed, options, weights and platform as the reference: every number "
               "must reproduce")
    else:
        how = (f"Holm's procedure over {report.judged} test(s), family-wise false-alarm rate "
               f"<= {report.alpha:g}")
    return (f"{', '.join(parts)} in {len(report.verdicts)} metric(s) of {results} against "
            f"'{model}' on {board} ({how})" + (": FAIL" if bad else ": ok"))


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.3g}"


def memorization_line(metrics: Mapping[str, MetricRecord]) -> str | None:
    """The memorization line printed under the table, or ``None`` if nothing to say.

    Flagged when any of: ``copy_rate`` above :data:`COPY_RATE_FLAG` with its interval above it
    too; ``verbatim_copy_rate`` (text) above held-out real text's rate plus
    :data:`~gmbench.estimators.text.VERBATIM_MARGIN`, its whole interval; ``data_copying_ct`` below :data:`CT_FLAG`; ``nn_distance_ratio`` below
    :data:`RATIO_FLAG` with its interval below it too; ``generalization_gap`` above
    :data:`GAP_FLAG` of ``nll`` with its interval above 0. ``generalization_gap`` is shown
    whenever it was measured.

    Args:
        metrics: a run's metric records (:func:`gmbench.storage.results.records`).
    """
    def get(key: str) -> tuple[float, float | None, float | None] | None:
        """The value and interval of a measured metric, else ``None``."""
        rec = metrics.get(key)
        if rec is None or rec.value is None:
            return None
        return float(rec.value), rec.ci_low, rec.ci_high

    reasons, fine = [], []
    copy = get("copy_rate")
    if copy is not None:
        value, low, _ = copy
        text = f"copy_rate {_fmt(value)}"
        if value > COPY_RATE_FLAG and (low or 0) > COPY_RATE_FLAG:
            reasons.append(f"{text} > {COPY_RATE_FLAG} (real held-out data: ~{COPY_QUANTILE})")
        else:
            fine.append(text)
    verbatim = get("verbatim_copy_rate")
    if verbatim is not None:
        value, low, _ = verbatim
        real = float(metrics["verbatim_copy_rate"].detail("reference_rate", 0.0))
        text = f"verbatim_copy_rate {_fmt(value)}"
        if (low or 0) > real + VERBATIM_MARGIN:
            reasons.append(f"{text} > held-out real text's {_fmt(real)} + {VERBATIM_MARGIN:g}")
        else:
            fine.append(text)
    ct = get("data_copying_ct")
    if ct is not None:
        text = f"data_copying_ct {_fmt(ct[0])}"
        (reasons if ct[0] < CT_FLAG else fine).append(
            f"{text} < {CT_FLAG:g}" if ct[0] < CT_FLAG else text)
    ratio = get("nn_distance_ratio")
    if ratio is not None:
        value, _, high = ratio
        text = f"nn_distance_ratio {_fmt(value)}"
        if value < RATIO_FLAG and (high is None or high < RATIO_FLAG):
            reasons.append(f"{text} < {RATIO_FLAG}")
        else:
            fine.append(text)
    gap, nll = get("generalization_gap"), get("nll")
    gap_text = ""
    if gap is not None:
        value, low, high = gap
        gap_text = f"generalization_gap {_fmt(value)} nats"
        if low is not None and high is not None:
            gap_text += f" [{_fmt(low)}, {_fmt(high)}]"
        else:
            gap_text += " (no interval: too few train examples scored)"
        if nll is not None and value > GAP_FLAG * abs(nll[0]) and (low or 0) > 0:
            reasons.append(f"{gap_text} > {GAP_FLAG:.0%} of nll")
            gap_text = ""
    if not reasons and not fine and not gap_text:
        return None
    if reasons:
        line = "memorization: flagged (" + "; ".join(reasons) + ")"
    else:
        line = "memorization: not flagged (" + "; ".join(fine or ["no sample-based check"]) + ")"
    if gap_text:
        line += f"; {gap_text}"
    return line


def text_scoring_line(measured: Mapping[str, MetricRecord]) -> str | None:
    """How a text's likelihood was scored (windows, tokens, bytes, blocks), or ``None``."""
    rec = measured.get("bits_per_byte")
    if rec is None or rec.detail("scoring") is None:
        return None
    if rec.detail("scoring") == "rolling windows":
        how = (f"rolling windows of {rec.detail('window')} tokens (context "
               f"{rec.detail('context')}, stride {rec.detail('stride')}), tokenizer "
               f"{rec.detail('tokenizer')}; {rec.detail('tokens_scored'):,} tokens in "
               f"{rec.detail('windows'):,} windows")
    else:
        how = rec.detail("scoring")
    skipped = rec.detail("bytes_not_scored") or 0
    return (f"text scored by {how}; {rec.detail('bytes_scored'):,} bytes"
            + (f" ({skipped:,} not scored)" if skipped else "")
            + f"; intervals from {rec.detail('blocks')} blocks of the test documents")
