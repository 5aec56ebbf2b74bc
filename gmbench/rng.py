"""Seed derivation under its 0.2 name, for model files that import it (the bundled GAN does,
and a model file's sha256 identifies its board rows); defined in :mod:`gmbench.core.rng`."""

from gmbench.core.rng import *  # noqa: F403
from gmbench.core.rng import __all__  # noqa: F401
