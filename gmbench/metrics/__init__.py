"""Metrics: the registry and every metric module (importing a module registers its metrics)."""

from gmbench.metrics import likelihood  # noqa: F401  (registers)
from gmbench.metrics import divergence  # noqa: F401,I001  (registers)
from gmbench.metrics import memorization, cas, autoencoder  # noqa: F401,I001  (registers)
from gmbench.metrics import sample_quality  # noqa: F401,I001  (registers)
from gmbench.metrics.registry import METRICS, Measurement, Metric, get_metric, register

__all__ = ["METRICS", "Measurement", "Metric", "get_metric", "register"]
