"""The version of gmbench (recorded in every results file and board row)."""

__version__ = "0.2.0"
