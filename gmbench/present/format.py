"""Numbers as text: the one way gmbench prints a value and a value with its 95% half-width."""

from __future__ import annotations

import math

__all__ = ["format_number", "format_pm"]


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
