"""``python -m gmbench``: the command line, as ``gmbench``."""

from gmbench.cli import entry

entry()
