"""``gmbench baselines [--dataset NAME]``: the bundled baselines and their recorded results.

The baselines are model files in ``baselines/`` of the source tree (``docs/CONTRACT.md``,
section 8); their results are the rows of ``leaderboards/<dataset>.csv``, written by
``python -m baselines.record --dataset NAME`` from ``gmbench evaluate`` runs. This module only presents
what :mod:`gmbench.models.bundled` and the boards hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gmbench.core.errors import DatasetError, did_you_mean
from gmbench.models.bundled import bundled_datasets
from gmbench.models.bundled import families as bundled
from gmbench.present.format import WIDTH, ColumnFormat, align, column_format, fold
from gmbench.storage.leaderboard import BoardRow, baseline_rows, latest_rows

__all__ = ["HEADLINE_METRICS", "baseline_table", "cmd_baselines", "render_baselines"]

# the columns shown, in order, where a board has them
HEADLINE_METRICS = ("bits_per_dim", "cross_entropy", "nll_train", "kl_exact", "fid", "precision",
                    "recall", "copy_rate", "cas", "reconstruction_error")


def _cell(row: BoardRow | None, fmt: ColumnFormat) -> str:
    if row is None or row.value is None:
        return ""
    hw = row.halfwidth
    return fmt.value(row.value) + (f" ±{fmt.spread(hw)}" if hw is not None else "")


def baseline_table(dataset: str, *, boards: str | None = None
                   ) -> tuple[list[list[str]], Path | None]:
    """Rows ``[family, kind, metric cells..., description]`` (first row: header) and the
    board read (``None`` when none was found)."""
    families = {f: d for f, (ds, d) in bundled().items() if dataset in ds}
    rows, path = baseline_rows(dataset, boards=boards)
    latest = latest_rows(rows)
    on_board = {m for (_, _, m) in latest}
    metrics = [m for m in HEADLINE_METRICS if m in on_board]
    models = list(families) + sorted({m for (_, m, _) in latest} - set(families))
    formats = {m: column_format(
        [r.value for k, r in latest.items() if k[2] == m and k[0] == dataset]
        + [r.halfwidth for k, r in latest.items() if k[2] == m and k[0] == dataset])
        for m in metrics}
    table = [["baseline", "kind", *metrics, "what it is"]]
    for model in models:
        cells = {m: latest.get((dataset, model, m)) for m in metrics}
        mine = [r for r in latest.values() if r.model == model]
        kinds = {r.kind for r in mine if r.kind}
        kind = "/".join(sorted(kinds)) or ("samples" if mine else "not recorded")
        table.append([model, kind,
                      *[_cell(cells[m], formats[m]) for m in metrics],
                      families.get(model, "(on the board only)")])
    return table, path if rows else None


def render_baselines(datasets: Sequence[str], *, boards: str | None = None) -> str:
    """The text printed by ``gmbench baselines``: one table per dataset."""
    out = []
    for dataset in datasets:
        table, path = baseline_table(dataset, boards=boards)
        if len(table) == 1:
            continue
        # the metric columns that fit beside the names, in HEADLINE_METRICS order
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
        keep, used = [0, 1], 2 + widths[0] + 2 + widths[1]
        for i in range(2, len(widths)):
            if used + 2 + widths[i] <= WIDTH:
                keep.append(i)
                used += 2 + widths[i]
        out.append(f"{dataset}" + (f"  (results from {path})" if path else
                                   "  (no recorded results: run `python -m "
                                   "gmbench_baselines.training.record --dataset "
                                   f"{dataset}`)"))
        out += align([[row[j] for j in keep] for row in table], indent="  ")
        out.append("")
        for row in table[1:]:
            out += fold(f"{row[0]}: {row[-1]}", indent="  ")
        out.append("")
    out += fold("value ±95% half-width of the recorded run (`gmbench leaderboard show --board "
                "BOARD` for every metric); evaluate one yourself with `gmbench evaluate "
                "baselines/<baseline>.py --dataset NAME`.")
    return "\n".join(out)


def cmd_baselines(dataset: str | None, *, boards: str | None = None) -> str:
    """What ``gmbench baselines [--dataset NAME]`` prints; unknown names get a clear error."""
    known = bundled_datasets()
    if dataset is not None and dataset not in known:
        raise DatasetError(f"No bundled baselines for dataset '{dataset}'."
                           f"{did_you_mean(dataset, known)} Baselines exist for: "
                           f"{', '.join(known)}.")
    return render_baselines([dataset] if dataset else known, boards=boards)
