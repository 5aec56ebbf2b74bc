"""Numbers as text: the one way gmbench prints a value and a value with its 95% half-width."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SHA", "feature_spaces", "format_number", "format_pm", "where_measured"]


def format_number(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.5g}"


def format_pm(value: float | None, halfwidth: float | None, *, digits: int = 5) -> str:
    """``"12.3 ±0.45"`` (value ± 95% half-width, two significant digits), or the value alone."""
    if value is None:
        return "-"
    text = format_number(value) if digits == 5 else (
        f"{value:.{digits - 1}e}" if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3)
        else f"{value:.{digits}g}")
    return text if halfwidth is None else f"{text} ±{halfwidth:.2g}"


SHA = re.compile(r" \(sha256 ([0-9a-f]+)\)$")


def where_measured(rec: Mapping[str, Any]) -> str:
    """A metric's likelihood kind, else its feature space's name (without the weights' hash,
    which :func:`feature_spaces` lists once)."""
    where = rec.get("kind") or SHA.sub("", rec.get("feature_space") or "")
    if rec.get("kind") and rec.get("log_prob_space") == "dequantized":
        where += f" (dequantized, K={rec.get('dequant_samples')})"
    return str(where)


def feature_spaces(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The feature spaces (with their weights' hashes) the sample metrics were measured in."""
    return sorted({str(rec.get("feature_space")) for rec in metrics.values()
                   if not rec.get("kind") and SHA.search(str(rec.get("feature_space") or ""))})
