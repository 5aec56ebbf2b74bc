"""One evaluation from its request: the model (a file, an object or stored samples) and the
dataset loaded, the options settled, the samples drawn here or by Ray workers, the metrics
run, and the :class:`~gmbench.run.results.Results` returned."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gmbench.core.background import thread_budget
from gmbench.core.device import parse_device
from gmbench.core.errors import DatasetError, ModelError, warn
from gmbench.core.progress import progress_shown
from gmbench.datasets import Dataset, open_dataset
from gmbench.models.boundary import call_limit, exits_refused, process_state
from gmbench.models.model import (
    Model,
    ModelSource,
    build_model,
    import_model_file,
    object_identity,
    refuse_class,
)
from gmbench.models.stored import StoredSamples, read_samples
from gmbench.run.evaluation import needs_samples, run_evaluation
from gmbench.run.request import MIN_SAMPLES, OptionError, RunRequest
from gmbench.run.results import Results

if TYPE_CHECKING:
    from gmbench.run.shards import Gathered

__all__ = ["evaluate", "load_model"]

_ONE_AT_A_TIME = threading.RLock()


def evaluate(request: RunRequest, *, progress: bool = True) -> Results:
    """Evaluate ``request`` (checked here); see :func:`gmbench.evaluate`.

    Raises:
        GmbenchError: bad input (model, samples, dataset, metric, option), with what to do.
    """
    req = replace(request.check(), device=parse_device(request.device))
    if req.workers > 1 and (req.samples is not None or not isinstance(req.model, (str, Path))
                            or not (req.dataset is None or isinstance(req.dataset, str))):
        raise OptionError("workers > 1 needs a model file and a dataset name (each worker "
                          "loads both itself); evaluate objects and stored samples with "
                          "workers=1.")
    if req.memory is not None and not req.isolate:
        raise OptionError("--memory limits an isolated model's worker; add --isolate.")
    if req.isolate and req.workers > 1:
        raise OptionError("--isolate runs the model in one worker process per role; combine "
                          "it with --workers 1 (a sweep runs many isolated evaluations in "
                          "parallel).")
    if req.isolate and (req.samples is not None or not isinstance(req.model, (str, Path))):
        raise OptionError("--isolate runs a model file in a worker process; a model object "
                          "or stored samples are already in this process (pass the model's "
                          "file).")
    if req.timeout is not None and not req.isolate \
            and threading.current_thread() is not threading.main_thread():
        raise OptionError("timeout without isolate is enforced by a signal, which only the "
                          "main thread receives; evaluate from the main thread, or pass "
                          "isolate=True (the worker is ended instead).")
    # one evaluation at a time in a process (process-wide state: RNGs, streams, threads);
    # another thread's evaluation waits its turn. A thread the model started that calls
    # os._exit later is refused for the whole evaluation, not only while model code runs.
    with _ONE_AT_A_TIME, exits_refused(), process_state(), progress_shown(progress), \
            thread_budget(req.threads), contextlib.ExitStack() as closing, \
            call_limit(None if req.isolate else req.timeout):
        if req.isolate:
            from gmbench.models.isolated import Limits, declared_dataset, isolated_model

            path = Path(req.model)
            data = _dataset(req.dataset or declared_dataset(path) or "digits", req.data_root)
            built = isolated_model(path, data, req.device,
                                   Limits(timeout=req.timeout, memory=req.memory),
                                   name=req.name)
            closing.callback(built.obj.close)
        elif isinstance(req.model, (str, Path)) and req.samples is None:
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
        return run_evaluation(built, data, req, req.metrics, gathered=gathered)


_PLAIN = (bool, int, float, str, type(None))


def _code_sha256(obj: Any) -> str:
    """sha256 of the source of ``obj``'s class (the code that runs), else of its name, and
    of the object's plain settings (its attributes that are numbers, strings, booleans or
    ``None``, or tuples and lists of up to 1,000 of them): ``Shift(0.0)`` and ``Shift(5.0)``
    are two models. (Tensors and arrays are the weights' identity.)"""
    cls = obj if inspect.isclass(obj) else type(obj)
    try:
        text = inspect.getsource(cls)
    except (OSError, TypeError):
        text = f"{cls.__module__}.{cls.__qualname__}"
    digest = hashlib.sha256(text.encode())
    try:
        attributes = dict(vars(obj)) if not inspect.isclass(obj) else {}
    except TypeError:  # no __dict__
        attributes = {}
    plain = sorted((k, v) for k, v in attributes.items()
                   if isinstance(v, _PLAIN) or (isinstance(v, (tuple, list)) and len(v) <= 1000
                                                and all(isinstance(i, _PLAIN) for i in v)))
    if plain:
        digest.update(repr(plain).encode())
    return digest.hexdigest()


def load_model(path: str | os.PathLike[str], *, dataset: str | Dataset | None = None,
               device: str = "cpu") -> Model:
    """Import a model file and build its model for ``dataset`` (default: the file's
    ``DATASET``, else ``digits``), as ``gmbench evaluate`` does."""
    module, source = import_model_file(Path(path))
    data = _dataset(dataset or source.dataset or "digits")
    return build_model(module, source, data.info, device)


MIN_SPLIT = 10  # examples in each split: the fewest every metric's estimator takes


def _dataset(dataset: str | Dataset, data_root: str | os.PathLike[str] | None = None
             ) -> Dataset:
    data = dataset if isinstance(dataset, Dataset) else open_dataset(dataset, data_root)
    small = [(name, len(split)) for name, split in (("training", data.train),
                                                    ("test", data.test))
             if len(split) < MIN_SPLIT and split.documents is None]
    if small:
        name, n = small[0]
        raise DatasetError(f"The {name} split of {data.info.name} holds {n} example"
                           f"{'s' if n != 1 else ''}; gmbench needs at least {MIN_SPLIT} in "
                           "each split (the intervals and the neighbour-based metrics take no "
                           "fewer). Give the dataset more examples.")
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
        if model.info != data.info:
            raise ModelError(
                f"The model {model.source.name} was loaded for {model.info.name} "
                f"({_describe(model.info)}) and cannot be evaluated on {data.info.name} "
                f"({_describe(data.info)}): its load(dataset, device) built it for the other "
                "data, and its samples would be read as this dataset's. Load it for this "
                f"dataset: gmbench.load_model(path, dataset={data.info.name!r}).")
        return model
    refuse_class(model, what="the model given to gmbench.evaluate",
                 fix="pass an instance: gmbench.evaluate({name}(), ...)")
    declared, weights = object_identity(model, model_file=Path.cwd() / "model.py")
    label = name or declared or type(model).__name__
    source = ModelSource(path=Path(f"<{type(model).__module__}.{type(model).__qualname__}>"),
                         name=str(label), sha256=_code_sha256(model), dataset=None,
                         weights=weights)
    return Model(model, source=source, info=data.info, device=device)


def _describe(info: Any) -> str:
    levels = "continuous" if info.levels is None else f"{info.levels} levels"
    return f"shape {tuple(info.shape)}, {levels}"


def _gather_shards(req: RunRequest, data: Dataset) -> Gathered:
    """The samples and their feature pass, drawn and extracted by ``req.workers`` Ray tasks."""
    from gmbench.run.evaluation import check_sample_budget, default_n_samples
    from gmbench.run.ray_runtime import ray_session
    from gmbench.run.shards import gather_samples

    n = req.n_samples if req.n_samples is not None else default_n_samples(len(data.test))
    check_sample_budget(n, data)
    with ray_session(req.address) as ray:
        return gather_samples(ray, req, n)


