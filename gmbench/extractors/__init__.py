"""Moved to :mod:`gmbench.features` (``gmbench.features.classifier`` for the bundled
classifiers). This name keeps working, with a deprecation warning."""

import warnings

from gmbench.features.classifier import (  # noqa: F401
    BUNDLED_DATASETS,
    WEIGHTS_DIR,
    BundledClassifier,
    ExtractorError,
    classifier_available,
    classifier_for,
)

warnings.warn("gmbench.extractors moved to gmbench.features (gmbench.features.classifier)",
              DeprecationWarning, stacklevel=2)
