"""The terminal table: each metric with its 95% interval, direction and sample size, beside the
bundled baselines (their values ± 95% half-width) and the model's rank among them."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmbench.direction import Direction
from gmbench.names import printable
from gmbench.present.compare import Comparison, compare_with_baselines
from gmbench.present.format import feature_spaces, format_number, format_pm, where_measured
from gmbench.present.verdicts import memorization_line

__all__ = ["render_table"]

def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


WIDTH = 120  # the compact table fits a terminal this wide
BEST_CELL = 30


def _best_baseline(comp: Comparison) -> str:
    """``name value ±hw`` of the best comparable baseline for this metric."""
    best = comp.best()
    if best is None:
        return ""
    name, row = best
    cell = f"{name} {format_pm(row.value, row.halfwidth, digits=3)}"
    return cell if len(cell) <= BEST_CELL else cell[:BEST_CELL - 1] + "…"


def render_table(result: dict[str, Any], *, baselines: Sequence[Any] = (),
                 board: str | Path | None = None, wide: bool = False) -> str:
    """Render a ``results.json`` dictionary as aligned text, beside the baselines.

    The default table fits a 120-column terminal: each metric's value, 95% interval, the
    model's rank among itself and the baselines, and the best baseline; ``wide`` adds the
    sample size and unit and shows every baseline in its own column.

    Args:
        result: the run (``RunResult.to_dict()`` or a read ``results.json``).
        baselines: :class:`~gmbench.storage.leaderboard.BoardRow` rows of the bundled baselines
            on the same dataset (each baseline's most recent evaluation is shown).
        board: where the baselines came from (named in the footer; ``None``: not looked up).
        wide: every baseline in its own column.
    """
    model, data = result["model"], result["dataset"]
    lines = [f"gmbench: {printable(model['name'])} on {data['name']} (seed {result['seed']}, "
             f"dataset sha256 {data['sha256'][:12]}, model sha256 {model['sha256'][:12]})"]
    names, comparisons = compare_with_baselines(result, baselines)
    header = ["", "metric", "value", "95% CI"]
    header += ["n", "unit", "kind / space"] if wide else ["kind / space"]
    if names:
        header += ["rank", *names] if wide else ["rank", "best baseline"]
    rows = [header]
    any_mismatch = False
    for comp in comparisons:
        rec = comp.record
        ci = f"[{format_number(rec['ci_low'])}, {format_number(rec['ci_high'])}]"
        value = "not estimable" if rec.get("not_estimable") else format_number(rec["value"])
        row = [Direction.of(rec).arrow, comp.metric, value, ci]
        row += [str(rec["n"]), rec["unit"], where_measured(rec)] if wide else [where_measured(rec)[:18]]
        if names:
            row.append("" if comp.rank is None or comp.ranked < 2 else f"{comp.rank}/{comp.ranked}")
            any_mismatch |= bool(comp.mismatched)
            if not wide:
                row.append(_best_baseline(comp))
            for name in names if wide else ():
                r = comp.baselines.get(name)
                cell = "" if r is None else format_pm(r.value, r.halfwidth, digits=4)
                if name in comp.mismatched:
                    cell += " †"
                row.append(cell)
        rows.append(row)
    lines += _align([[printable(cell) for cell in row] for row in rows])  # board cells
    lines += filter(None, [memorization_line(result["metrics"])])
    for key, rec in result["metrics"].items():
        if rec.get("not_estimable"):
            lines.append(f"not estimable: {key}: {rec['not_estimable']}")
    if result.get("skipped"):
        lines.append("skipped: " + "; ".join(f"{k} ({why})" for k, why in result["skipped"].items()))
    lines.append("↑ higher is better, ↓ lower is better, ◎ closest to the metric's ideal is best "
                 "(ranked by the distance); intervals are 95% (see ci_method in results.json).")
    spaces = feature_spaces(result["metrics"])
    if spaces:
        lines.append("feature spaces: " + "; ".join(spaces) + ".")
    if names:
        lines.append(f"baselines from {board}: value ±95% half-width; rank among this model and "
                     "the baselines (1 = best)" + ("." if wide else "; --wide shows every "
                                                   "baseline.")
                     + (" † measured in another feature space or on another number of samples: not ranked." if any_mismatch
                        else ""))
        stale = sorted({r.dataset_sha256[:12] for r in baselines} - {data["sha256"][:12]})
        if stale:
            lines.append(f"warning: baselines were evaluated on dataset sha256 "
                         f"{', '.join(stale)}, not {data['sha256'][:12]}.")
    elif board is not None:
        lines.append(f"no baselines for {data['name']} (looked for {board}; set --boards DIR or "
                     "GMBENCH_BOARDS).")
    table_end = 2 + len(rows)  # the title, the header rule and the rows stay as they are
    notes = [textwrap.fill(line, width=WIDTH, subsequent_indent="  ", break_long_words=False,
                           break_on_hyphens=False) for line in lines[table_end:]]
    return "\n".join(lines[:table_end] + notes)
