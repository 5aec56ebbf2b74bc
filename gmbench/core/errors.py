"""Exceptions that reach the user as a one-paragraph message and a non-zero exit.

Every error raised for bad input is a :class:`GmbenchError`; the command line prints its
message (which says what went wrong *and* what to do) and exits with status 2, never a
traceback. Internal invariants use ``assert``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "BoardError",
    "DatasetError",
    "GmbenchError",
    "MetricError",
    "ModelError",
    "did_you_mean",
    "warn",
]


class GmbenchError(Exception):
    """Bad input that the user can fix; the message says how."""

    exit_code: int = 2


class ModelError(GmbenchError):
    """The model file, or what one of its members returned, breaks the contract
    (``docs/CONTRACT.md``, section 2)."""


class DatasetError(GmbenchError):
    """An unknown, missing or corrupt dataset."""


class MetricError(GmbenchError):
    """An unknown metric, or one the model or dataset cannot support."""


class BoardError(GmbenchError):
    """An unreadable, corrupt or inconsistent results file or leaderboard."""


def warn(message: str) -> None:
    """Print ``gmbench: warning: <message>`` on stderr (a condition worth knowing that did
    not stop the run)."""
    import sys

    from gmbench.core.names import printable

    print(f"gmbench: warning: {printable(message)}", file=sys.stderr)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""
