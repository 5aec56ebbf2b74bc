"""``gmbench leaderboard show``: a board as a wide table, one line per model and one column per
metric, sorted and with a Pareto front on request."""

from __future__ import annotations

from collections.abc import Sequence

from gmbench.errors import BoardError, did_you_mean
from gmbench.names import printable
from gmbench.present.compare import pareto_front
from gmbench.present.format import format_number
from gmbench.storage.leaderboard import BoardRow, identity_conflicts, latest_rows

__all__ = ["render_board"]


def render_board(rows: Sequence[BoardRow], *, sort: str | None = None,
                 pareto: tuple[str, str] | None = None) -> str:
    """The wide table: one line per model, one column per metric (``value ±95% half-width``).

    Args:
        rows: board rows (several datasets give one table each).
        sort: a metric; models are ordered best first in its direction (missing last).
        pareto: two metrics; models on their Pareto front are marked ``*``.
    """
    if not rows:
        return "(empty board)"
    chosen = latest_rows(rows)
    out = []
    known = sorted({r.metric for r in rows})
    for wanted in [m for m in (sort, *(pareto or ())) if m]:
        if wanted not in known:
            raise BoardError(f"Metric '{wanted}' is not on this board.{did_you_mean(wanted, known)}"
                             f" Metrics on the board: {', '.join(known)}.")
    for dataset in sorted({r.dataset for r in rows}):
        here = {k: r for k, r in chosen.items() if k[0] == dataset}
        models = sorted({k[1] for k in here})
        metrics = [m for m in known if any(k[2] == m for k in here)]
        cell = {(k[1], k[2]): r for k, r in here.items()}
        if sort:
            def key(model: str, cell: dict = cell) -> tuple[int, float, str]:
                r = cell.get((model, sort))
                if r is None or r.value is None:
                    return (1, 0.0, model)
                return (0, r.direction.badness(r.value), model)
            models.sort(key=key)
        front: set[str] = set()
        if pareto:
            m1, m2 = pareto
            pts: dict[str, tuple[float, float]] = {}
            for m in models:
                a, b = cell.get((m, m1)), cell.get((m, m2))
                if a is not None and b is not None and a.value is not None \
                        and b.value is not None:
                    pts[m] = (a.value, b.value)
            dirs = [next((r.direction for r in here.values() if r.metric == m), None)
                    for m in (m1, m2)]
            if dirs[0] is not None and dirs[1] is not None:  # both metrics on this dataset
                front = pareto_front(pts, [dirs[0], dirs[1]])
        arrows = {m: next(r.direction for r in here.values() if r.metric == m).arrow
                  for m in metrics}
        header = ["", "model", *[f"{arrows[m]}{m}" for m in metrics]]
        table = [header]
        for model in models:
            cells = ["*" if model in front else "", model]
            for m in metrics:
                r = cell.get((model, m))
                if r is None:
                    cells.append("")
                elif r.halfwidth is None:
                    cells.append(format_number(r.value))
                else:
                    cells.append(f"{format_number(r.value)} ±{r.halfwidth:.2g}")
            table.append(cells)
        table = [[printable(cell) for cell in row] for row in table]  # names from the file
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        out.append(f"{printable(dataset)}: {len(models)} model(s)"
                   + (f", sorted by {sort}" if sort else ""))
        for i, row in enumerate(table):
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                out.append("  ".join("-" * w for w in widths))
        notes = ["values ± 95% half-width; ↑ higher is better, ↓ lower is better, ◎ closest "
                 "to the metric's ideal is best; each cell is the model's most recent evaluation"]
        if pareto:
            notes.append(f"* on the Pareto front of {pareto[0]} and {pareto[1]}")
        out.append("; ".join(notes) + ".")
        out.append("")
    out += [f"warning: {printable(line)}" for line in identity_conflicts(rows)]
    return "\n".join(out).rstrip("\n")
