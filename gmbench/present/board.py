"""``gmbench leaderboard show``: a board as a table, one line per evaluated run of a model (each
seed and sample count on its own line) and one column per metric, in column groups that fit
the terminal, sorted and with a Pareto front on request."""

from __future__ import annotations

from collections.abc import Sequence

from gmbench.core.errors import BoardError, did_you_mean
from gmbench.core.names import printable
from gmbench.present.compare import pareto_front
from gmbench.present.format import WIDTH, align, column_format, fold, value_cell
from gmbench.storage.leaderboard import BoardRow, identity_conflicts

__all__ = ["render_board"]

Run = tuple[str, int, int | None]  # (model, seed, n_samples): one line


def _bound_metrics() -> set[str]:
    """Metrics whose value is a one-sided bound (printed ``≥ value``)."""
    from gmbench.metrics import METRICS

    return {m.key for m in METRICS.values() if m.interval == "bound"}


def _runs(rows: Sequence[BoardRow]) -> dict[Run, dict[str, BoardRow]]:
    """Per run (model, seed, sample count), each metric's most recent row."""
    out: dict[Run, dict[str, BoardRow]] = {}
    for row in sorted(rows, key=lambda r: r.date):
        out.setdefault((row.model, row.seed, row.n_samples), {})[row.metric] = row
    return out


def _groups(label_width: int, widths: list[int], width: int | None) -> list[list[int]]:
    """Metric column indices split into groups that fit ``width`` beside the labels."""
    if width is None:
        return [list(range(len(widths)))]
    groups: list[list[int]] = [[]]
    used = label_width
    for i, w in enumerate(widths):
        if groups[-1] and used + 2 + w > width:
            groups.append([])
            used = label_width
        groups[-1].append(i)
        used += 2 + w
    return groups


def render_board(rows: Sequence[BoardRow], *, sort: str | None = None,
                 pareto: tuple[str, str] | None = None, width: int | None = WIDTH) -> str:
    """The board as text: one line per run of a model, one column per metric
    (``value ±95% half-width``, one number format per column, ``≥ value`` for one-sided
    bounds).

    Args:
        rows: board rows (several datasets give one table each).
        sort: a metric; runs are ordered best first in its direction (missing last).
        pareto: two metrics; competitors on their Pareto front are marked ``*``.
        width: the widest line; metric columns that do not fit wrap into further tables
            (``None``: one table, however wide).
    """
    if not rows:
        return "(empty board)"
    out = []
    known = sorted({r.metric for r in rows})
    for wanted in [m for m in (sort, *(pareto or ())) if m]:
        if wanted not in known:
            raise BoardError(f"Metric '{wanted}' is not on this board.{did_you_mean(wanted, known)}"
                             f" Metrics on the board: {', '.join(known)}.")
    bounds = _bound_metrics()
    for dataset in sorted({r.dataset for r in rows}):
        here = [r for r in rows if r.dataset == dataset]
        runs = _runs(here)
        metrics = [m for m in known if any(r.metric == m for r in here)]
        references = {r.model: r.reference for r in here if r.reference}
        order = sorted(runs, key=lambda run: (run[0] in references, run[0], run[1],
                                               run[2] or 0))
        if sort:
            def key(run: Run, runs: dict = runs, references: dict = references
                    ) -> tuple[bool, int, float, str]:
                r = runs[run].get(sort)
                if r is None or r.value is None:
                    return (run[0] in references, 1, 0.0, run[0])
                return (run[0] in references, 0, r.direction.badness(r.value), run[0])
            order.sort(key=key)
        front: set[Run] = set()
        if pareto:
            m1, m2 = pareto
            pts: dict[Run, tuple[float, float]] = {}
            for run in order:
                a, b = runs[run].get(m1), runs[run].get(m2)
                if a is not None and b is not None and a.value is not None \
                        and b.value is not None:
                    pts[run] = (a.value, b.value)
            dirs = [next((r.direction for r in here if r.metric == m), None) for m in (m1, m2)]
            if dirs[0] is not None and dirs[1] is not None:  # both metrics on this dataset
                front = pareto_front(pts, [dirs[0], dirs[1]],
                                     references={run for run in pts if run[0] in references})
        arrows = {m: next(r.direction for r in here if r.metric == m).arrow for m in metrics}
        cells: dict[str, list[str]] = {}
        for m in metrics:
            column = [runs[run].get(m) for run in order]
            fmt = column_format([r.value for r in column if r is not None]
                                + [r.halfwidth for r in column
                                   if r is not None and r.halfwidth is not None and m not in bounds])
            cells[m] = [printable(f"{arrows[m]}{m}")] + [
                "" if r is None else value_cell(fmt, r.value, r.halfwidth, m in bounds)
                for r in column]
        labels = [["", "model", "seed", "samples"]] + [
            ["*" if run in front else "",
             printable(run[0]) + (" (ref)" if run[0] in references else ""),
             str(run[1]), "" if run[2] is None else str(run[2])] for run in order]
        label_width = sum(max(len(line[i]) for line in labels) for i in range(4)) + 2 * 3
        widths = [max(len(c) for c in cells[m]) for m in metrics]
        groups = _groups(label_width, widths, width)
        seeds = {run[1] for run in order}
        counts = {run[2] for run in order if run[2] is not None}
        out.append(f"{printable(dataset)}: {len({run[0] for run in order})} model(s), "
                   f"{len(order)} run(s)" + (f", sorted by {sort}" if sort else "")
                   + (f"; columns in {len(groups)} groups" if len(groups) > 1 else ""))
        for g, group in enumerate(groups):
            out += [""] * bool(g) + align([labels[i] + [cells[metrics[j]][i] for j in group]
                                           for i in range(len(labels))])
        notes = ["values ± 95% half-width (≥: a one-sided 95% bound; n/e: not estimable); "
                 "↑ higher is better, ↓ lower is better, ◎ closest to the metric's ideal is "
                 "best; each cell is the run's most recent evaluation of that metric"]
        if len(counts) > 1:
            notes.append("runs differ in their number of samples (" + ", ".join(
                str(c) for c in sorted(counts)) + "): FID, precision, recall and the other "
                "sample metrics move with it, so compare lines of equal `samples`")
        if len(seeds) > 1:
            notes.append("each seed of a model is its own line")
        if references:
            notes.append("(ref): reference models, shown for orientation and never ranked "
                         "best or on a Pareto front: " + "; ".join(
                             f"{printable(m)}, {printable(why)}"
                             for m, why in sorted(references.items())))
        if pareto:
            notes.append(f"* on the Pareto front of {pareto[0]} and {pareto[1]}")
        out += fold("; ".join(notes) + ".", width)
        out.append("")
    out += [f"warning: {printable(line)}" for line in identity_conflicts(rows)]
    return "\n".join(out).rstrip("\n")
