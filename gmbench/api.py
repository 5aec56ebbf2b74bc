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
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gmbench.core.background import thread_budget
from gmbench.core.device import parse_device
from gmbench.core.progress import progress_shown
from gmbench.datasets import Dataset, get_dataset, list_datasets
from gmbench.errors import ModelError, warn
from gmbench.models.boundary import process_state
from gmbench.models.model import (
    Model,
    ModelSource,
    build_model,
    import_model_file,
    object_identity,
)
from gmbench.models.stored import StoredSamples, read_samples
from gmbench.run.evaluation import needs_samples, run_evaluation
from gmbench.run.outputs import Artifacts
from gmbench.run.request import MIN_SAMPLES, OptionError, RunRequest
from gmbench.storage.per_example import PerExample
from gmbench.storage.results import MetricRecord, RunResult

if TYPE_CHECKING:
    import pandas

    from gmbench.distributed.shards import Gathered
    from gmbench.gate.check import CheckReport
    from gmbench.metrics.metric import Metric
    from gmbench.storage.leaderboard import BoardRow

__all__ = ["MetricRecord", "Results", "evaluate", "list_baselines", "list_datasets",
           "list_metrics", "load_model"]

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

    records: dict[str, MetricRecord] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # parsed once, here
        object.__setattr__(self, "records", {k: MetricRecord.from_dict(k, rec) for k, rec
                                             in self.document["metrics"].items()})

    @property
    def metrics(self) -> dict[str, MetricRecord]:
        return dict(self.records)

    @property
    def skipped(self) -> dict[str, str]:
        return dict(self.document.get("skipped") or {})

    def __getitem__(self, key: str) -> MetricRecord:
        try:
            return self.records[key]
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
        ``report.html`` into the folder ``out``, all at once (:func:`gmbench.run.outputs.write_run`)."""
        from gmbench.errors import BoardError, warn
        from gmbench.run.outputs import run_files, write_run
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

        from gmbench.gate.check import check_results, parse_allowed, parse_tolerances
        from gmbench.metrics import registered_definitions
        from gmbench.storage.leaderboard import read_board
        from gmbench.storage.per_example import stored

        if metrics is not None and not isinstance(metrics, (str, bytes)):
            metrics = list(metrics)
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

    return DatasetInfo(name=record["name"], kind=record["kind"],  # not a metric: a dataset
                       shape=tuple(record["shape"]),
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


def evaluate(model: Any = None, *, request: RunRequest | None = None, progress: bool = True,
             **options: Any) -> Results:
    """Evaluate a model, or stored samples, on a dataset.

    Args:
        model: a model file's path, a :class:`~gmbench.models.model.Model`, or any object
            with ``sample(n)`` and/or ``log_prob(x)`` (``docs/CONTRACT.md``, section 2).
        request: the whole run as a :class:`~gmbench.run.request.RunRequest` (default: its
            defaults); ``model`` and ``options`` override its fields.
        progress: show progress bars on a terminal.
        **options: any field of :class:`~gmbench.run.request.RunRequest`, e.g.
            ``samples`` (stored samples instead of a model: an array or tensor, a ``.npz`` /
            ``.npy`` file or a folder of PNG images), ``dataset``, ``metrics``, ``seed``,
            ``n_samples``, ``device``, ``batch_size``, ``dequant_samples``, ``max_train``,
            ``feature_extractor``, ``inception_weights``, ``data_root``, ``name`` (the model's
            name in the results), ``workers`` (split sampling and feature extraction over this
            many Ray workers: a model file and a dataset name only; the metrics are computed
            once, here, and equal a one-process run's within 1e-6 relative), ``address``,
            ``cpus_per_worker``, ``gpus_per_worker`` and ``threads`` (the run's whole CPU
            thread budget; values do not depend on it beyond float rounding).

    Raises:
        GmbenchError: bad input (model, samples, dataset, metric, option), with what to do.
    """
    req = (request or RunRequest()).with_options(**options)
    if model is not None:
        req = replace(req, model=model)
    req = replace(req.check(), device=parse_device(req.device))
    if req.workers > 1 and (req.samples is not None or not isinstance(req.model, (str, Path))
                            or not (req.dataset is None or isinstance(req.dataset, str))):
        raise OptionError("workers > 1 needs a model file and a dataset name (each worker "
                          "loads both itself); evaluate objects and stored samples with "
                          "workers=1.")
    with process_state(), progress_shown(progress), thread_budget(req.threads):
        if isinstance(req.model, (str, Path)) and req.samples is None:
            module, source = import_model_file(req.model)
            data = _dataset(req.dataset or source.dataset or "digits", req.data_root)
            built = build_model(module, source, data.info, req.device)
            if req.name:
                built.source = replace(built.source, name=req.name)
        else:
            data = _dataset(req.dataset or "digits", req.data_root)
            built = _as_model(req.model, req.samples, data, req.device, req.name)
        if req.samples is not None:
            stored = len(built.obj)
            if stored < MIN_SAMPLES:
                raise ModelError(f"{built.source.path} holds {stored} samples; sample metrics "
                                 f"need at least {MIN_SAMPLES} (the Inception Score's 10 "
                                 "splits, the k-NN balls). Store more samples.")
            req = replace(req, n_samples=stored if req.n_samples is None else req.n_samples)
        if req.dequant_samples > 1 and built.log_prob_space != "dequantized":
            if "log_prob" in built.capabilities:
                warn(f"--dequant-samples {req.dequant_samples} applies to models with "
                     "log_prob_space = \"dequantized\"; this model scores the data itself, so "
                     "one draw is used (and recorded)")
            req = replace(req, dequant_samples=1)
        gathered = None
        if req.workers > 1 and "sample" in built.capabilities and needs_samples(
                built, data, req.metrics):
            gathered = _gather_shards(replace(req, model=str(built.source.path),
                                              dataset=data.info.name), data)
        run, artifacts = run_evaluation(built, data, req, req.metrics, gathered=gathered)
    return Results.from_run(run, artifacts)


def _gather_shards(req: RunRequest, data: Dataset) -> Gathered:
    """The samples and their feature pass, drawn and extracted by ``req.workers`` Ray tasks."""
    from gmbench.distributed.ray_runtime import ray_session
    from gmbench.distributed.shards import gather_samples
    from gmbench.run.evaluation import check_sample_budget, default_n_samples

    n = req.n_samples if req.n_samples is not None else default_n_samples(len(data.test))
    check_sample_budget(n, data)
    with ray_session(req.address) as ray:
        return gather_samples(ray, req, n)


def list_metrics() -> list[Metric]:
    """Every registered metric (key, description, needs, unit, direction, protocol)."""
    from gmbench.metrics import METRICS

    return list(METRICS.values())


def list_baselines(dataset: str | None = None) -> list[str]:
    """The bundled baseline families, of one dataset or of all."""
    from gmbench.models.bundled import bundled_families

    return bundled_families(dataset)

