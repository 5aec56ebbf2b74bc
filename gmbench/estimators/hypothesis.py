"""One-sided tests of a difference and the weighted Holm procedure: the statistics of the
regression gate (:mod:`gmbench.gate.check`), as pure functions.

A difference ``d`` with standard error ``se`` estimated on ``df`` degrees of freedom is tested
against "not worse" with the one-sided t-test, ``p = P(T_df >= d / se)`` (``df = inf``: the
normal test). Two independent standard errors combine by Welch–Satterthwaite. The family's
p-values go through Holm's weighted step-down procedure, which controls the family-wise error
rate at ``alpha`` for any dependence between the tests and any weights fixed in advance.

References:
    Holm, "A simple sequentially rejective multiple test procedure", Scandinavian Journal of
    Statistics 6(2), 1979 (section 4: weighted tests).
    Welch, "The generalization of Student's problem when several different population
    variances are involved", Biometrika 34, 1947; Satterthwaite, Biometrics Bulletin 2, 1946.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

__all__ = ["POWER", "detectable", "holm", "one_sided_p", "quantile", "welch_df"]

POWER = 0.8  # the power at which a gate's "detectable" worsening is quoted


def welch_df(se_a: float, df_a: float | None, se_b: float, df_b: float | None) -> float:
    """Degrees of freedom of ``sqrt(se_a^2 + se_b^2)`` (Welch–Satterthwaite); ``None`` or
    ``inf`` for a standard error known exactly or from many units. ``inf`` when both are."""
    va, vb = se_a * se_a, se_b * se_b
    da = math.inf if df_a is None else df_a
    db = math.inf if df_b is None else df_b
    denominator = (va * va / da if math.isfinite(da) else 0.0) + \
        (vb * vb / db if math.isfinite(db) else 0.0)
    if denominator == 0.0:
        return math.inf
    return max(1.0, (va + vb) ** 2 / denominator)


def quantile(level: float, df: float) -> float:
    """The ``level`` quantile of Student's t with ``df`` degrees of freedom (normal for
    ``df = inf``)."""
    return float(stats.norm.ppf(level) if not math.isfinite(df) else stats.t.ppf(level, df))


def one_sided_p(worse: float, se: float, df: float) -> float:
    """``P(T_df >= worse / se)``: the p-value of "not worse" for an observed worsening; with
    ``se = 0`` it is 0 for any worsening and 1 otherwise."""
    if se <= 0:
        return 0.0 if worse > 0 else 1.0
    z = worse / se
    return float(stats.norm.sf(z) if not math.isfinite(df) else stats.t.sf(z, df))


def detectable(se: float, df: float, level: float, *, power: float = POWER) -> float:
    """The worsening a one-sided test at ``level`` detects with probability ``power``:
    ``(t_(1 - level) + t_power) * se`` (the test statistic is ``worse / se``, shifted by the
    true worsening over ``se``)."""
    return (quantile(1 - level, df) + quantile(power, df)) * se


def holm(p_values: Sequence[float], alpha: float, weights: Sequence[float] | None = None
         ) -> list[bool]:
    """Which of ``p_values`` Holm's step-down procedure rejects at family-wise level
    ``alpha``, with optional positive ``weights`` (default equal).

    With weights normalised to sum to 1 over the hypotheses still standing, the hypothesis
    with the smallest ``p_i / w_i`` is rejected when ``p_i <= alpha * w_i / sum(w)``; it is
    then removed and the step repeats; the first that is not rejected ends the procedure.
    Equal weights give the classical procedure (``p_(j) <= alpha / (m - j + 1)``).
    """
    m = len(p_values)
    w = [1.0] * m if weights is None else [float(x) for x in weights]
    assert len(w) == m and all(x > 0 for x in w), "weights must be positive, one per p-value"
    order = sorted(range(m), key=lambda i: (p_values[i] / w[i], i))
    rejected = [False] * m
    standing = sum(w)
    for i in order:
        if p_values[i] > alpha * w[i] / standing:
            break
        rejected[i] = True
        standing -= w[i]
    return rejected
