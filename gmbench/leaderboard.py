"""Moved to :mod:`gmbench.storage.leaderboard` (boards) and :mod:`gmbench.present` (their
views). ``from gmbench.leaderboard import add_results`` keeps working, with a deprecation
warning."""

import warnings

from gmbench.storage.leaderboard import (  # noqa: F401
    COLUMNS,
    BoardRow,
    add_results,
    add_rows,
    read_board,
    rows_from_results,
)

warnings.warn("gmbench.leaderboard moved to gmbench.storage.leaderboard", DeprecationWarning,
              stacklevel=2)
