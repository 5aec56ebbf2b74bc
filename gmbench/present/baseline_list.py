"""``gmbench baselines [--dataset NAME]``: the bundled baselines and their recorded results.

The baselines are model files in ``baselines/`` of the source tree (SPEC section 8); their
results are the rows of ``leaderboards/<dataset>.csv``, written by ``python -m
baselines.record --dataset NAME`` from ``gmbench evaluate`` runs. This module only reads:
the family table of the ``baselines`` package and the boards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gmbench.errors import DatasetError, did_you_mean
from gmbench.storage.leaderboard import BoardRow, baseline_rows, latest_rows

__all__ = ["HEADLINE_METRICS", "baseline_table", "bundled_datasets", "bundled_families",
           "cmd_baselines",
           "render_baselines"]

# the columns shown, in order, where a board has them
HEADLINE_METRICS = ("bits_per_dim", "cross_entropy", "nll_train", "kl_exact", "fid", "precision",
                    "recall", "copy_rate", "cas", "reconstruction_error")


def _families() -> dict[str, tuple[tuple[str, ...], str]]:
    """Bundled baselines: name -> (datasets, description); empty without the package."""
    try:
        from gmbench_baselines import BASELINES
    except ImportError:  # gmbench installed without its baselines
        return {}
    return {b.name: (b.datasets, b.description) for b in BASELINES.values()}


def _cell(row: BoardRow | None) -> str:
    from gmbench.present.format import format_number

    if row is None or row.value is None:
        return ""
    hw = row.halfwidth
    return format_number(row.value) + (f" ±{hw:.2g}" if hw is not None else "")


def baseline_table(dataset: str, *, boards: str | None = None
                   ) -> tuple[list[list[str]], Path | None]:
    """Rows ``[family, kind, metric cells..., description]`` (first row: header) and the
    board read (``None`` when none was found)."""
    families = {f: d for f, (ds, d) in _families().items() if dataset in ds}
    rows, path = baseline_rows(dataset, boards=boards)
    latest = latest_rows(rows)
    on_board = {m for (_, _, m) in latest}
    metrics = [m for m in HEADLINE_METRICS if m in on_board]
    models = list(families) + sorted({m for (_, m, _) in latest} - set(families))
    table = [["baseline", "kind", *metrics, "what it is"]]
    for model in models:
        cells = {m: latest.get((dataset, model, m)) for m in metrics}
        mine = [r for r in latest.values() if r.model == model]
        kinds = {r.kind for r in mine if r.kind}
        kind = "/".join(sorted(kinds)) or ("samples" if mine else "not recorded")
        table.append([model, kind,
                      *[_cell(cells[m]) for m in metrics],
                      families.get(model, "(on the board only)")])
    return table, path if rows else None


def render_baselines(datasets: Sequence[str], *, boards: str | None = None) -> str:
    """The text printed by ``gmbench baselines``: one table per dataset."""
    out = []
    for dataset in datasets:
        table, path = baseline_table(dataset, boards=boards)
        if len(table) == 1:
            continue
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
        out.append(f"{dataset}" + (f"  (results from {path})" if path else
                                   "  (no recorded results: run `python -m "
                                   "gmbench_baselines.training.record --dataset "
                                   f"{dataset}`)"))
        for i, row in enumerate(table):
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                       + "  " + row[-1])
            if i == 0:
                out.append("  " + "  ".join("-" * w for w in widths))
        out.append("")
    out.append("value ±95% half-width of the recorded run; evaluate one yourself with "
               "`gmbench evaluate baselines/<baseline>.py --dataset NAME`.")
    return "\n".join(out)


def bundled_families(dataset: str | None = None) -> list[str]:
    """The bundled baseline families, of ``dataset`` or of every dataset."""
    return [f for f, (ds, _) in _families().items() if dataset is None or dataset in ds]


def bundled_datasets() -> list[str]:
    """Every dataset some baseline is bundled for, in first-seen order."""
    seen: dict[str, None] = {}
    for datasets, _ in _families().values():
        seen.update(dict.fromkeys(datasets))
    return list(seen)


def cmd_baselines(dataset: str | None, *, boards: str | None = None) -> str:
    """What ``gmbench baselines [--dataset NAME]`` prints; unknown names get a clear error."""
    known = bundled_datasets()
    if dataset is not None and dataset not in known:
        raise DatasetError(f"No bundled baselines for dataset '{dataset}'."
                           f"{did_you_mean(dataset, known)} Baselines exist for: "
                           f"{', '.join(known)}.")
    return render_baselines([dataset] if dataset else known, boards=boards)
