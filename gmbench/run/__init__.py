"""A run of gmbench: its request (:mod:`gmbench.run.request`), defined once and shared by the
command line, the Python API and sweeps."""

from gmbench.run.request import OptionError, RunRequest

__all__ = ["OptionError", "RunRequest"]
