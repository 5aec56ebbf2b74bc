"""Metrics: the registry and every metric module (importing a module registers its metrics).

The import order below is the order of the report: likelihood, divergences, sample quality,
memorization, train-on-synthetic accuracy, autoencoding, text.
"""
# ruff: noqa: I001, F401  (imports for their registration side effect, in report order)

from gmbench.metrics import likelihood
from gmbench.metrics import divergence
from gmbench.metrics import sample_quality
from gmbench.metrics import memorization
from gmbench.metrics import cas
from gmbench.metrics import autoencoder
from gmbench.metrics import text
from gmbench.metrics.metric import (
    METRICS, Measurement, Metric, get_metric, register, registered_definitions,
    registered_directions,
)

__all__ = ["METRICS", "Measurement", "Metric", "get_metric", "register",
           "registered_definitions", "registered_directions"]
