"""Numbers as text: the one way gmbench prints a value and a value with its 95% half-width."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gmbench.storage.results import MetricRecord

__all__ = ["SHA", "WIDTH", "ColumnFormat", "align", "column_format", "feature_spaces", "fold",
           "format_number", "format_pm", "value_cell", "where_measured"]

WIDTH = 120  # every table and note gmbench prints fits a terminal this wide


def fold(text: str, width: int | None = WIDTH, *, indent: str = "") -> list[str]:
    """``text`` as lines of at most ``width`` characters, continuation lines indented two
    spaces more than ``indent`` (words and paths are never broken); ``None``: one line."""
    if width is None:
        return [indent + text]
    return textwrap.wrap(text, width=width, initial_indent=indent,
                         subsequent_indent=indent + "  ", break_long_words=False,
                         break_on_hyphens=False)


def align(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """``rows`` as left-aligned columns two spaces apart, a rule of dashes under the first
    (the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     .rstrip())
        if i == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return lines


def format_number(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.5g}"


@dataclass(frozen=True)
class ColumnFormat:
    """One number format for a column of values: fixed decimals, or scientific notation for
    columns whose magnitudes call for it. ``value`` prints a value, ``spread`` a half-width
    beside it (two significant digits in scientific columns)."""

    decimals: int | None  # None: scientific

    def value(self, x: float | None) -> str:
        if x is None or not math.isfinite(x):
            return "-"
        if self.decimals is None:
            return f"{x:.3e}"
        text = f"{x:.{self.decimals}f}"
        return text[1:] if text in ("-0", "-0." + "0" * self.decimals) else text

    def spread(self, x: float) -> str:
        if self.decimals is None:
            return f"{x:.1e}"
        return f"{x:.{self.decimals}f}"


def column_format(values: Sequence[float | None], *, digits: int = 5) -> ColumnFormat:
    """The format for a column: ``digits`` significant digits of its largest magnitude, in
    fixed decimals (at most 6), or scientific where the largest is at least 1e5 or below
    1e-3."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return ColumnFormat(decimals=2)
    top = max(finite)
    if top >= 1e5 or top < 1e-3:
        return ColumnFormat(decimals=None)
    return ColumnFormat(decimals=max(0, min(6, digits - 1 - math.floor(math.log10(top)))))


def value_cell(fmt: ColumnFormat, value: float | None, halfwidth: float | None, bound: bool
               ) -> str:
    """``value ±half-width`` in a column's format, ``≥value`` for a one-sided bound, ``n/e``
    for a value that could not be estimated."""
    if value is None:
        return "n/e"
    if bound:
        return f"≥{fmt.value(value)}"
    return fmt.value(value) if halfwidth is None else f"{fmt.value(value)} ±{fmt.spread(halfwidth)}"


def format_pm(value: float | None, halfwidth: float | None) -> str:
    """``"12.3 ±0.45"`` (value ± 95% half-width, two significant digits), or the value alone."""
    if value is None:
        return "-"
    text = format_number(value)
    return text if halfwidth is None else f"{text} ±{halfwidth:.2g}"


SHA = re.compile(r" \(sha256 ([0-9a-f]+)\)$")


def where_measured(rec: MetricRecord) -> str:
    """A metric's likelihood kind, else its feature space's name (without the weights' hash,
    which :func:`feature_spaces` lists once)."""
    where = rec.kind or SHA.sub("", rec.feature_space)
    if rec.kind and rec.detail("log_prob_space") == "dequantized":
        where += f" (dequantized, K={rec.detail('dequant_samples')})"
    return str(where)


def feature_spaces(metrics: Mapping[str, MetricRecord]) -> list[str]:
    """The feature spaces (with their weights' hashes) the sample metrics were measured in."""
    return sorted({rec.feature_space for rec in metrics.values()
                   if not rec.kind and SHA.search(rec.feature_space)})
