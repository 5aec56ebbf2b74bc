"""Moved to :mod:`gmbench.features.fidelity`; importing this name still registers the bundled
classifiers with torch-fidelity (``gmbench-<dataset>``), with a deprecation warning."""

import warnings

from gmbench.features.fidelity import (  # noqa: F401
    FidelityClassifier,
    fidelity_name,
    register_with_torch_fidelity,
)

warnings.warn("gmbench.extractors.fidelity moved to gmbench.features.fidelity",
              DeprecationWarning, stacklevel=2)
