"""gmbench's Python entry points: evaluate a model, an object or stored samples in a notebook
or a training loop, and get typed results back.

    import gmbench
    results = gmbench.evaluate(flow, dataset="digits", metrics=["nll", "fid"], progress=False)
    results["fid"].value, results["fid"].ci_low
    results.to_frame()                     # one row per metric (pandas)
    results.save("gmbench-out/run")        # results.json, results.csv, pictures
    results.check("leaderboards/digits.csv", model="flow")   # the regression gate

``evaluate`` takes a path to a model file, anything with ``sample`` and/or ``log_prob`` (a
``torch.distributions.Distribution``, an ``nn.Module``, a plain object), or stored samples (an
array, a ``.npz``/``.npy`` file or a folder of PNGs). It validates exactly as the command line
does and raises :class:`~gmbench.errors.GmbenchError` subclasses with the same messages; a
``KeyboardInterrupt`` propagates. Nothing is written unless you call :meth:`Results.save`
(real-data features and neighbour lists go to the feature cache, like on the command line;
``GMBENCH_FEATURE_CACHE=off`` turns it off). Repeated calls in one process reuse the loaded
datasets, the feature extractors and the real-data feature passes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gmbench.background import thread_budget
from gmbench.datasets import Dataset, get_dataset, list_datasets
from gmbench.device import parse_device
from gmbench.errors import GmbenchError, ModelError, warn
from gmbench.evaluation import (
    MAX_DEQUANT_SAMPLES,
    MIN_SAMPLES,
    EvalConfig,
    needs_samples,
    run_evaluation,
)
from gmbench.models.boundary import process_state
from gmbench.models.model import (
    Model,
    ModelSource,
    build_model,
    import_model_file,
    object_identity,
)
from gmbench.models.stored import StoredSamples, read_samples
from gmbench.outputs import Artifacts
from gmbench.progress import progress_shown
from gmbench.rng import MAX_SEED
from gmbench.storage.per_example import PerExample
from gmbench.storage.results import RunResult

if TYPE_CHECKING:
    import pandas

    from gmbench.metrics.metric import Metric
    from gmbench.storage.check import CheckReport
    from gmbench.storage.leaderboard import BoardRow

__all__ = ["MetricRecord", "Results", "evaluate", "list_baselines", "list_datasets",
           "list_metrics", "load_model"]

_DEFAULTS = EvalConfig()  # the defaults live in EvalConfig, once


@dataclass(frozen=True, kw_only=True)
class MetricRecord:
    """One metric of a run, typed: the value with its 95% interval and what it means.

    ``details`` holds the metric's own fields (estimator, sample sizes, notes).
    """

    key: str
    value: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: str
    n: int | None
    unit: str
    higher_is_better: bool
    ideal: float | None
    protocol: int
    kind: str | None
    feature_space: str
    details: Mapping[str, Any] = field(default_factory=dict)

    CORE = ("value", "stderr", "ci_low", "ci_high", "ci_method", "n", "unit",
            "higher_is_better", "ideal", "protocol", "kind", "feature_space")

    @classmethod
    def from_dict(cls, key: str, rec: Mapping[str, Any]) -> MetricRecord:
        return cls(key=key, value=rec.get("value"), stderr=rec.get("stderr"),
                   ci_low=rec.get("ci_low"), ci_high=rec.get("ci_high"),
                   ci_method=str(rec.get("ci_method") or ""), n=rec.get("n"),
                   unit=str(rec.get("unit") or ""),
                   higher_is_better=bool(rec.get("higher_is_better")), ideal=rec.get("ideal"),
                   protocol=int(rec.get("protocol") or 1), kind=rec.get("kind"),
                   feature_space=str(rec.get("feature_space") or ""),
                   details={k: v for k, v in rec.items() if k not in cls.CORE})

    @property
    def estimable(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Results:
    """The outcome of one evaluation: typed metric records, the ``results.json`` document,
    and the artifacts its pictures are drawn from."""

    document: Mapping[str, Any]
    artifacts: Artifacts = field(default_factory=Artifacts, repr=False)
    per_example: PerExample | None = field(default=None, repr=False)

    @classmethod
    def from_run(cls, run: RunResult, artifacts: Artifacts) -> Results:
        return cls(json.loads(run.json_bytes()), artifacts, run.per_example)

    @property
    def metrics(self) -> dict[str, MetricRecord]:
        return {k: MetricRecord.from_dict(k, rec) for k, rec in self.document["metrics"].items()}

    @property
    def skipped(self) -> dict[str, str]:
        return dict(self.document.get("skipped") or {})

    def __getitem__(self, key: str) -> MetricRecord:
        try:
            return MetricRecord.from_dict(key, self.document["metrics"][key])
        except KeyError:
            from gmbench.errors import MetricError, did_you_mean

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

    def table(self, *, boards: str | os.PathLike[str] | None = None, wide: bool = False) -> str:
        """The terminal table beside the bundled baselines (``wide``: every baseline)."""
        from gmbench.present.table import render_table
        from gmbench.storage.leaderboard import baseline_rows

        baselines, board = baseline_rows(self.document["dataset"]["name"], boards=boards)
        return render_table(dict(self.document), baselines=baselines, board=board, wide=wide)

    def save(self, out: str | os.PathLike[str], *, report: bool = False,
             boards: str | os.PathLike[str] | None = None) -> Path:
        """Write ``results.json``, ``results.csv``, the pictures and (``report=True``)
        ``report.html`` into the folder ``out``, all at once (:func:`gmbench.outputs.write_run`)."""
        from gmbench.errors import BoardError, warn
        from gmbench.outputs import run_files, write_run
        from gmbench.storage.leaderboard import baseline_rows
        from gmbench.storage.results import results_csv

        baselines: list[BoardRow] = []
        board: Path | None = None
        if report:
            try:
                baselines, board = baseline_rows(self.document["dataset"]["name"], boards=boards)
            except BoardError as exc:
                warn(f"baselines not in the report: {exc}")
        json_bytes = (json.dumps(self.document, indent=2, allow_nan=False) + "\n").encode()
        csv_bytes = results_csv(dict(self.document))
        info = get_dataset_info(self.document["dataset"])
        files = run_files(self.document, json_bytes, csv_bytes, self.artifacts, info,
                          report=report, baselines=baselines, board=board,
                          per_example=None if self.per_example is None
                          else self.per_example.to_bytes())
        return write_run(out, files)

    def check(self, board: str | os.PathLike[str], *, model: str | None = None,
              tolerances: Mapping[str, str | float] | None = None, alpha: float = 0.05,
              metrics: Sequence[str] | None = None, allow: Sequence[str] = ()
              ) -> CheckReport:
        """The regression gate against ``model``'s rows on ``board`` (default: this model's
        name). ``tolerances`` maps a metric (or ``"*"``) to an absolute amount or ``"N%"``;
        ``metrics`` gates only those (default: all; a gated metric missing here fails);
        ``allow`` names documented differences to compare across (``"dataset"``,
        ``"n-samples"``)."""
        from functools import partial

        from gmbench.metrics import registered_definitions
        from gmbench.storage.check import check_results, parse_allowed, parse_tolerances
        from gmbench.storage.leaderboard import read_board
        from gmbench.storage.per_example import stored

        metrics = _as_list(metrics)
        if metrics is not None and (isinstance(metrics, (str, bytes)) or not all(
                isinstance(k, str) for k in metrics)):
            raise OptionError(f"metrics must be a list of metric keys such as [\"fid\"], got "
                              f"{metrics!r}.")
        parsed = parse_tolerances([f"{k}={v}" for k, v in (tolerances or {}).items()])
        if isinstance(allow, str):
            allow = [allow]
        return check_results(self.document, read_board(board),
                             model=model or self.document["model"]["name"],
                             tolerances=parsed, alpha=alpha, metrics=metrics,
                             defined=registered_definitions(), allow=parse_allowed(allow),
                             per_example=self.per_example,
                             reference_per_example=partial(stored, board))


def get_dataset_info(record: Mapping[str, Any]):  # noqa: ANN201 - DatasetInfo
    from gmbench.datasets import DatasetInfo

    return DatasetInfo(name=record["name"], kind=record["kind"], shape=tuple(record["shape"]),
                       levels=record.get("levels"), num_classes=record.get("num_classes"))


def _code_sha256(obj: Any) -> str:
    """sha256 of the source of ``obj``'s class (the code that runs), else of its name."""
    cls = obj if inspect.isclass(obj) else type(obj)
    try:
        text = inspect.getsource(cls)
    except (OSError, TypeError):
        text = f"{cls.__module__}.{cls.__qualname__}"
    return hashlib.sha256(text.encode()).hexdigest()


def load_model(path: str | os.PathLike[str], *, dataset: str | Dataset | None = None,
               device: str = "cpu") -> Model:
    """Import a model file and build its model for ``dataset`` (default: the file's
    ``DATASET``, else ``digits``), as ``gmbench evaluate`` does."""
    module, source = import_model_file(Path(path))
    data = _dataset(dataset or source.dataset or "digits")
    return build_model(module, source, data.info, device)


def _dataset(dataset: str | Dataset, data_root: str | os.PathLike[str] | None = None
             ) -> Dataset:
    data = dataset if isinstance(dataset, Dataset) else get_dataset(dataset, data_root)
    data.sha256  # noqa: B018 - fingerprint the arrays before any model code runs
    return data


def _as_model(model: Any, samples: Any, data: Dataset, device: str, name: str | None
              ) -> Model:
    if (model is None) == (samples is None):
        raise ModelError("Pass either a model or stored samples to gmbench.evaluate (model=... "
                         "or samples=...), not both and not neither.")
    if samples is not None:
        x, stem, digest = read_samples(samples, data.info)
        stored = StoredSamples(x, name=name or stem)
        source = ModelSource(path=Path(samples) if isinstance(samples, (str, Path))
                             else Path("<array>"), name=name or stem, sha256=digest,
                             dataset=None)
        return Model(stored, source=source, info=data.info, device=device)
    if isinstance(model, Model):
        return model
    declared, weights = object_identity(model, model_file=Path.cwd() / "model.py")
    label = name or declared or type(model).__name__
    source = ModelSource(path=Path(f"<{type(model).__module__}.{type(model).__qualname__}>"),
                         name=str(label), sha256=_code_sha256(model), dataset=None,
                         weights=weights)
    return Model(model, source=source, info=data.info, device=device)


class OptionError(GmbenchError):
    """An option of :func:`evaluate` out of its range or of the wrong type."""


def _as_int(value: Any) -> Any:
    """A NumPy or other integral value as a Python int (booleans are left to be refused)."""
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        else value


def _as_list(metrics: Any) -> Any:
    """``metrics`` read once into a list (an iterator or generator would otherwise be used up
    by the checks and measure nothing); strings and non-iterables are left to be refused."""
    if metrics is None or isinstance(metrics, (str, bytes)):
        return metrics
    try:
        return list(metrics)
    except TypeError:
        return metrics


def _check_options(*, seed: Any, n_samples: Any, batch_size: Any, dequant_samples: Any,
                   max_train: Any, dataset: Any, metrics: Any, device: Any = "cpu",
                   feature_extractor: Any = "auto") -> None:
    """The command line's checks of its options, for the Python API (the same messages in
    the options' Python names)."""
    def whole(name: str, value: Any, low: int, optional: bool = False) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise OptionError(f"{name} must be a whole number of at least {low}, got "
                              f"{value!r}.")

    whole("seed", seed, 0)
    if seed > MAX_SEED:
        raise OptionError(f"seed must lie in [0, 2**63 - 1], got {seed}.")
    whole("n_samples", n_samples, 1, optional=True)
    whole("batch_size", batch_size, 1)
    whole("dequant_samples", dequant_samples, 1)
    if dequant_samples > MAX_DEQUANT_SAMPLES:
        raise OptionError(f"dequant_samples (--dequant-samples) is {dequant_samples}; use 1 "
                          f"to {MAX_DEQUANT_SAMPLES} (each draw scores the whole test split "
                          "once more).")
    whole("max_train", max_train, 1)
    if dataset is not None and not isinstance(dataset, (str, Dataset)):
        raise OptionError(f"dataset must be a dataset name such as \"digits\" (see "
                          f"gmbench.list_datasets()), got {type(dataset).__name__}.")
    if isinstance(dataset, str) and not dataset.strip():
        raise OptionError("dataset (--dataset) is empty; name a dataset such as \"digits\" "
                          "(see gmbench.list_datasets() or `gmbench datasets`), or leave it "
                          "out to use the model file's DATASET.")
    if metrics is not None and (isinstance(metrics, str) or not metrics
                                or not all(isinstance(k, str) for k in metrics)):
        raise OptionError(f"metrics must be a non-empty list of metric keys such as "
                          f"[\"fid\"] (see gmbench.list_metrics()), got {metrics!r}; pass "
                          "None for every applicable metric.")
    for option, value, example in (("device", device, "cpu"),
                                   ("feature_extractor", feature_extractor, "auto")):
        if not isinstance(value, str):
            raise OptionError(f"{option} must be a string such as \"{example}\", got "
                              f"{value!r}.")


def evaluate(model: Any = None, *, samples: Any = None, dataset: str | Dataset | None = None,
             metrics: Sequence[str] | None = None, seed: int = _DEFAULTS.seed,
             n_samples: int | None = None, device: str = _DEFAULTS.device,
             progress: bool = True, batch_size: int = _DEFAULTS.batch_size,
             dequant_samples: int = _DEFAULTS.dequant_samples,
             max_train: int = _DEFAULTS.max_train,
             feature_extractor: str = _DEFAULTS.feature_extractor,
             inception_weights: str | None = None, data_root: str | None = None,
             name: str | None = None, workers: int = 1, address: str | None = None,
             cpus_per_worker: float = 1, gpus_per_worker: float = 0,
             threads: int | None = None) -> Results:
    """Evaluate a model, or stored samples, on a dataset.

    Args:
        model: a model file's path, a :class:`~gmbench.models.model.Model`, or any object
            with ``sample(n)`` and/or ``log_prob(x)`` (the contract's section 2).
        samples: instead of a model, stored samples: an array or tensor, a ``.npz`` / ``.npy``
            file or a folder of PNG images (sample metrics only).
        dataset: a dataset name (``gmbench.list_datasets()``) or a loaded dataset (default: a
            model file's ``DATASET``, else ``digits``).
        metrics: metric keys (default: every metric the model and dataset allow).
        seed: run seed; every random draw derives from it.
        n_samples: samples for sample metrics (default: the test split's size, at least 2,000
            and at most 10,000; for stored samples, all of them).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        progress: show progress bars on a terminal.
        batch_size, dequant_samples, max_train, feature_extractor, inception_weights: as the
            command line's options.
        data_root: a folder holding dataset files.
        name: the model's name in the results (default: the file's ``NAME`` or name, the
            object's ``NAME`` or class).
        workers: split sampling and feature extraction over this many Ray workers (a model
            file and a dataset name only; needs ``pip install "gmbench[ray]"``); the metrics
            are computed once, here, and equal a one-process run's within 1e-6 relative.
        address: the Ray cluster of the workers (default: a local Ray on this machine).
        cpus_per_worker, gpus_per_worker: each worker's Ray resource request.
        threads: the run's whole CPU thread budget (torch, BLAS and gmbench's background
            worker together; default: torch's current count). Values do not depend on it
            beyond float rounding; on a busy machine fewer threads can be faster.

    Raises:
        GmbenchError: bad input (model, samples, dataset, metric, option), with what to do.
    """
    seed, n_samples, batch_size, dequant_samples, max_train = (
        _as_int(v) for v in (seed, n_samples, batch_size, dequant_samples, max_train))
    metrics = _as_list(metrics)
    _check_options(seed=seed, n_samples=n_samples, batch_size=batch_size,
                   dequant_samples=dequant_samples, max_train=max_train, dataset=dataset,
                   metrics=metrics, device=device, feature_extractor=feature_extractor)
    device = parse_device(device)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise OptionError(f"workers must be a whole number of at least 1, got {workers!r}.")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                or threads < 1):
        raise OptionError(f"threads must be a whole number of at least 1, got {threads!r}.")
    if workers > 1 and (samples is not None or not isinstance(model, (str, Path))
                        or not (dataset is None or isinstance(dataset, str))):
        raise OptionError("workers > 1 needs a model file and a dataset name (each worker "
                          "loads both itself); evaluate objects and stored samples with "
                          "workers=1.")
    with process_state(), progress_shown(progress), thread_budget(threads):
        if isinstance(model, (str, Path)) and samples is None:
            module, source = import_model_file(model)
            data = _dataset(dataset or source.dataset or "digits", data_root)
            built = build_model(module, source, data.info, device)
            if name:
                built.source = replace(built.source, name=name)
        else:
            data = _dataset(dataset or "digits", data_root)
            built = _as_model(model, samples, data, device, name)
        if samples is not None:
            stored = len(built.obj)
            if stored < MIN_SAMPLES:
                raise ModelError(f"{built.source.path} holds {stored} samples; sample metrics "
                                 f"need at least {MIN_SAMPLES} (the Inception Score's 10 "
                                 "splits, the k-NN balls). Store more samples.")
            n_samples = stored if n_samples is None else n_samples
        if dequant_samples > 1 and built.log_prob_space != "dequantized":
            if "log_prob" in built.capabilities:
                warn(f"--dequant-samples {dequant_samples} applies to models with "
                     "log_prob_space = \"dequantized\"; this model scores the data itself, so "
                     "one draw is used (and recorded)")
            dequant_samples = 1
        config = EvalConfig(seed=seed, n_samples=n_samples, batch_size=batch_size,
                            dequant_samples=dequant_samples, max_train=max_train,
                            device=device, feature_extractor=feature_extractor,
                            inception_weights=inception_weights)
        precomputed: dict[str, Any] = {}
        if workers > 1 and "sample" in built.capabilities and needs_samples(built, data,
                                                                              metrics):
            precomputed = _gather_shards(built, data, config, workers, address=address,
                                         data_root=data_root, cpus=cpus_per_worker,
                                         gpus=gpus_per_worker)
        extra = precomputed.pop("provenance", None)
        run, artifacts = run_evaluation(built, data, config, metrics, precomputed=precomputed,
                                        provenance_extra=extra)
    return Results.from_run(run, artifacts)


def _gather_shards(built: Any, data: Dataset, config: EvalConfig, workers: int, *,
                   address: str | None, data_root: str | None, cpus: float, gpus: float
                   ) -> dict[str, Any]:
    """The samples and their feature pass, drawn and extracted by ``workers`` Ray tasks."""
    from gmbench.distributed.ray_runtime import ray_session
    from gmbench.distributed.shards import gather_samples
    from gmbench.evaluation import check_sample_budget, default_n_samples

    n = config.n_samples if config.n_samples is not None else default_n_samples(len(data.test))
    check_sample_budget(n, data)
    with ray_session(address) as ray:
        return gather_samples(ray, model_path=str(built.source.path), dataset=data.info.name,
                              data_root=data_root, device=config.device, n=n,
                              seed=config.seed, shards=workers,
                              extractor=config.feature_extractor,
                              inception_weights=config.inception_weights, cpus=cpus, gpus=gpus)


def list_metrics() -> list[Metric]:
    """Every registered metric (key, description, needs, unit, direction, protocol)."""
    from gmbench.metrics import METRICS

    return list(METRICS.values())


def list_baselines(dataset: str | None = None) -> list[str]:
    """The bundled baseline families, of one dataset or of all."""
    from gmbench.present.baseline_list import bundled_families

    return bundled_families(dataset)

