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

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gmbench.datasets import list_datasets
from gmbench.run import runner
from gmbench.run.request import OptionError, RunRequest
from gmbench.run.results import Results
from gmbench.run.runner import load_model
from gmbench.storage.results import MetricRecord

if TYPE_CHECKING:
    from gmbench.metrics.metric import Metric

__all__ = ["MetricRecord", "OptionError", "Results", "RunRequest", "evaluate", "list_baselines",
           "list_datasets", "list_metrics", "load_model"]


def evaluate(model: Any = None, *, request: RunRequest | None = None, progress: bool = True,
             **options: Any) -> Results:
    """Evaluate a model, or stored samples, on a dataset.

    Args:
        model: a model file's path, a :class:`~gmbench.models.model.Model`, or any object
            with ``sample(n)`` and/or ``log_prob(x)`` (``docs/CONTRACT.md``, section 2).
        request: the whole run as a :class:`~gmbench.run.request.RunRequest` (default: its
            defaults); ``model`` and ``options`` override its fields.
        progress: show progress bars on a terminal.
        **options: fields of :class:`~gmbench.run.request.RunRequest` (each documented
            there): ``samples`` (stored samples instead of a model: an array or tensor, a
            ``.npz``/``.npy`` file or a folder of PNGs), ``dataset``, ``metrics``, ``seed``,
            ``n_samples``, ``workers`` (Ray workers for sampling and features), ``threads``...

    Raises:
        GmbenchError: bad input (model, samples, dataset, metric, option), with what to do.
    """
    req = (request or RunRequest()).with_options(**options)
    if model is not None:
        req = replace(req, model=model)
    return runner.evaluate(req, progress=progress)


def list_metrics() -> list[Metric]:
    """Every registered metric (key, description, needs, unit, direction, protocol)."""
    from gmbench.metrics import METRICS

    return list(METRICS.values())


def list_baselines(dataset: str | None = None) -> list[str]:
    """The bundled baseline families, of one dataset or of all."""
    from gmbench.models.bundled import bundled_families

    return bundled_families(dataset)

