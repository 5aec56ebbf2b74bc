"""Uncertainty: point estimates with a standard error and a 95% interval.

Every number gmbench reports is an :class:`Estimate`. The functions here are pure: they take
arrays (per-example values) and return estimates; they never touch global RNG state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import special, stats

__all__ = [
    "Z95",
    "Estimate",
    "bootstrap_estimate",
    "clopper_pearson",
    "difference",
    "logmeanexp",
    "mean_estimate",
    "monotone_transform",
]

Z95 = float(stats.norm.ppf(0.975))  # 1.959963984540054


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """A point estimate with its spread. Build one with a named constructor
    (:meth:`normal`, :meth:`binomial`, :meth:`not_estimable`) or with every field named.

    Attributes:
        value: the estimate.
        stderr: its standard error (``nan`` when undefined, e.g. ``n = 1``).
        ci_low, ci_high: a 95% confidence interval.
        n: the number of independent units it was computed from.
        ci_method: how the interval was made, e.g. ``"normal"`` or ``"bootstrap-percentile"``.
    """

    value: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int
    ci_method: str

    @classmethod
    def normal(cls, value: float, stderr: float, *, n: int, method: str,
               low: float = -math.inf, high: float = math.inf) -> Estimate:
        """``value ± 1.96 stderr``, clipped to ``[low, high]`` (the metric's range)."""
        return cls(value=value, stderr=stderr, ci_low=max(low, value - Z95 * stderr),
                   ci_high=min(high, value + Z95 * stderr), n=n, ci_method=method)

    @classmethod
    def binomial(cls, successes: int, n: int, *, method: str = "clopper-pearson") -> Estimate:
        """A proportion ``successes / n`` with its exact (Clopper–Pearson) interval."""
        p = successes / n
        low, high = clopper_pearson(successes, n)
        return cls(value=p, stderr=math.sqrt(p * (1 - p) / n), ci_low=low, ci_high=high, n=n,
                   ci_method=method)

    @classmethod
    def not_estimable(cls, *, n: int, method: str = "not estimable") -> Estimate:
        """No value: every number ``nan`` (written as null)."""
        return cls(value=math.nan, stderr=math.nan, ci_low=math.nan, ci_high=math.nan, n=n,
                   ci_method=method)

    def shifted(self, delta: float, *, method: str | None = None) -> Estimate:
        """The same estimate moved by ``delta`` (value and interval)."""
        return replace(self, value=self.value + delta, ci_low=self.ci_low + delta,
                       ci_high=self.ci_high + delta, ci_method=method or self.ci_method)

    def reaching_up_to(self, floor: float, *, why: str) -> Estimate:
        """The interval's upper end raised to ``floor`` where the whole interval lies below
        it, the method naming ``why``: for a population value that cannot be below ``floor``
        (a squared distance is never below 0) while its unbiased estimate can. Only widens,
        so never loses coverage; the value, and any interval reaching ``floor``, unchanged."""
        if not self.ci_high < floor:  # reaches it (or is nan)
            return self
        return replace(self, ci_high=floor, ci_method=f"{self.ci_method}; {why}")

    def contains(self, x: float) -> bool:
        return self.ci_low <= x <= self.ci_high


def mean_estimate(values: np.ndarray) -> Estimate:
    """Mean of i.i.d. per-example values with a normal (CLT) 95% interval.

    Args:
        values: shape ``(n,)``, finite.
    """
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    mean = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Estimate.normal(mean, se, n=n, method="normal")


def difference(a: Estimate, b: Estimate) -> Estimate:
    """``a - b`` for independent estimates; standard errors add in quadrature."""
    se = math.hypot(a.stderr, b.stderr)
    value = a.value - b.value
    return Estimate.normal(value, se, n=min(a.n, b.n), method="normal")


def monotone_transform(
    est: Estimate, f: Callable[[float], float], df: Callable[[float], float]
) -> Estimate:
    """Push an estimate through an increasing function ``f`` with derivative ``df``.

    The interval maps endpoint by endpoint (exact for a monotone ``f``); the standard error
    uses the delta method, ``|f'(value)| * stderr``.
    """
    return replace(
        est,
        value=f(est.value),
        stderr=abs(df(est.value)) * est.stderr,
        ci_low=f(est.ci_low),
        ci_high=f(est.ci_high),
        ci_method=f"{est.ci_method} (transformed)",
    )


def logmeanexp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """``log(mean(exp(a)))`` along ``axis``, computed stably."""
    a = np.asarray(a, dtype=np.float64)
    return special.logsumexp(a, axis=axis) - math.log(a.shape[axis])


def bootstrap_estimate(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    rng: np.random.Generator,
    n_boot: int = 1000,
    value: float | None = None,
) -> Estimate:
    """Percentile bootstrap over ``n`` i.i.d. units.

    Args:
        statistic: maps an index array of shape ``(n,)`` (a resample of ``range(n)``) to a
            number; called once with ``arange(n)`` for the point estimate unless ``value``
            is given.
        n: number of units.
        rng: the generator for resampling (derive it from the run seed).
        n_boot: number of resamples.
        value: the point estimate, if already computed.
    """
    point = statistic(np.arange(n)) if value is None else value
    boots = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    low, high = np.quantile(boots, [0.025, 0.975])
    return Estimate(value=float(point), stderr=float(boots.std(ddof=1)), ci_low=float(low),
                    ci_high=float(high), n=n, ci_method=
                    f"bootstrap-percentile ({n_boot} resamples)")


def clopper_pearson(k: int, n: int, *, confidence: float = 0.95, side: str = "two-sided"
                    ) -> tuple[float, float]:
    """Exact binomial interval for a proportion ``k / n``.

    Args:
        k: successes; n: trials.
        confidence: coverage of the interval.
        side: ``"two-sided"``, or ``"lower"`` for a one-sided lower bound (upper is 1).
    """
    alpha = 1.0 - confidence
    if side == "lower":
        low = 0.0 if k == 0 else float(stats.beta.ppf(alpha, k, n - k + 1))
        return low, 1.0
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high
