"""A run's results as the Python API returns them: the typed metric records, the
``results.json`` document, the per-example values and the artifacts the pictures are drawn
from; written with :meth:`Results.save`, shown with :meth:`Results.table`, judged with
:meth:`Results.check`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gmbench.run.outputs import Artifacts
from gmbench.run.request import RunRequest
from gmbench.storage.per_example import PerExample
from gmbench.storage.results import MetricRecord, records

if TYPE_CHECKING:
    import pandas

    from gmbench.gate.check import CheckReport
    from gmbench.storage.leaderboard import BoardRow

__all__ = ["Results", "get_dataset_info"]


@dataclass(frozen=True)
class Results:
    """The outcome of one evaluation: typed metric records, the ``results.json`` document,
    and the artifacts its pictures are drawn from."""

    document: Mapping[str, Any]
    artifacts: Artifacts = field(default_factory=Artifacts, repr=False)
    per_example: PerExample | None = field(default=None, repr=False)

    metrics: dict[str, MetricRecord] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # the records, parsed once
        object.__setattr__(self, "metrics", records(self.document))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> tuple[Results, str | None]:
        """A ``results.json`` written by ``gmbench evaluate`` with the per-example values
        beside it, and why they are not used (``None``: used, or none kept)."""
        from gmbench.storage.per_example import beside
        from gmbench.storage.results import read_results

        document = read_results(Path(path))
        per_example, problem = beside(path, document)
        return cls(document, per_example=per_example), problem

    @property
    def skipped(self) -> dict[str, str]:
        return dict(self.document.get("skipped") or {})

    def __getitem__(self, key: str) -> MetricRecord:
        try:
            return self.metrics[key]
        except KeyError:
            from gmbench.core.errors import MetricError, did_you_mean

            raise MetricError(f"Metric '{key}' is not in these results."
                              f"{did_you_mean(key, self.document['metrics'])} Measured: "
                              f"{', '.join(self.document['metrics'])}.") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.document["metrics"])

    def __len__(self) -> int:
        return len(self.document["metrics"])

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` document (schema 2)."""
        return json.loads(json.dumps(self.document))

    def to_frame(self) -> pandas.DataFrame:
        """One row per metric (long format): the board's columns, ``details`` as a dict."""
        import pandas as pd

        from gmbench.storage.leaderboard import COLUMNS, rows_from_results

        rows = rows_from_results(self.document)
        frame = pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in rows],
                             columns=list(COLUMNS))
        frame["details"] = [self[r].details for r in self.document["metrics"]]
        return frame

    def _baselines(self, boards: str | os.PathLike[str] | None, where: str
                   ) -> tuple[list[BoardRow], Path | None]:
        """The bundled baselines' rows on this dataset; none, with a warning, when the board
        cannot be read (the run itself is shown or written all the same)."""
        from gmbench.core.errors import BoardError, warn
        from gmbench.storage.leaderboard import baseline_rows

        try:
            return baseline_rows(self.document["dataset"]["name"], boards=boards)
        except BoardError as exc:
            warn(f"baselines not {where}: {exc}")
            return [], None

    def table(self, *, boards: str | os.PathLike[str] | None = None, wide: bool = False) -> str:
        """The terminal table beside the bundled baselines (``wide``: every baseline)."""
        from gmbench.present.table import render_table

        baselines, board = self._baselines(boards, "shown")
        return render_table(dict(self.document), baselines=baselines, board=board, wide=wide)

    def save(self, out: str | os.PathLike[str], *, report: bool = False,
             boards: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Path:
        """Write ``results.json``, ``results.csv``, the pictures and (``report=True``)
        ``report.html`` into the folder ``out``, all at once (:func:`gmbench.run.outputs.write_run`).

        A folder holding a run with metrics these results lack is refused, as ``gmbench
        evaluate --out`` refuses it: writing would lose them (``overwrite=True`` replaces it).

        Raises:
            OutputError: ``out`` cannot be written (a file, foreign files in it) or holds a
                run with metrics these results lack.
        """
        from gmbench.run.outputs import OutputError, fuller_run, run_files, write_run
        from gmbench.storage.results import results_csv

        lost = [] if overwrite else fuller_run(out, list(self.document["metrics"]))
        if lost:
            raise OutputError(f"{out} holds a run with metrics these results do not have "
                              f"({', '.join(lost[:8])}{' ...' * (len(lost) > 8)}); saving "
                              "would replace it. Save to another folder (--out), or pass "
                              "overwrite=True (--overwrite) to replace it.")
        baselines, board = self._baselines(boards, "in the report") if report else ([], None)
        json_bytes = (json.dumps(self.document, indent=2, allow_nan=False) + "\n").encode()
        csv_bytes = results_csv(dict(self.document))
        info = get_dataset_info(self.document["dataset"])
        files = run_files(self.document, json_bytes, csv_bytes, self.artifacts, info,
                          report=report, baselines=baselines, board=board,
                          per_example=None if self.per_example is None
                          else self.per_example.to_bytes())
        return write_run(out, files)

    def check(self, board: str | os.PathLike[str], *, model: str | None = None,
              tolerances: Mapping[str, str | float] | Sequence[str] | None = None,
              alpha: float = 0.05,
              metrics: Sequence[str] | None = None, allow: Sequence[str] = ()
              ) -> CheckReport:
        """The regression gate against ``model``'s rows on ``board`` (default: this model's
        name). ``tolerances`` maps a metric (or ``"*"``) to an absolute amount or ``"N%"`` (or
        lists ``"KEY=VALUE"`` as the command line does);
        ``metrics`` gates only those (default: all; a gated metric missing here fails);
        ``allow`` names documented differences to compare across (``"dataset"``,
        ``"n-samples"``)."""
        from functools import partial

        from gmbench.gate.check import check_results, parse_allowed, parse_tolerances
        from gmbench.metrics import registered_definitions
        from gmbench.storage.leaderboard import read_board
        from gmbench.storage.per_example import stored

        metrics = RunRequest(metrics=metrics).check().metrics  # a non-empty list of keys
        if isinstance(tolerances, Mapping):
            tolerances = [f"{k}={v}" for k, v in tolerances.items()]
        return check_results(self.document, read_board(board),
                             model=model or self.document["model"]["name"],
                             tolerances=parse_tolerances(tolerances or []), alpha=alpha,
                             metrics=metrics, defined=registered_definitions(),
                             allow=parse_allowed([allow] if isinstance(allow, str) else allow),
                             per_example=self.per_example,
                             reference_per_example=partial(stored, board))


def get_dataset_info(record: Mapping[str, Any]):  # noqa: ANN201 - DatasetInfo
    from gmbench.datasets import DatasetInfo

    return DatasetInfo(name=record["name"], kind=record["kind"],  # not a metric: a dataset
                       shape=tuple(record["shape"]),
                       levels=record.get("levels"), num_classes=record.get("num_classes"))
