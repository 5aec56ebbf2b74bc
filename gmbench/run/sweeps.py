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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gmbench.core.errors import GmbenchError
from gmbench.core.files import atomic_write, sha256_file
from gmbench.core.names import printable, safe_filename
from gmbench.run.request import RunRequest

__all__ = ["Job", "Outcome", "SweepError", "SweepReport", "parse_seeds", "plan", "run_job",
           "sweep"]

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
    run) or ``failed`` (``error``: one paragraph)."""

    job: Job
    status: str
    seconds: float = 0.0
    error: str | None = None


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
        for o in self.failed:
            lines.append(f"failed: {o.job.label}: {o.error}")
        if self.failed:
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


def plan(models: Sequence[str | os.PathLike[str]], datasets: Sequence[str],
         seeds: Sequence[int], *, request: RunRequest | None = None) -> list[Job]:
    """Every (model, dataset, seed) of ``request`` (default: the defaults), models outermost;
    checks that each model file exists and each dataset loads (known, its files present)
    before anything runs."""
    from gmbench.datasets import get_dataset

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
    for d in datasets:
        get_dataset(d, request.data_root)  # a DatasetError says what is unknown or missing
    if len(paths) * len(datasets) * len(seeds) > MAX_JOBS:
        raise SweepError(f"the sweep has more than {MAX_JOBS} evaluations; split it.")
    stems = _folders(paths)
    return [Job(replace(request, model=str(p), dataset=d, seed=s),
                f"{stems[p]}-{safe_filename(d)}-seed{s}")
            for p in paths for d in dict.fromkeys(datasets) for s in seeds]


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

    def finished(self, job: Job, status: str, payload: Any, seconds: float) -> None:
        """Record what :func:`run_job` returned: results, or why the job failed."""
        done = status == "done"
        self.record(Outcome(job, status, seconds, None if done else str(payload)),
                    payload if done else None)

    def record(self, outcome: Outcome, results: Any = None) -> None:
        from gmbench.storage.leaderboard import add_results

        job = outcome.job
        if outcome.status == "done":
            try:
                results.save(self.out / job.folder)
            except GmbenchError as exc:
                outcome = replace(outcome, status="failed", error=f"writing the run: {exc}")
        if outcome.status in ("done", "skipped"):
            # a job evaluated again (`rerun`) replaces its rows; otherwise a row already on
            # the board is left as it is (the same result added twice is one row)
            add_results(self.board, [self.out / job.folder / "results.json"],
                        replace=self.rerun and outcome.status == "done")
        self.outcomes[job] = outcome
        self._write_summary()
        if self.show:
            counts = {s: sum(o.status == s for o in self.outcomes.values()) for s in STATUSES}
            tail = f" ({outcome.seconds:.1f} s)" if outcome.status != "skipped" else ""
            error = f": {outcome.error}" if outcome.error else ""
            print(printable(f"[{counts['done'] + counts['skipped']} finished, "
                            f"{counts['failed']} failed, {len(self.jobs)} total] "
                            f"{job.label}: {outcome.status}{tail}{error}"), file=sys.stderr)

    def _write_summary(self) -> None:
        from gmbench.version import __version__

        doc = {"gmbench_version": __version__, "runner": self.runner, "board": str(self.board),
               "options": self.request.settings(),
               "jobs": [{"model": j.request.model, "dataset": j.request.dataset,
                         "seed": j.request.seed, "folder": j.folder,
                         **({"status": o.status, "seconds": round(o.seconds, 3),
                             "error": o.error} if (o := self.outcomes.get(j))
                            else {"status": "pending"})} for j in self.jobs]}
        with atomic_write(self.out / "sweep.json") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")


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
    if isinstance(datasets, str):
        datasets = [d.strip() for d in datasets.split(",") if d.strip()]
    if isinstance(seeds, str):
        seeds = parse_seeds(seeds)
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
    jobs = plan(models, list(datasets), list(seeds), request=base)
    from gmbench.run.ray_runtime import INSTALL_HINT, ray_available
    from gmbench.storage.leaderboard import writable_board

    board_path, _ = writable_board(board)  # a read-only board is refused before any work
    out_path = Path(out).expanduser().resolve()
    out_path.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    use_ray = runner == "ray" or (runner == "auto" and (base.address is not None
                                                        or ray_available()))
    if not use_ray and runner == "auto":
        notes.append(f"Ray is not installed: evaluating one at a time in this process; "
                     f"{INSTALL_HINT}")
    if base.workers > 1 and not use_ray:
        raise SweepError(f"--workers {base.workers} needs Ray; {INSTALL_HINT}.")
    with _out_lock(out_path):
        return _sweep(jobs, base, board_path, out_path, use_ray, notes=notes,
                      progress=progress, rerun=rerun, retries=retries,
                      cpus_per_eval=cpus_per_eval, gpus_per_eval=gpus_per_eval, tic=tic)


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
