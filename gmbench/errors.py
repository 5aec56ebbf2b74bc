"""gmbench's errors, as users catch them (defined in :mod:`gmbench.core.errors`)."""

from gmbench.core.errors import (
    BoardError,
    DatasetError,
    GmbenchError,
    MetricError,
    ModelError,
    did_you_mean,
    warn,
)

__all__ = ["BoardError", "DatasetError", "GmbenchError", "MetricError", "ModelError",
           "did_you_mean", "warn"]
