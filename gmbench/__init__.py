"""gmbench: an evaluation suite for generative models (see SPEC.md and README.md)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
