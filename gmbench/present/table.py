"""The terminal table: each metric with its 95% interval and direction, beside the bundled
baselines (their values ± 95% half-width) and the model's rank among them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gmbench.core.direction import Direction
from gmbench.core.names import printable
from gmbench.present.compare import Comparison, compare_with_baselines
from gmbench.present.format import (
    ColumnFormat,
    align,
    column_format,
    feature_spaces,
    fold,
    value_cell,
    where_measured,
)
from gmbench.present.verdicts import memorization_line, text_scoring_line
from gmbench.storage.leaderboard import BoardRow
from gmbench.storage.results import MetricRecord, records

__all__ = ["render_table"]


SKIPPED_LISTED = 8  # skipped metrics named per reason; more are counted


def _is_bound(rec: MetricRecord) -> bool:
    return rec.interval_covers == "bound"


def _row_format(comp: Comparison, shown: Iterable[BoardRow]) -> ColumnFormat:
    """One number format for a metric's row: its value, interval and the baselines shown."""
    rec = comp.record
    numbers = [rec.value, rec.ci_low, rec.ci_high]
    numbers += [r.value for r in shown]
    return column_format([x for x in numbers if isinstance(x, (int, float))])


def _where_note(metrics: Mapping[str, MetricRecord]) -> str:
    """Where each metric was measured (a likelihood's kind, a feature space), grouped."""
    groups: dict[str, list[str]] = {}
    for key, rec in metrics.items():
        groups.setdefault(where_measured(rec), []).append(key)
    if len(groups) <= 1:
        return f"measured in: {next(iter(groups), '')}." if groups else ""
    common = Counter({w: len(k) for w, k in groups.items()}).most_common(1)[0][0]
    parts = [f"{', '.join(keys)}: {where}" for where, keys in groups.items() if where != common]
    return "measured in: " + "; ".join(parts) + f"; the others: {common}."


def _unranked_notes(comparisons: Sequence[Comparison]) -> list[str]:
    """Why metrics have no rank, in plain words, one note per reason."""
    by_reason: dict[str, list[Comparison]] = {}
    for comp in comparisons:
        reason = comp.unranked_reason
        if reason and comp.baselines:
            by_reason.setdefault(reason, []).append(comp)
    notes = []
    for reason, comps in by_reason.items():
        note = f"not ranked: {', '.join(c.metric for c in comps)}: {reason}"
        counts = comps[0].other_sample_counts
        if counts and "feature space" not in reason and "protocol" not in reason:
            note += f". Re-run with --n-samples {max(counts)} to compare"
        if "protocol" in reason:
            note += (". The metric's definition changed since (see the changelog): "
                     "re-evaluate the baselines with this gmbench to compare")
        notes.append(note + ".")
    return notes + _other_protocol_notes(comparisons)


def _other_protocol_notes(comparisons: Sequence[Comparison]) -> list[str]:
    """The baselines left out of a rank that others make because their rows are of another
    protocol version of the metric (a rank against none is explained by
    :func:`_unranked_notes`)."""
    left_out = [f"{name}'s {comp.metric} (protocol {comp.baselines[name].protocol}; this run: "
                f"{comp.record.protocol})"
                for comp in comparisons if not comp.unranked_reason
                for name in sorted(comp.other_protocol - comp.references)]
    if not left_out:
        return []
    return [f"not ranked against: {', '.join(left_out)}: measured under another protocol "
            "version of the metric, whose definition changed since (see the changelog); "
            "re-evaluate them with this gmbench to compare."]


def render_table(result: dict[str, Any], *, baselines: Sequence[Any] = (),
                 board: str | Path | None = None, wide: bool = False) -> str:
    """Render a ``results.json`` dictionary as aligned text, beside the baselines.

    The default table fits a 120-column terminal: each metric's value, 95% interval, the
    model's rank among itself and the competing baselines, and the best of them; a one-sided
    bound prints as ``≥ value``; each row has one number format. ``wide`` adds the sample
    size, unit and where each metric was measured, and shows every baseline in its own column.

    Args:
        result: the run (a ``results.json`` document).
        baselines: :class:`~gmbench.storage.leaderboard.BoardRow` rows of the bundled baselines
            on the same dataset (each baseline's most recent evaluation is shown).
        board: where the baselines came from (named in the notes; ``None``: not looked up).
        wide: every baseline in its own column.
    """
    model, data = result["model"], result["dataset"]
    lines = [f"gmbench: {printable(model['name'])} on {printable(data['name'])} (seed "
             f"{result['seed']}, dataset sha256 {data['sha256'][:12]}, model sha256 "
             f"{model['sha256'][:12]})"]
    names, comparisons = compare_with_baselines(result, baselines)
    header = ["", "metric", "value", "95% CI"]
    header += ["n", "unit", "kind / space"] if wide else []
    if names:
        header += ["rank", *names] if wide else ["rank", "best baseline"]
    rows = [header]
    any_mismatch = False
    for comp in comparisons:
        rec = comp.record
        best = comp.best()
        fmt = _row_format(comp, comp.baselines.values() if wide else [b[1] for b in [best] if b])
        bound = _is_bound(rec)
        ci = ("one-sided" if bound else
              f"[{fmt.value(rec.ci_low)}, {fmt.value(rec.ci_high)}]")
        value = ("not estimable" if rec.not_estimable else value_cell(fmt, rec.value, None, bound))
        row = [Direction.of(rec).arrow, comp.metric, value, ci]
        row += [str(rec.n), rec.unit, where_measured(rec)] if wide else []
        if names:
            row.append("" if comp.rank is None or comp.ranked < 2 else f"{comp.rank}/{comp.ranked}")
            any_mismatch |= bool(comp.mismatched)
            if not wide:
                row.append("" if best is None else
                           f"{best[0]} {value_cell(fmt, best[1].value, best[1].halfwidth, bound)}")
            for name in names if wide else ():
                r = comp.baselines.get(name)
                cell = "" if r is None else value_cell(fmt, r.value, r.halfwidth, bound)
                if name in comp.mismatched:
                    cell += " †"
                if name in comp.references and r is not None:
                    cell += " (ref)"
                row.append(cell)
        rows.append(row)
    lines += align([[printable(cell) for cell in row] for row in rows])  # board cells
    measured = records(result)
    lines += filter(None, [text_scoring_line(measured), memorization_line(measured)])
    for key, rec in measured.items():
        if rec.not_estimable:
            lines.append(f"not estimable: {key}: {rec.not_estimable}")
    if result.get("skipped"):
        by_reason: dict[str, list[str]] = {}
        for key, why in result["skipped"].items():
            by_reason.setdefault(str(why), []).append(key)
        lines.append("skipped: " + "; ".join(
            f"{', '.join(keys)} ({why})" if len(keys) <= SKIPPED_LISTED else
            f"{len(keys)} metrics ({why}; named in results.json)" for why, keys in by_reason.items()))
    lines.append("↑ higher is better, ↓ lower is better, ◎ closest to the metric's ideal is best "
                 "(ranked by the distance); intervals are 95% (see ci_method in results.json); "
                 "≥: a one-sided 95% bound.")
    if not wide:
        lines.append(_where_note(measured))
    spaces = feature_spaces(measured)
    if spaces:
        lines.append("feature spaces: " + "; ".join(spaces) + ".")
    if names:
        refs = sorted({n for c in comparisons for n in c.references})
        lines.append(f"baselines from {board}: value ±95% half-width; rank among this model and "
                     "the competing baselines (1 = best)"
                     + (f"; reference models ({', '.join(refs)}) are not ranked against"
                        if refs else "")
                     + ("." if wide else "; --wide shows every baseline.")
                     + (" † measured in another feature space, on another number of "
                        "samples or under another protocol version of the metric: not "
                        "ranked." if any_mismatch and wide else ""))
        lines += _unranked_notes(comparisons)
        stale = sorted({r.dataset_sha256[:12] for r in baselines} - {data["sha256"][:12]})
        if stale:
            lines.append(f"warning: baselines were evaluated on dataset sha256 "
                         f"{', '.join(stale)}, not {data['sha256'][:12]}.")
    elif board is not None:
        lines.append(f"no baselines for {printable(data['name'])} (looked for {board}; set "
                     "--boards DIR or GMBENCH_BOARDS).")
    table_end = 2 + len(rows)  # the title, the header rule and the rows stay as they are
    notes = ["\n".join(fold(line)) for line in lines[table_end:] if line]
    return "\n".join(lines[:table_end] + notes)
