"""gmbench: an evaluation suite for generative models.

    import gmbench
    results = gmbench.evaluate(model, dataset="digits")       # or samples=..., a model file
    print(results.table())
    results["fid"].value, results["fid"].ci_low, results["fid"].ci_high

The contract (model files, datasets, metric keys, files, commands) is ``docs/CONTRACT.md``;
the command line is ``gmbench``. The package, from the top down: ``api`` (these entry points)
and ``cli``; ``evaluation`` (one run: shared arrays and the metric loop) and ``outputs`` (a
run's folder); ``present`` (tables, reports, pictures); ``metrics`` (the registry and each
metric's wiring); ``storage`` (results files, leaderboards, the regression gate);
``estimators`` (the mathematics, pure functions); ``features`` (feature extractors and their
cache); ``models`` (the model contract and the boundary around model code); ``datasets``;
``sweeps`` (many models, datasets and seeds onto one board: ``gmbench.sweep``) and
``distributed`` (Ray underneath: sessions, sharded sampling and extraction).
"""

from gmbench.api import (
    MetricRecord,
    Results,
    evaluate,
    list_baselines,
    list_datasets,
    list_metrics,
    load_model,
)
from gmbench.core.errors import GmbenchError
from gmbench.run.sweeps import sweep
from gmbench.version import __version__

__all__ = ["GmbenchError", "MetricRecord", "Results", "__version__", "evaluate",
           "list_baselines", "list_datasets", "list_metrics", "load_model", "sweep"]
