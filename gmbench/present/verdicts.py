"""The one-line verdicts printed for a run: each regression-gate verdict, and the memorization
flag under the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gmbench.estimators.copying import (
    COPY_QUANTILE,
    COPY_RATE_FLAG,
    CT_FLAG,
    GAP_FLAG,
    RATIO_FLAG,
)
from gmbench.present.format import format_number as f
from gmbench.storage.check import Verdict

__all__ = ["memorization_line", "verdict_line"]


def verdict_line(v: Verdict) -> str:
    """``REGRESSION  ↓ fid  ...``: one metric's verdict with its numbers."""
    label = {"regression": "REGRESSION"}.get(v.status, v.status)
    head = f"{label:<10}  {v.direction.arrow} {v.metric:<22}"
    if v.status == "new":
        return f"{head} {f(v.new)} (no reference on the board)"
    if v.status == "missing":
        return f"{head} reference {f(v.reference)}, not in the new results"
    if v.new is None:
        return f"{head} new value is not finite (reference {f(v.reference)})"
    assert v.worse_by is not None
    unit = f" {v.unit}" if v.unit else ""
    toward = f" (from the ideal {v.direction.ideal:g})" if v.direction.targeted else ""
    change = (f"worse by {f(v.worse_by)}{unit}{toward}" if v.worse_by > 0 else
              f"better by {f(-v.worse_by)}{unit}{toward}" if v.worse_by < 0 else
              "unchanged")
    p = "" if v.p_value is None else f"p {v.p_value:.2g}; "
    detect = ("" if v.detectable is None
              else f"detects a worsening of {f(v.detectable)}{unit}")
    return f"{head} {f(v.new)} vs {f(v.reference)}: {change}; {p}{detect}"


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.3g}"


def memorization_line(metrics: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The memorization line printed under the table, or ``None`` if nothing to say.

    Flagged when any of: ``copy_rate`` above :data:`COPY_RATE_FLAG` with its interval above it
    too; ``data_copying_ct`` below :data:`CT_FLAG`; ``nn_distance_ratio`` below
    :data:`RATIO_FLAG` with its interval below it too; ``generalization_gap`` above
    :data:`GAP_FLAG` of ``nll`` with its interval above 0. ``generalization_gap`` is shown
    whenever it was measured.

    Args:
        metrics: the ``"metrics"`` mapping of a ``results.json`` dictionary.
    """
    def get(key: str) -> Mapping[str, Any] | None:
        rec = metrics.get(key)
        return rec if rec is not None and rec.get("value") is not None else None

    reasons, fine = [], []
    rec = get("copy_rate")
    if rec is not None:
        text = f"copy_rate {_fmt(rec['value'])}"
        if rec["value"] > COPY_RATE_FLAG and (rec.get("ci_low") or 0) > COPY_RATE_FLAG:
            reasons.append(f"{text} > {COPY_RATE_FLAG} (real held-out data: ~{COPY_QUANTILE})")
        else:
            fine.append(text)
    rec = get("data_copying_ct")
    if rec is not None:
        text = f"data_copying_ct {_fmt(rec['value'])}"
        (reasons if rec["value"] < CT_FLAG else fine).append(
            f"{text} < {CT_FLAG:g}" if rec["value"] < CT_FLAG else text)
    rec = get("nn_distance_ratio")
    if rec is not None:
        text = f"nn_distance_ratio {_fmt(rec['value'])}"
        high = rec.get("ci_high")
        if rec["value"] < RATIO_FLAG and (high is None or high < RATIO_FLAG):
            reasons.append(f"{text} < {RATIO_FLAG}")
        else:
            fine.append(text)
    gap, nll = get("generalization_gap"), get("nll")
    gap_text = ""
    if gap is not None:
        gap_text = f"generalization_gap {_fmt(gap['value'])} nats"
        if gap.get("ci_low") is not None and gap.get("ci_high") is not None:
            gap_text += f" [{_fmt(gap['ci_low'])}, {_fmt(gap['ci_high'])}]"
        else:
            gap_text += " (no interval: too few train examples scored)"
        if (nll is not None and gap["value"] > GAP_FLAG * abs(nll["value"])
                and (gap.get("ci_low") or 0) > 0):
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
