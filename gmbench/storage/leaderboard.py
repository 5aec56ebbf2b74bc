"""Leaderboards: long-format CSV boards of results, one row per (run, metric).

A board is a CSV file with the header :data:`COLUMNS`, one row per metric of one evaluation.
Rows are identified by :data:`IDENTITY` (model sha256, dataset sha256, metric, seed, feature
space): adding results whose rows are already on the board changes nothing, byte for byte.
Writes take an exclusive :func:`fcntl.flock` on a sidecar ``<board>.lock`` file, re-read the
board under the lock, and replace it atomically (temporary file + rename), so concurrent
writers never lose each other's rows and readers never see a half-written board.

Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``,
tab or carriage return) are stored with a leading apostrophe (OWASP "CSV injection").

Python API (used by the baselines to build ``leaderboards/<dataset>.csv``)::

    from gmbench.storage.leaderboard import add_results
    add_results("leaderboards/digits.csv", ["out/pca/results.json", "out/vae/results.json"])

References:
    OWASP, "CSV Injection", https://owasp.org/www-community/attacks/CSV_Injection
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from dataclasses import replace as replace_field
from pathlib import Path
from typing import Any

from gmbench.core.direction import Direction
from gmbench.core.errors import BoardError, did_you_mean
from gmbench.core.files import NotARegularFile, TooLarge, atomic_write, read_bounded
from gmbench.storage.results import (
    CORE_FIELDS,
    MetricRecord,
    neutralise,
    read_results,
    record_problem,
)

__all__ = [
    "COLUMNS",
    "IDENTITY",
    "AddSummary",
    "BoardRow",
    "add_results",
    "add_rows",
    "baseline_rows",
    "board_lock",
    "boards_dir",
    "format_board",
    "latest_rows",
    "merge_rows",
    "neutralise",
    "options_differ",
    "parse_board",
    "read_board",
    "rows_from_results",
    "select_model",
    "write_board",
]

# evaluation options with columns of their own (seed, n_samples), part of the platform (device)
# or naming a file whose hash is in feature_space (inception_weights), left out of
# ``eval_config``; ``batch_size`` is in it: a stochastic log_prob's draws are keyed by the
# examples of each batch
NOT_CONFIG = ("device", "seed", "n_samples", "inception_weights")


@dataclass(frozen=True)
class BoardRow:
    """One metric of one evaluation, as stored on a board.

    Text fields are stored neutralised (see :func:`neutralise`); ``None`` numbers are empty
    cells (a non-finite value or an undefined standard error). ``date`` is the UTC start time
    of the evaluation (``provenance.started`` of ``results.json``), not the time of adding,
    so re-adding a results file reproduces the same row. ``eval_config`` is the run's
    ``config`` as compact JSON (without device, seed, n_samples and the path of the Inception
    weights, which have their own columns or belong to the platform; the weights' hash is in
    ``feature_space``): what a re-run must pass to reproduce it.

    The last four columns serve the regression gate: ``stderr_runs`` is the standard error
    of the value between runs on this test split (empty: ``stderr``), ``df_runs`` its degrees
    of freedom (empty: many), ``per_example_sha256`` names the run's per-example values kept
    beside the board (:mod:`gmbench.storage.per_example`), and ``platform`` identifies the
    machine, libraries, device and thread count (runs that share it, the seed and the options
    reproduce each other's numbers).

    ``reference`` (gmbench 0.3) says why the model is a reference point, not a competitor (the
    model file's ``REFERENCE``: the memorizer, the ground truth); empty for a competitor.
    Boards show reference rows for orientation but never rank them as the best baseline or
    put them on a Pareto front. Rows of earlier boards named ``memorizer`` or ``truth`` (the
    bundled reference models) are read as references.
    """

    dataset: str
    model: str
    metric: str
    value: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: str
    n: int | None
    unit: str
    higher_is_better: bool
    kind: str
    feature_space: str
    seed: int
    n_samples: int | None
    eval_config: str
    gmbench_version: str
    model_sha256: str
    dataset_sha256: str
    date: str
    ideal: float | None = None
    protocol: int = 1
    weights_sha256: str = ""
    stderr_runs: float | None = None
    df_runs: float | None = None
    per_example_sha256: str = ""
    platform: str = ""
    reference: str = ""

    @property
    def identity(self) -> tuple[str, str, str, str, int, int, str]:
        return (self.model_sha256, self.weights_sha256, self.dataset_sha256, self.metric,
                self.protocol, self.seed, self.feature_space)

    @property
    def sort_key(self) -> tuple[Any, ...]:
        return (self.dataset, self.model, self.date, self.model_sha256, self.weights_sha256,
                self.seed, self.metric, self.protocol, self.feature_space)

    @property
    def direction(self) -> Direction:
        return Direction(self.higher_is_better and self.ideal is None, self.ideal)

    @property
    def halfwidth(self) -> float | None:
        """Half the width of the 95% interval (``None`` when it is unknown)."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2

    @property
    def sigma(self) -> float:
        """The standard error used by ``gmbench check``: the larger of ``stderr`` and the 95%
        interval's ``half-width / 1.96`` (equal for normal intervals; the interval is wider
        where a stderr degenerates, e.g. an exact binomial interval at a rate of 0); 0 when
        neither is known."""
        hw = self.halfwidth
        return max(self.stderr or 0.0, hw / 1.959963984540054 if hw is not None else 0.0)

    @property
    def sigma_runs(self) -> float:
        """The standard error between runs on the same test split (``stderr_runs``), else
        :attr:`sigma`."""
        return self.stderr_runs if self.stderr_runs is not None else self.sigma


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(BoardRow))
# earlier boards (read, upgraded on write): gmbench 0.1 without the last eight columns,
# 0.2 without the last five, the first 0.3 boards without the last one
COLUMNS_V1: tuple[str, ...] = COLUMNS[:-8]
COLUMNS_V2: tuple[str, ...] = COLUMNS[:-5]
COLUMNS_V3: tuple[str, ...] = COLUMNS[:-1]
# the bundled reference models, recognised by name on boards written before the column existed
LEGACY_REFERENCES = {
    "memorizer": "replays training images (a bundled reference model)",
    "truth": "the data's own distribution (a bundled reference model)",
}
IDENTITY = ("model_sha256", "weights_sha256", "dataset_sha256", "metric", "protocol", "seed",
            "feature_space")
MAX_BOARD_BYTES = 512 << 20  # about a million rows; refuse what cannot be a board
_FLOATS = {"value", "stderr", "ci_low", "ci_high", "ideal", "stderr_runs", "df_runs"}
_OPTIONAL_INTS = {"n", "n_samples"}
_INTS = {"seed", "protocol"}
_TEXT = set(COLUMNS) - _FLOATS - _OPTIONAL_INTS - _INTS - {"higher_is_better"}


# ------------------------------------------------------------------ results -> rows
def _float(x: Any) -> float | None:
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def rows_from_results(data: Mapping[str, Any]) -> list[BoardRow]:
    """The board rows of one ``results.json`` dictionary (as :func:`read_results` returns).

    Raises:
        BoardError: a field is missing or has the wrong type (a damaged or hand-edited file).
    """
    try:
        run = _run_cells(data)
        return [_row(run, key, rec) for key, rec in data["metrics"].items()]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BoardError(f"the results file is damaged: {type(exc).__name__}: {exc}. Re-run "
                         "`gmbench evaluate` to regenerate it.") from None


def _run_cells(data: Mapping[str, Any]) -> dict[str, Any]:
    """The cells every row of one run shares (its model, data, seed, options, provenance)."""
    model, dataset, prov = data["model"], data["dataset"], data["provenance"]
    config = {k: v for k, v in (data.get("config") or {}).items() if k not in NOT_CONFIG}
    return {"dataset": dataset["name"], "model": model["name"], "seed": int(data.get("seed") or 0),
            "n_samples": data.get("n_samples"),
            "eval_config": json.dumps(config, sort_keys=True, separators=(",", ":"))
            if config else "",
            "gmbench_version": prov.get("gmbench_version"), "model_sha256": model.get("sha256"),
            "dataset_sha256": dataset.get("sha256"), "date": prov.get("started"),
            "weights_sha256": model.get("weights_sha256"),
            "per_example_sha256": (data.get("per_example") or {}).get("sha256"),
            "platform": prov.get("platform_id"), "reference": model.get("reference")}


def _row(run: Mapping[str, Any], key: str, rec: Mapping[str, Any]) -> BoardRow:
    m = MetricRecord.from_dict(key, rec)
    values = {**run, **{f: getattr(m, f) for f in CORE_FIELDS}, "metric": key,
              "stderr_runs": m.detail("stderr_runs"), "df_runs": m.detail("df_runs")}
    cells: dict[str, Any] = {c: _float(values[c]) if c in _FLOATS else neutralise(
        str(values[c] or "")) if c in _TEXT else values[c] for c in COLUMNS}
    return BoardRow(**cells)


# ------------------------------------------------------------------ CSV <-> rows
def _cell(row: BoardRow, column: str) -> str:
    x = getattr(row, column)
    if x is None:
        return ""
    if column == "higher_is_better":
        return "true" if x else "false"
    if isinstance(x, float):
        return repr(x)  # shortest round-trip form: reading back gives the same float
    return neutralise(str(x)) if column in _TEXT else str(x)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_PARSE: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(_FLOATS, _finite), **dict.fromkeys(_OPTIONAL_INTS | _INTS, int),
    "higher_is_better": {"true": True, "false": False}.__getitem__}


def _parse_row(cells: list[str], where: str, columns: tuple[str, ...] = COLUMNS) -> BoardRow:
    values: dict[str, Any] = {}
    for column, text in zip(columns, cells, strict=True):
        try:  # an empty cell is a missing number where a number may be missing
            values[column] = None if not text and column in _FLOATS | _OPTIONAL_INTS \
                else _PARSE.get(column, str)(text)
        except (ValueError, KeyError):
            raise BoardError(f"{where}: column '{column}' holds {text!r}, which is not a valid "
                             "value; the board is corrupt. Restore it from version control, "
                             "or delete the row and re-add its results.json.") from None
    problem = record_problem(values)
    if problem:
        raise BoardError(f"{where}: {problem}; the board is corrupt. Restore it from version "
                         "control, or delete the row and re-add its results.json.")
    return BoardRow(**values)


def parse_board(text: str, *, where: str = "board") -> list[BoardRow]:
    """Parse a board's CSV text (the current format, or gmbench 0.1's, whose rows get
    ``protocol`` 1, no ``ideal`` and no weights hash); :class:`BoardError` if it is corrupt or
    truncated."""
    return _parse_board(text, where=where)[0]


def _parse_board(text: str, *, where: str) -> tuple[list[BoardRow], int]:
    if not text:
        raise BoardError(f"{where} is empty. A board has at least its header line; delete the "
                         "file and re-create it with `gmbench leaderboard add RESULTS.json "
                         f"--board {where}`.")
    if not text.endswith("\n"):
        raise BoardError(f"{where} does not end with a newline: it was truncated (gmbench "
                         "writes boards whole). Restore it from version control, or delete "
                         "it and re-add the results files.")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = tuple(next(reader))
        if header not in (COLUMNS, COLUMNS_V3, COLUMNS_V2, COLUMNS_V1):
            raise BoardError(f"{where} is not a gmbench leaderboard: its header is "
                             f"{','.join(header)[:120]!r}, expected {','.join(COLUMNS)!r}. Pass "
                             "a board written by `gmbench leaderboard add`.")
        rows = []
        for cells in reader:
            if not cells:  # a blank line (an editor's or a merge's): nothing to read
                continue
            line = f"{where} line {reader.line_num}"
            if len(cells) != len(header):
                raise BoardError(f"{line} has {len(cells)} fields, expected {len(header)}: "
                                 "the board is corrupt or truncated. Restore it from version "
                                 "control, or delete it and re-add the results files.")
            row = _parse_row(cells, line, header)
            if header != COLUMNS and row.model in LEGACY_REFERENCES:
                row = replace_field(row, reference=LEGACY_REFERENCES[row.model])
            rows.append(row)
    except csv.Error as exc:
        raise BoardError(f"{where} is not valid CSV ({exc}); restore it from version "
                         "control.") from None
    return rows, {COLUMNS_V1: 1, COLUMNS_V2: 2, COLUMNS_V3: 3}.get(header, 4)


def format_board(rows: Sequence[BoardRow]) -> str:
    """The canonical CSV text of ``rows`` (sorted; one line per row; ``\\n`` line ends)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: r.sort_key):
        writer.writerow([_cell(row, c) for c in COLUMNS])
    return buffer.getvalue()


def read_board(path: str | os.PathLike[str]) -> list[BoardRow]:
    """Read and validate a board file (either format; see :func:`parse_board`)."""
    return _read_board(path)[0]


def _read_board(path: str | os.PathLike[str]) -> tuple[list[BoardRow], int]:
    try:
        raw = read_bounded(path, MAX_BOARD_BYTES)
    except (NotARegularFile, TooLarge) as exc:
        raise BoardError(f"Board {exc}; pass a board .csv written by `gmbench leaderboard "
                         "add`.") from None
    except PermissionError:
        raise BoardError(f"Board {path} cannot be read (permission denied).") from None
    except FileNotFoundError:
        raise BoardError(f"Board {path} does not exist. Create it with `gmbench leaderboard "
                         f"add RESULTS.json --board {path}`.") from None
    except IsADirectoryError:
        raise BoardError(f"Board {path} is a directory; pass a .csv file.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BoardError(f"Board {path} is not UTF-8 text; it is not a gmbench board.") from None
    return _parse_board(text.removeprefix("\ufeff"), where=str(path))  # a BOM from a spreadsheet


def writable_board(path: str | os.PathLike[str]) -> tuple[Path, os.stat_result | None]:
    """The file a board write replaces (a symbolic link's target, so the link stays a link)
    and its current stat; :class:`BoardError` when it must not be written."""
    target = Path(path).resolve()
    if target.is_dir():
        raise BoardError(f"Board {path} is a directory; pass a .csv file.")
    if not target.exists():
        if Path(path).is_symlink() and not target.parent.is_dir():
            raise BoardError(f"Board {path} is a symbolic link to {target}, whose folder does "
                             "not exist; fix the link or pass another --board.")
        return target, None
    stat = target.stat()
    if not stat.st_mode & 0o222 or not os.access(target, os.W_OK):
        raise BoardError(f"Board {path} is read-only; gmbench does not replace a read-only "
                         "board. Make it writable (chmod u+w) if you mean to change it, or "
                         "write to another --board.")
    if not os.access(target.parent, os.W_OK):
        raise BoardError(f"Board {path} cannot be replaced: its folder {target.parent} is not "
                         "writable.")
    return target, stat


def write_board(path: str | os.PathLike[str], rows: Sequence[BoardRow]) -> None:
    """Write ``rows`` atomically (callers that read-modify-write hold :func:`board_lock`): a
    symbolic link's target is replaced and the link kept; the file's permission bits and owner
    are kept; a read-only board is refused."""
    target, stat = writable_board(path)
    with atomic_write(target, like=stat) as handle:
        handle.write(format_board(rows))


@contextmanager
def board_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the sidecar file ``<board>.lock`` (POSIX ``flock``).

    The sidecar is left in place: deleting a lock file races with the next writer.
    """
    lock = Path(f"{os.fspath(path)}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BoardError(f"cannot lock {path} for writing ({exc.strerror}: {lock}); pass a "
                         "--board in a folder you can write to.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ------------------------------------------------------------------ adding
@dataclass(frozen=True)
class AddSummary:
    """What :func:`add_rows` did: rows added, rows already present, rows that differ.

    ``conflicts`` are identities already on the board with a different value; they were
    replaced when ``replace=True`` and kept as they were otherwise.
    """

    added: int
    unchanged: int
    conflicts: tuple[tuple[str, ...], ...]
    replaced: bool
    upgraded: bool = False
    duplicates: int = 0
    without_per_example: tuple[str, ...] = ()

    def describe(self, board: str | os.PathLike[str]) -> str:
        text = f"{board}: added {self.added} row(s), {self.unchanged} already present"
        if self.conflicts:
            verb = "replaced" if self.replaced else "kept (use --replace to overwrite)"
            shown = "; ".join(f"{c[3]} seed {c[5]} model {c[0][:12]}" for c in self.conflicts[:5])
            text += f", {len(self.conflicts)} differing from the board {verb}: {shown}"
        if self.duplicates:
            text += (f"; the board held {self.duplicates} row(s) repeating another row's "
                     "identity (model, weights, dataset, metric, protocol, seed, feature "
                     "space): the last of each was kept")
        if self.upgraded:
            text += ("; the board was in an earlier gmbench format and was upgraded (columns "
                     "added: reference, which marks the memorizer and the ground truth as "
                     "reference models; from 0.2 boards the gate's stderr_runs, df_runs, "
                     "per_example_sha256 and platform; from 0.1 boards also ideal, protocol "
                     "and weights_sha256, their rows being protocol 1)")
        if self.without_per_example:
            text += (f"; {len(self.without_per_example)} results file(s) came without their "
                     f"per-example values ({', '.join(self.without_per_example[:3])}): their "
                     "rows are added, and `gmbench check` against them uses the unpaired test")
        return text


def options_differ(a: str, b: str) -> bool:
    """Whether two ``eval_config`` strings name an option with different values (an option
    only one of them records, as boards of gmbench 0.2 lack ``batch_size``, is unknown, not
    different)."""
    try:
        x, y = (json.loads(c) if c else {} for c in (a, b))
    except json.JSONDecodeError:
        return a != b
    return any(x[k] != y[k] for k in set(x) & set(y)) if isinstance(x, dict) and \
        isinstance(y, dict) else a != b


def _same(a: BoardRow, b: BoardRow) -> bool:
    """The same row, up to the date, the platform, the per-example file and options only one
    of them records: a rerun that reproduces every number is not a conflict (the board keeps
    the first row)."""
    config = b.eval_config if not options_differ(a.eval_config, b.eval_config) else a.eval_config
    return format_board([replace_field(a, date=b.date, platform=b.platform, eval_config=config,
                                       per_example_sha256=b.per_example_sha256,
                                       reference=b.reference)]) \
        == format_board([b])


def merge_rows(board: Sequence[BoardRow], new: Sequence[BoardRow], *, replace: bool = False
               ) -> tuple[list[BoardRow], AddSummary]:
    """Pure: the board after adding ``new`` (deduplicated on :data:`IDENTITY`; rows of the
    board that repeat an identity are counted in ``duplicates``, the last one kept)."""
    merged = {row.identity: row for row in board}
    duplicates = len(board) - len(merged)
    added = unchanged = 0
    conflicts = []
    for row in new:
        old = merged.get(row.identity)
        if old is None:
            merged[row.identity] = row
            added += 1
        elif _same(old, row):
            unchanged += 1
        else:
            conflicts.append(tuple(str(x) for x in row.identity))
            if replace:
                merged[row.identity] = row
    return list(merged.values()), AddSummary(added, unchanged, tuple(conflicts), replace,
                                             duplicates=duplicates)


def add_rows(board_path: str | os.PathLike[str], rows: Sequence[BoardRow], *,
             replace: bool = False) -> AddSummary:
    """Add ``rows`` to the board under its lock; creates the board if it does not exist.

    The board is not rewritten when nothing changes.
    """
    path, _ = writable_board(board_path)  # refuse a read-only board before doing anything
    with board_lock(path):
        existing, fmt = _read_board(path) if path.exists() else ([], 4)
        merged, summary = merge_rows(existing, rows, replace=replace)
        if (summary.added or (replace and summary.conflicts) or summary.duplicates
                or not path.exists()):
            write_board(path, merged)
            summary = replace_field(summary, upgraded=fmt < 4)
    return summary


def add_results(board_path: str | os.PathLike[str],
                results_paths: Sequence[str | os.PathLike[str]], *,
                replace: bool = False) -> AddSummary:
    """Add every metric of each ``results.json`` to the board at ``board_path``.

    Args:
        board_path: the CSV board, created if absent (e.g. ``leaderboards/digits.csv``).
        results_paths: ``results.json`` files written by ``gmbench evaluate``.
        replace: overwrite rows with the same identity whose values differ (default: keep).

    Raises:
        BoardError: a results file or the board is unreadable or corrupt.
    """
    from gmbench.storage.per_example import PerExample, store

    if isinstance(results_paths, (str, os.PathLike)):
        results_paths = [results_paths]
    rows, sidecars, lacking = [], [], []
    for p in results_paths:
        try:
            data = read_results(Path(p))
            block = data.get("per_example") or {}
            run = rows_from_results(data)
            if block:
                try:  # the sidecar is kept beside the board under its hash
                    side = Path(p).parent / str(block.get("file"))
                    sidecars.append(PerExample.read(side, sha256=block.get("sha256")))
                except BoardError:
                    lacking.append(str(p))
                    run = [replace_field(r, per_example_sha256="") for r in run]
            rows += run
        except BoardError as exc:
            raise BoardError(str(exc) if str(p) in str(exc) else f"{p}: {exc}") from None
    writable_board(board_path)
    for sidecar in sidecars:  # before the rows that name them: a board never names a missing one
        store(Path(board_path).resolve(), sidecar.to_bytes())
    summary = add_rows(board_path, rows, replace=replace)
    return replace_field(summary, without_per_example=tuple(lacking))


# ------------------------------------------------------------------ reading boards
def identity_conflicts(rows: Sequence[BoardRow]) -> list[str]:
    """One line for each identity (model, weights, dataset, metric, protocol, seed, feature
    space) that several rows of ``rows`` hold with different numbers: a hand edit or a merge
    of two boards. ``gmbench leaderboard add`` never writes such a board; readers use the most
    recent row and say so."""
    groups: dict[tuple[Any, ...], list[BoardRow]] = {}
    for row in rows:
        groups.setdefault(row.identity, []).append(row)
    out = []
    for group in groups.values():
        numbers = {(r.value, r.stderr, r.ci_low, r.ci_high, r.n) for r in group}
        if len(numbers) > 1:
            r = group[0]
            values = ", ".join(sorted({"empty" if g.value is None else f"{g.value:.6g}"
                                       for g in group}))
            out.append(f"{r.dataset}/{r.model}/{r.metric} (seed {r.seed}): {len(group)} rows of "
                       f"one evaluation disagree (values {values}); the most recent is used. "
                       "Keep one: `gmbench leaderboard add RESULTS.json --board BOARD --replace` "
                       "rewrites it from the results file")
    return out


def latest_rows(rows: Sequence[BoardRow]) -> dict[tuple[str, str, str], BoardRow]:
    """The row shown for each ``(dataset, model, metric)``: the most recent evaluation.

    Ties on ``date`` (several seeds of one run) go to the row with the lowest seed.
    """
    chosen: dict[tuple[str, str, str], BoardRow] = {}
    for row in sorted(rows, key=lambda r: (r.date, -r.seed)):
        chosen[(row.dataset, row.model, row.metric)] = row
    return chosen


# ------------------------------------------------------------------ where boards live
def boards_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The directory holding ``<dataset>.csv`` boards of the bundled baselines.

    Looked up in this order: ``explicit`` (``--boards DIR``), ``$GMBENCH_BOARDS``, then
    ``leaderboards/`` beside the installed ``gmbench`` package (the repository root of a
    source checkout or an editable install). ``None`` when none exists.
    """
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("GMBENCH_BOARDS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "leaderboards"
    return repo if repo.is_dir() else None


def baseline_rows(dataset: str, *, boards: str | os.PathLike[str] | None = None
                  ) -> tuple[list[BoardRow], Path | None]:
    """Rows of ``<boards>/<dataset>.csv`` and the path read (``[]`` when there is none)."""
    where = boards_dir(boards)
    if where is None:
        return [], None
    path = where / f"{dataset}.csv"
    if not path.is_file():
        return [], path
    return [r for r in read_board(path) if r.dataset == neutralise(dataset)], path


def select_model(rows: Sequence[BoardRow], model: str, dataset: str | None = None
                 ) -> list[BoardRow]:
    """Rows of ``model`` (matched in its stored, neutralised form); error if there are none."""
    name = neutralise(model)
    pool = [r for r in rows if dataset is None or r.dataset == neutralise(dataset)]
    mine = [r for r in pool if r.model == name]
    if not mine:
        names = sorted({r.model for r in pool})
        where = f" for dataset {dataset}" if dataset else ""
        raise BoardError(f"Model '{model}' is not on the board{where}."
                         f"{did_you_mean(name, names)} Models there: "
                         f"{', '.join(names) or '(none)'}. Pass --model with one of them.")
    return mine
