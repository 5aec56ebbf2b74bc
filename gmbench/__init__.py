"""gmbench: an evaluation suite for generative models.

    import gmbench
    results = gmbench.evaluate(model, dataset="digits")       # or samples=..., a model file
    print(results.table())
    results["fid"].value, results["fid"].ci_low, results["fid"].ci_high

The contract (model files, datasets, metric keys, files, commands) is ``docs/CONTRACT.md``;
the command line is ``gmbench``; the package's floors, what flows between them and where to
add a metric, a dataset or an option: ``docs/ARCHITECTURE.md``.
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
