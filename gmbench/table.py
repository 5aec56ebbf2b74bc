"""The terminal table: each metric with its 95% interval, direction and sample size."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_number", "render_table"]

ARROWS = {True: "↑", False: "↓"}


def format_number(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.5g}"


def render_table(result: dict[str, Any]) -> str:
    """Render a ``results.json`` dictionary as aligned text."""
    model, data = result["model"], result["dataset"]
    lines = [f"gmbench: {model['name']} on {data['name']} (seed {result['seed']}, "
             f"dataset sha256 {data['sha256'][:12]}, model sha256 {model['sha256'][:12]})"]
    header = ("", "metric", "value", "95% CI", "n", "unit", "kind / space")
    rows = [header]
    for key, rec in result["metrics"].items():
        ci = f"[{format_number(rec['ci_low'])}, {format_number(rec['ci_high'])}]"
        where = rec.get("kind") or rec.get("feature_space") or ""
        if rec.get("kind") and rec.get("log_prob_space") == "dequantized":
            where += f" (dequantized, K={rec.get('dequant_samples')})"
        rows.append((ARROWS[bool(rec["higher_is_better"])], key, format_number(rec["value"]), ci,
                     str(rec["n"]), rec["unit"], where))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if result.get("skipped"):
        lines.append("skipped: " + "; ".join(f"{k} ({why})" for k, why in result["skipped"].items()))
    lines.append("↑ higher is better, ↓ lower is better; intervals are 95% (see ci_method in "
                 "results.json).")
    return "\n".join(lines)
