"""A pytest helper for your own test suite: fail a test when a model regresses against its
recorded reference, with the verdict table in the failure message.

    from gmbench.testing import assert_no_regression

    def test_my_model_has_not_regressed():
        results = gmbench.evaluate("model.py", dataset="digits", seed=0, progress=False)
        assert_no_regression(results, board="gmbench-board.csv", model="my-model")
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gmbench.api import Results
from gmbench.present.verdicts import verdict_line

__all__ = ["assert_no_regression"]


def assert_no_regression(results: Results, *, board: str | os.PathLike[str],
                         model: str | None = None,
                         tolerances: Mapping[str, str | float] | None = None,
                         alpha: float = 0.05) -> None:
    """Run ``gmbench check`` on ``results`` against ``model``'s rows on ``board``; an
    ``AssertionError`` listing every verdict when a metric regressed.

    Args:
        results: from :func:`gmbench.evaluate`.
        board: the reference board (CSV).
        model: the model's name on the board (default: the name in ``results``).
        tolerances: accepted worsening per metric (``{"fid": 2.5, "*": "1%"}``).
        alpha: the family-wise false-alarm rate of the gate.
    """
    report = results.check(board, model=model, tolerances=tolerances, alpha=alpha)
    if report.regressions:
        lines = [*(f"warning: {w}" for w in report.warnings),
                 *(verdict_line(v) for v in report.verdicts)]
        names = ", ".join(v.metric for v in report.regressions)
        raise AssertionError(f"{len(report.regressions)} regression(s) ({names}) against "
                             f"'{model or results.document['model']['name']}' on {board} "
                             f"(Holm-Bonferroni, alpha {alpha:g}):\n" + "\n".join(lines))
