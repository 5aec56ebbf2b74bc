"""Sweeps: every (model, dataset, seed) evaluated once, as Ray tasks or serially in this
process, each run's folder written as it finishes and its rows added to one board.

The driver (this process) is the only writer: a task returns its results, the driver writes
the run's folder (all at once, :func:`gmbench.run.outputs.write_run`), adds its rows to the board
under the board's lock, and rewrites ``sweep.json`` (every job's status) atomically. So a
crashed, killed or pre-empted task loses nothing already finished, and re-running the same
sweep skips what is finished (its ``results.json`` is there, for the same model file, dataset,
seed and options) and retries what failed. Rows are identified on the board by model, dataset,
metric, seed and feature space, so a result added twice is one row.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gmbench.core.errors import GmbenchError
from gmbench.core.files import atomic_write, module_literal, sha256_file
from gmbench.core.names import printable, safe_filename
from gmbench.run.request import RunRequest

__all__ = ["Job", "Outcome", "SweepError", "SweepReport", "board_names", "check_request",
           "parse_seeds", "plan", "run_job", "sweep"]

STATUSES = ("done", "skipped", "failed")
MAX_JOBS = 100_000


class SweepError(GmbenchError):
    """A sweep's models, datasets, seeds or options are unusable."""


@dataclass(frozen=True)
class Job:
    """One evaluation of a sweep: the sweep's request with its model file, dataset and seed,
    written to ``folder`` (relative to the sweep's output folder)."""

    request: RunRequest  # its model is a file's path, its dataset a name
    folder: str

    @property
    def label(self) -> str:
        r = self.request
        return f"{Path(r.model).name} on {r.dataset}, seed {r.seed}"


@dataclass(frozen=True)
class Outcome:
    """What became of a job: ``done`` (evaluated now), ``skipped`` (finished by an earlier
    run) or ``failed`` (``error``: one paragraph). ``board_conflict``: failed although its
    run is written, because the board cannot hold its rows (their identity is another
    job's, or the board's rows of that identity hold other values); ``note``: what a
    finished job's rows left as they were on the board."""

    job: Job
    status: str
    seconds: float = 0.0
    error: str | None = None
    board_conflict: bool = False
    note: str | None = None


@dataclass
class SweepReport:
    """Every job's outcome, in the plan's order, and where the results went."""

    outcomes: list[Outcome]
    board: Path
    out: Path
    runner: str  # "ray" or "serial"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when every evaluation is finished (now or before), 1 when any failed."""
        return 1 if self.failed else 0

    def describe(self) -> str:
        lines = [f"{self.count('done')} evaluated, {self.count('skipped')} already finished, "
                 f"{self.count('failed')} failed of {len(self.outcomes)} ({self.runner}, "
                 f"{self.seconds:.1f} s); rows on {self.board}, runs in {self.out}/"]
        for o in self.outcomes:
            if o.note:
                lines.append(f"note: {o.job.label}: {o.note}")
        for o in self.failed:
            lines.append(f"failed: {o.job.label}: {o.error}")
        if any(not o.board_conflict for o in self.failed):
            lines.append("re-run the same command to retry the failed evaluations (finished "
                         "ones are skipped)")
        return "\n".join(lines)


# ------------------------------------------------------------------ the plan
def parse_seeds(text: str) -> list[int]:
    """``"0-4"``, ``"0,3,7"`` or ``"0-2,10"``: the seeds, in order, each once."""
    from gmbench.core.rng import MAX_SEED

    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        try:
            if "-" in part[1:]:
                low, high = part.split("-", 1) if not part.startswith("-") else ("", "")
                first, last = int(low), int(high)
            else:
                first = last = int(part)
        except ValueError:
            raise SweepError(f"seeds {text!r}: {part!r} is not a seed or a range such as "
                             "0-4; write e.g. --seeds 0-4 or --seeds 0,3,7.") from None
        if not 0 <= first <= last <= MAX_SEED:
            raise SweepError(f"seeds {text!r}: {part!r} must be seeds in [0, 2**63 - 1] with "
                             "the smaller first.")
        if last - first >= MAX_JOBS:
            raise SweepError(f"seeds {text!r}: {part!r} holds more than {MAX_JOBS} seeds.")
        seeds += [s for s in range(first, last + 1) if s not in seeds]
    return seeds


def _folders(models: Sequence[Path]) -> dict[Path, str]:
    """A folder-name stem per model file: its name without ``.py``; where two files share a
    name, their parent folders' names too (and a counter if those are equal)."""
    stems = {m: safe_filename(m.stem) for m in models}
    out: dict[Path, str] = {}
    for m in models:
        clash = sum(s == stems[m] for s in stems.values()) > 1
        name = safe_filename(f"{m.parent.name}-{m.stem}") if clash else stems[m]
        while name in out.values():
            name += "_"
        out[m] = name
    return out


def _declared_name(path: Path) -> str | None:
    """The model file's module-level ``NAME = "..."``, read without running the file
    (``None`` where there is none, or it is computed)."""
    name = module_literal(path, "NAME")
    return name if isinstance(name, str) and name else None


def board_names(models: Sequence[Path], *, name: str | None = None) -> dict[Path, str]:
    """The name each model file is given on the board where names would collide: rows of
    the board are shown by model name, so two files of one name (``a/m.py`` and ``b/m.py``,
    or one ``NAME``) would show as one model. Each such file is named as its run folders
    (``a-m``, ``b-m``); files whose own names differ are not listed (they keep them)."""
    stems = _folders(models)
    names = {m: name or _declared_name(m)
             or (m.parent.name if m.stem == "model" else m.stem) for m in models}
    renamed: dict[Path, str] = {}
    while True:  # folder stems are unique: a clash left after a pass is with a kept name
        seen: dict[str, int] = {}
        for value in names.values():
            seen[value] = seen.get(value, 0) + 1
        clashing = [m for m in models if seen[names[m]] > 1 and m not in renamed]
        if not clashing:
            return renamed
        for m in clashing:
            names[m] = renamed[m] = stems[m]


def _items(value: Any) -> list[Any] | None:
    """A list, tuple or other iterable of items as a list; ``None`` for anything else (a
    number, bytes, a mapping)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        return None
    return list(value)


def _as_models(models: Any) -> list[str | os.PathLike[str]]:
    """One model file's path (a string or a path) as a list of one; a list as it is."""
    if isinstance(models, (str, os.PathLike)):
        return [models]
    items = _items(models)
    if items is None or not all(isinstance(m, (str, os.PathLike)) for m in items):
        raise SweepError(f"models must be a model file's path or a list of them, such as "
                         f"[\"a.py\", \"b.py\"], got {_shown(models)}.")
    return items


def _as_datasets(datasets: Any) -> list[str]:
    """Dataset names, from a list or one comma-separated string."""
    if isinstance(datasets, str):
        return [d.strip() for d in datasets.split(",") if d.strip()]
    items = _items(datasets)
    if items is None or not all(isinstance(d, str) for d in items):
        raise SweepError(f"datasets must be dataset names, as a list such as [\"digits\"] or "
                         f"one comma-separated string, got {_shown(datasets)}.")
    return items


def _as_seeds(seeds: Any) -> list[int]:
    """Seeds from a list, one whole number or a string such as ``"0-4"``; each once."""
    import numbers

    from gmbench.core.rng import MAX_SEED

    if isinstance(seeds, str):
        return parse_seeds(seeds)
    items = [seeds] if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool) \
        else _items(seeds)
    if items is None:
        raise SweepError(f"seeds must be a list of seeds such as [0, 1], one seed, or a "
                         f"string such as \"0-4\", got {_shown(seeds)}.")
    for s in items:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) \
                or not 0 <= int(s) <= MAX_SEED:
            raise SweepError(f"seeds must be whole numbers in [0, 2**63 - 1], got {s!r} in "
                             f"{_shown(seeds)}.")
    return list(dict.fromkeys(int(s) for s in items))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _distinct_datasets(datasets: Sequence[str], data_root: str | None) -> list[str]:
    """The datasets, each once, loaded (a :class:`DatasetError` says what is unknown or
    missing); two of one name that hold different data (``a/mine.npz``, ``b/mine.npz``) are
    refused: boards show datasets by name, so their rows would read as one dataset's."""
    from gmbench.datasets import get_dataset

    seen: dict[str, tuple[str, str]] = {}  # name: (as given, sha256)
    kept = []
    for d in dict.fromkeys(datasets):
        data = get_dataset(d, data_root)
        name, sha = data.info.name, data.sha256
        if name in seen:
            first, first_sha = seen[name]
            if first_sha == sha:
                continue  # the same data, spelled twice
            raise SweepError(f"datasets {first} and {d} are both named {name!r} but hold "
                             "different data; a board shows a dataset by its name, so their "
                             "rows would read as one dataset's. Rename one of the files (its "
                             "name is the file's name without the suffix), or sweep them onto "
                             "separate boards.")
        seen[name] = (d, sha)
        kept.append(d)
    return kept


def check_request(request: RunRequest, datasets: Sequence[str]) -> None:
    """Refuse, before any evaluation, what would fail every job alike: an unknown metric, or
    a sample count the sample metrics cannot use on a dataset (as ``gmbench evaluate``
    does)."""
    from gmbench.datasets import get_dataset
    from gmbench.metrics.metric import get_metric
    from gmbench.run.evaluation import check_sample_budget

    metrics = [get_metric(k) for k in request.metrics or ()]
    if request.n_samples is not None and (not metrics or any(m.uses_samples
                                                             for m in metrics)):
        for d in datasets:
            check_sample_budget(request.n_samples, get_dataset(d, request.data_root))


def plan(models: Sequence[str | os.PathLike[str]], datasets: Sequence[str],
         seeds: Sequence[int], *, request: RunRequest | None = None) -> list[Job]:
    """Every (model, dataset, seed) of ``request`` (default: the defaults), models outermost;
    checks that each model file exists, each dataset loads (known, its files present) and
    the board can tell the datasets apart, and the request's metrics and sample count,
    before anything runs. Model files that share a name are named on the board as their run
    folders (:func:`board_names`)."""
    models, datasets, seeds = _as_models(models), _as_datasets(datasets), _as_seeds(seeds)
    if not models or not datasets or not seeds:
        raise SweepError("a sweep needs at least one model file, one dataset (--datasets) "
                         "and one seed (--seeds).")
    paths = []
    for m in models:
        p = Path(m).expanduser().resolve()
        if not p.is_file() or p.suffix != ".py":
            raise SweepError(f"{m}: not a model file (a .py file defining load(dataset, "
                             "device) or model); a sweep evaluates model files.")
        if p not in paths:
            paths.append(p)
    request = request or RunRequest()
    datasets = _distinct_datasets(datasets, request.data_root)
    check_request(request, datasets)
    if len(paths) * len(datasets) * len(seeds) > MAX_JOBS:
        raise SweepError(f"the sweep has more than {MAX_JOBS} evaluations; split it.")
    stems = _folders(paths)
    names = board_names(paths, name=request.name)
    return [Job(replace(request, model=str(p), dataset=d, seed=s,
                        name=names.get(p, request.name)),
                f"{stems[p]}-{safe_filename(d)}-seed{s}")
            for p in paths for d in datasets for s in seeds]


def finished(job: Job, out: Path) -> bool:
    """Whether ``out/<folder>/results.json`` is a valid result of this job's whole request:
    the same model file (sha256 of its bytes), dataset, seed, recorded options (those of
    ``results.json``'s ``config``, but the device; dequantization draws only where the model
    is dequantized) and at least the requested metrics.
    A weights file that changed under an unchanged model file is not seen: delete the run's
    folder (or pass ``rerun``) to evaluate again."""
    from gmbench.storage.results import read_results, records

    path = out / job.folder / "results.json"
    if not path.is_file():
        return False
    try:
        doc = read_results(path)
    except GmbenchError:
        return False
    model = doc.get("model") or {}
    from gmbench.datasets import get_dataset

    # the dataset by its contents: a name (or your own file's path, whose results name its
    # stem) that now holds other data is evaluated again
    data = get_dataset(job.request.dataset, job.request.data_root)
    if model.get("sha256") != sha256_file(job.request.model) \
            or doc["dataset"].get("sha256") != data.sha256:
        return False
    recorded = {**RunRequest().config(), **(doc.get("config") or {})}
    wanted = job.request.config()
    if all(r.detail("dequant_samples") is None for r in records(doc).values()):
        wanted["dequant_samples"] = 1  # a model scoring the data itself uses (records) one
    if any(recorded[k] != v for k, v in wanted.items() if k != "device"):
        return False
    have = set(doc.get("metrics") or {}) | set(doc.get("skipped") or {})
    return not job.request.metrics or set(job.request.metrics) <= have


# ------------------------------------------------------------------ one evaluation
def run_job(job: Job, threads: int | None = None) -> tuple[str, Any, float]:
    """Evaluate one job (in a Ray worker or in this process; ``threads``: its thread budget
    where the request names none): ``("done", Results, seconds)`` or ``("failed", one
    paragraph, seconds)``. Only the samples the run's pictures show travel back with the
    results."""
    import numpy as np

    from gmbench.run.outputs import SHOWN, Artifacts
    from gmbench.run.results import Results
    from gmbench.run.runner import evaluate

    tic = time.perf_counter()
    try:
        res = evaluate(job.request.with_options(threads=job.request.threads or threads),
                       progress=False)
    except GmbenchError as exc:
        return "failed", str(exc), time.perf_counter() - tic
    except Exception as exc:  # noqa: BLE001 - one model's crash must not stop the sweep
        return "failed", _one_paragraph(exc), time.perf_counter() - tic
    samples = res.artifacts.samples
    if isinstance(samples, np.ndarray) and samples.ndim > 2:
        samples = samples[:SHOWN]
    small = Results(res.document, Artifacts(samples=samples, neighbours=res.artifacts.neighbours),
                    res.per_example)
    return "done", small, time.perf_counter() - tic


def _one_paragraph(exc: BaseException) -> str:
    """``Type: message (at file:line in function)``, the innermost frame of the traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" \
        if frames else ""
    message = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {message}{where}"


# ------------------------------------------------------------------ the driver
class _Recorder:
    """Writes each finished run, adds its rows to the board, keeps ``sweep.json`` current
    and reports progress."""

    def __init__(self, jobs: list[Job], board: Path, out: Path, runner: str, show: bool,
                 request: RunRequest, rerun: bool = False) -> None:
        self.jobs, self.board, self.out, self.runner, self.show = jobs, board, out, runner, show
        self.rerun = rerun
        self.request = request
        self.outcomes: dict[Job, Outcome] = {}
        self.claimed: dict[tuple[Any, ...], Job] = {}  # board identities of this sweep's rows

    def finished(self, job: Job, status: str, payload: Any, seconds: float) -> None:
        """Record what :func:`run_job` returned: results, or why the job failed."""
        done = status == "done"
        self.record(Outcome(job, status, seconds, None if done else str(payload)),
                    payload if done else None)

    def record(self, outcome: Outcome, results: Any = None) -> None:
        job = outcome.job
        if outcome.status == "done":
            try:  # the sweep checked its run folders before it started
                results.save(self.out / job.folder, overwrite=True)
            except GmbenchError as exc:
                outcome = replace(outcome, status="failed", error=f"writing the run: {exc}")
        if outcome.status in ("done", "skipped"):
            outcome = self._add_rows(outcome)
        self.outcomes[job] = outcome
        self._write_summary()
        if self.show:
            counts = {s: sum(o.status == s for o in self.outcomes.values()) for s in STATUSES}
            tail = f" ({outcome.seconds:.1f} s)" if outcome.status != "skipped" else ""
            error = f": {outcome.error or outcome.note}" if outcome.error or outcome.note \
                else ""
            print(printable(f"[{counts['done'] + counts['skipped']} finished, "
                            f"{counts['failed']} failed, {len(self.jobs)} total] "
                            f"{job.label}: {outcome.status}{tail}{error}"), file=sys.stderr)

    def _add_rows(self, outcome: Outcome) -> Outcome:
        """Add the run's rows to the board; the outcome, failed where the board cannot hold
        them: their identity is another job's of this sweep (two model files of the same
        bytes whose weights gmbench cannot tell apart), or rows of that identity with other
        values are already on the board and were kept."""
        from gmbench.storage.leaderboard import add_results, rows_from_results
        from gmbench.storage.results import read_results

        job = outcome.job
        path = self.out / job.folder / "results.json"
        rows = rows_from_results(read_results(path))
        other = next((self.claimed[r.identity] for r in rows
                      if self.claimed.get(r.identity, job) != job), None)
        if other is not None:
            return replace(outcome, status="failed", board_conflict=True,
                           error=_same_identity(job, other, rows[0]))
        for row in rows:
            self.claimed[row.identity] = job
        # a job evaluated again (`rerun`) replaces its rows; otherwise a row already on the
        # board is left as it is (the same result added twice is one row)
        summary = add_results(self.board, [path], replace=self.rerun and outcome.status == "done")
        if not summary.conflicts or summary.replaced:
            return outcome
        return _kept_rows(outcome, rows, summary.conflicts, self.board, self.out)

    def _write_summary(self) -> None:
        from gmbench.version import __version__

        doc = {"gmbench_version": __version__, "runner": self.runner, "board": str(self.board),
               "options": self.request.settings(),
               "jobs": [{"model": j.request.model, "dataset": j.request.dataset,
                         "seed": j.request.seed, "folder": j.folder,
                         **({"status": o.status, "seconds": round(o.seconds, 3),
                             "error": o.error, **({"note": o.note} if o.note else {})}
                            if (o := self.outcomes.get(j)) else {"status": "pending"})}
                        for j in self.jobs]}
        with atomic_write(self.out / "sweep.json") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")


def _kept_rows(outcome: Outcome, rows: Sequence[Any], conflicts: Sequence[tuple[str, ...]],
               board: Path, out: Path) -> Outcome:
    """The outcome of a job some of whose rows the board kept as they were, under the same
    identity: a note where those rows come from an evaluation with other options (the same
    model, re-evaluated with another sample count or ``max_train``); failed where the options
    are the same and the values differ (another model with this identity, or a model whose
    numbers do not reproduce), since this run is then not on the board."""
    from gmbench.storage.leaderboard import options_differ, read_board

    kept = {r.identity: r for r in read_board(board)}
    differing = set(conflicts)
    clashing = [r for r in rows if tuple(str(x) for x in r.identity) in differing]
    metrics = ", ".join(dict.fromkeys(r.metric for r in clashing))
    if all((old := kept.get(r.identity)) is not None
           and (options_differ(old.eval_config, r.eval_config) or old.n_samples != r.n_samples)
           for r in clashing):
        return replace(outcome, note=f"the board keeps its rows of {metrics} for this model, "
                                     "dataset and seed from an evaluation with other options "
                                     "(sample count or eval_config); pass --rerun to replace "
                                     "them with this run's")
    return replace(outcome, status="failed", board_conflict=True, error=(
        f"the board already holds rows of the same model file, weights, dataset, seed and "
        f"options ({metrics}) with other values, which were kept, so this run "
        f"({out / outcome.job.folder}) is not on the board. If it is another model whose file "
        "is byte for byte an earlier one's, declare the weights it loads with `WEIGHTS = "
        "\"weights-file\"` in the model file, so that they are hashed into its identity; if "
        "it is the same model evaluated again, pass --rerun to replace the board's rows."))


def _same_identity(job: Job, other: Job, row: Any) -> str:
    """Why ``job``'s rows cannot go on the board beside ``other``'s, and what to do."""
    weights = (f"the same weights, sha256 {row.weights_sha256[:12]}..." if row.weights_sha256
               else "no weights gmbench could hash")
    return (f"{job.folder}: its rows have the board identity of {other.folder}'s (the same "
            f"model file bytes, sha256 {row.model_sha256[:12]}..., {weights}, the same dataset "
            f"and seed), so the board holds only {other.folder}'s; this run is written but "
            "not on the board. If the model files load different weights, declare them with "
            "`WEIGHTS = \"weights-file\"` in the model file (a path or a list, relative to it) "
            "so that they are hashed into the model's identity (without it gmbench hashes an "
            "nn.Module's parameters, or the tensors and arrays among the model's attributes); "
            "if they are copies of one model, sweep one of them.")


def sweep(models: Sequence[str | os.PathLike[str]], datasets: Sequence[str] | str,
          seeds: Sequence[int] | str, *, board: str | os.PathLike[str],
          out: str | os.PathLike[str] = "gmbench-sweep", request: RunRequest | None = None,
          runner: str = "auto", cpus_per_eval: float = 1, gpus_per_eval: float = 0,
          retries: int = 2, rerun: bool = False, progress: bool = True,
          shards: int | None = None, **options: Any) -> SweepReport:
    """Evaluate every (model file, dataset, seed) and add the results to ``board``.

    Args:
        models: model files.
        datasets: dataset names (a list, or comma-separated).
        seeds: seeds (a list, or ``"0-4"`` / ``"0,3,7"``).
        board: the board CSV the rows go to (created if absent).
        out: folder of the runs (``<model>-<dataset>-seed<seed>/``) and ``sweep.json``.
        request: every evaluation's options, a :class:`~gmbench.run.request.RunRequest`
            (its model, dataset and seed are the sweep's); ``options`` override its fields.
            ``device`` defaults to ``"cuda"`` with GPUs per evaluation; ``address`` is the
            Ray cluster the sweep joins (default: a local Ray on this machine).
        runner: ``"ray"``, ``"serial"`` (in this process, one at a time) or ``"auto"`` (Ray
            when it is installed or ``address`` is given, else serial with a note).
        cpus_per_eval, gpus_per_eval: each evaluation's Ray resource request (its torch
            threads follow the CPUs unless ``threads`` is given), and each of its workers'.
            With ``workers`` and GPUs, each evaluation reserves its own GPUs and its
            workers' together (a Ray placement group of ``workers + 1`` bundles), so
            evaluations waiting for their workers cannot hold every GPU.
        retries: Ray's retries of an evaluation whose worker died (killed, pre-empted).
        rerun: evaluate again what an earlier run finished.
        progress: a line on stderr per finished evaluation.
        shards: 0.2's name of ``workers``.

    Returns:
        a :class:`SweepReport`; its ``exit_code`` is 1 when an evaluation failed.
    """
    tic = time.perf_counter()
    models, datasets, seeds = _as_models(models), _as_datasets(datasets), _as_seeds(seeds)
    if runner not in ("auto", "ray", "serial"):
        raise SweepError(f"runner {runner!r}: use 'auto', 'ray' or 'serial'.")
    if retries < 0:
        raise SweepError(f"retries must be at least 0, got {retries}.")
    if shards is not None:
        options["workers"] = shards
    base = (request or RunRequest()).with_options(**options)
    if gpus_per_eval > 0 and "device" not in options and base.device == "cpu":
        base = replace(base, device="cuda")
    base = replace(base, cpus_per_worker=cpus_per_eval, gpus_per_worker=gpus_per_eval).check()
    jobs = plan(models, datasets, seeds, request=base)
    from gmbench.run.ray_runtime import INSTALL_HINT, ray_available
    from gmbench.storage.leaderboard import read_board, writable_board

    # a read-only or corrupt board is refused before any work
    board_path, board_stat = writable_board(board)
    if board_stat is not None:
        read_board(board_path)
    notes: list[str] = []
    renamed = {j.request.model: j.request.name for j in jobs if j.request.name != base.name}
    if renamed:
        notes.append("model files that share a name are named on the board as their run "
                     "folders: " + ", ".join(f"{m} as {n}" for m, n in renamed.items()))
    use_ray = runner == "ray" or (runner == "auto" and (base.address is not None
                                                        or ray_available()))
    if not use_ray and runner == "auto":
        notes.append(f"Ray is not installed: evaluating one at a time in this process; "
                     f"{INSTALL_HINT}")
    if base.workers > 1 and not use_ray:
        raise SweepError(f"--workers {base.workers} needs Ray; {INSTALL_HINT}.")
    out_path = _out_folder(out)
    with _out_lock(out_path):
        _check_run_folders(jobs, out_path)
        return _sweep(jobs, base, board_path, out_path, use_ray, notes=notes,
                      progress=progress, rerun=rerun, retries=retries,
                      cpus_per_eval=cpus_per_eval, gpus_per_eval=gpus_per_eval, tic=tic)


def _out_folder(out: str | os.PathLike[str]) -> Path:
    """The sweep's output folder, created; refused when it cannot be (a file in the way)."""
    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise SweepError(f"--out {out} is a file, not a folder; pass a folder for the runs and "
                         "sweep.json (it is created if needed).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"--out {out} cannot be created ({exc.strerror}: {exc.filename}); "
                         "pass a folder you can write to.") from None
    return path


def _check_run_folders(jobs: Sequence[Job], out: Path) -> None:
    """Refuse, before any evaluation, a sweep whose run folder could not be written (a file,
    foreign files) or holds the run of another model file, which it would replace (an
    earlier sweep into ``out`` of another ``m.py``)."""
    from gmbench.run.outputs import check_out

    for job in jobs:
        folder = out / job.folder
        if not folder.exists() and not folder.is_symlink():
            continue
        check_out(folder)
        try:
            recorded = json.loads((folder / "results.json").read_text(encoding="utf-8"))
            other = str(recorded["model"]["path"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no readable run there: nothing of another model to lose
        if Path(other).expanduser().resolve() != Path(job.request.model):
            raise SweepError(f"{folder} holds the run of another model file ({other}); this "
                             f"sweep would replace it with {job.request.model}'s. Pass another "
                             "--out, or move that folder away if its run is no longer needed.")


@contextlib.contextmanager
def _out_lock(out: Path) -> Iterator[None]:
    """One sweep at a time per ``out`` folder (its ``sweep.json`` and run folders): a second
    one is refused while the first runs."""
    fd = os.open(out / ".sweep.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"another sweep is writing to {out} (its sweep.json and runs); "
                             "wait for it to finish, or pass another --out.") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _sweep(jobs: list[Job], base: RunRequest, board_path: Path, out_path: Path, use_ray: bool,
           *, notes: list[str], progress: bool, rerun: bool, retries: int,
           cpus_per_eval: float, gpus_per_eval: float, tic: float) -> SweepReport:
    """The body of :func:`sweep`, its ``out`` folder locked."""
    rec = _Recorder(jobs, board_path, out_path, "ray" if use_ray else "serial", progress,
                    base, rerun)
    if progress:
        for note in notes:
            print(f"gmbench: note: {note}", file=sys.stderr)
    todo = []
    for job in jobs:
        if not rerun and finished(job, out_path):
            rec.record(Outcome(job, "skipped"))
        else:
            todo.append(job)
    if use_ray:
        _run_on_ray(todo, rec, address=base.address, cpus=cpus_per_eval, gpus=gpus_per_eval,
                    retries=retries, workers=base.workers)
    else:
        for job in todo:
            rec.finished(job, *run_job(job))
    return SweepReport([rec.outcomes[j] for j in jobs], board_path, out_path, rec.runner,
                       time.perf_counter() - tic, notes)


def _run_on_ray(todo: list[Job], rec: _Recorder, *, address: str | None, cpus: float,
                gpus: float, retries: int, workers: int) -> None:
    from gmbench.run.ray_runtime import ray_session

    if not todo:
        return
    with ray_session(address) as ray:
        gang = workers > 1 and gpus > 0
        if gang:
            _check_gang_fits(ray, workers, gpus)
        # a sharded evaluation is not retried whole: its shards retry themselves
        task = ray.remote(num_cpus=cpus, num_gpus=gpus,
                          max_retries=0 if workers > 1 else retries)(run_job)
        threads = max(1, int(cpus))
        pending: dict[Any, Job] = {}
        groups: dict[Any, Any] = {}
        try:
            for job in todo:
                if gang:  # the evaluation and its workers reserved together
                    group, strategy = _placement_group(ray, workers, cpus, gpus)
                    ref = task.options(scheduling_strategy=strategy).remote(job, threads)
                    groups[ref] = group
                else:
                    ref = task.remote(job, threads)
                pending[ref] = job
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                try:
                    status, payload, seconds = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    status, payload, seconds = "failed", _ray_failure(exc), 0.0
                if ready[0] in groups:
                    ray.util.remove_placement_group(groups.pop(ready[0]))
                rec.finished(job, status, payload, seconds)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            for group in groups.values():
                ray.util.remove_placement_group(group)


def _check_gang_fits(ray: Any, shards: int, gpus: float) -> None:
    """Refuse a sharded GPU sweep whose evaluation (the driver task and its workers, each
    with ``gpus``) needs more GPUs than the cluster has: it would wait for ever."""
    need = gpus * (shards + 1)
    have = float(ray.cluster_resources().get("GPU", 0))
    if need > have + 1e-9:
        raise SweepError(f"--workers {shards} with --gpus-per-eval {gpus:g} reserves "
                         f"{need:g} GPUs per evaluation (its driver task and {shards} workers), "
                         f"and the Ray cluster has {have:g}. Use fewer shards or a smaller "
                         "GPU fraction (0.5 runs two on one GPU).")


def _placement_group(ray: Any, shards: int, cpus: float, gpus: float) -> tuple[Any, Any]:
    """A placement group of ``shards + 1`` bundles (the driver task's and each shard's
    resources) and the scheduling strategy that puts the driver task and the tasks it
    starts into it. Without it, evaluations blocked on their shards keep their GPUs (Ray
    lends out only the CPUs of a blocked task) and, holding every GPU, wait for ever."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    bundle = {"CPU": cpus, "GPU": gpus}
    group = ray.util.placement_group([dict(bundle) for _ in range(shards + 1)])
    return group, PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_capture_child_tasks=True)


def _ray_failure(exc: BaseException) -> str:
    """One paragraph for a task Ray gave up on (its worker died more often than the retries
    allow, or the task raised outside the evaluation)."""
    first = " ".join(str(exc).split())
    if len(first) > 400:
        first = first[:400] + "..."
    return f"{type(exc).__name__} (the evaluation's Ray worker failed): {first}"
