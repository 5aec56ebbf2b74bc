"""Exact-likelihood Monte Carlo estimates of ``KL(P||Q)`` and ``TV(P, Q)``: over fresh draws
``x ~ P``, ``KL = E_P[log p - log q]`` and ``TV = E_P[max(0, 1 - q/p)]`` (needs ``log p`` and
``log q``). Pure functions; randomness comes in through the ``draw`` callback."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gmbench.estimators.uncertainty import Estimate, mean_estimate

__all__ = ["LN20", "MonteCarloKLTV", "MonteCarloTarget", "ROUNDING_TOL", "importance_mass", "kl_tv_from_log_ratios", "lr_test_samples", "monte_carlo_kl_tv"]

LN20 = math.log(20.0)  # -log(0.05): the evidence (nats) a 95% likelihood-ratio test needs
ROUNDING_TOL = 1e-5  # nats: float32 rounding of a model's log_prob

def kl_tv_from_log_ratios(log_p: np.ndarray, log_q: np.ndarray, *,
                          rounding_tol: float = ROUNDING_TOL) -> tuple[Estimate, Estimate]:
    """``KL(P||Q)`` and ``TV(P, Q)`` from log-densities at draws ``x ~ P``.

    ``KL = mean(log p - log q)``; ``TV = mean(max(0, 1 - q/p))`` (since
    ``TV = int (p - q)_+ = E_P[(1 - q/p)_+]``). Both intervals are normal (CLT) intervals of a
    mean of i.i.d. terms. Float rounding of ``log q`` (float32 models) is absorbed by
    ``rounding_tol``: the KL interval is widened by it on each side, and TV terms with
    ``log p - log q <= rounding_tol`` count as 0 (so the true model scores TV exactly 0; the
    change to TV is at most ``rounding_tol``).

    Args:
        log_p: ``(n,)`` nats, ``log p(x_i)`` under the true distribution.
        log_q: ``(n,)`` nats, ``log q(x_i)`` under the model, at the same points.
        rounding_tol: nats.

    Returns:
        ``(kl, tv)``: KL in nats, TV in ``[0, 1]``.
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    assert log_p.shape == log_q.shape and log_p.ndim == 1
    log_ratio = log_p - log_q  # (n,)
    kl = mean_estimate(log_ratio)
    kl = Estimate(value=kl.value, stderr=kl.stderr, ci_low=kl.ci_low - rounding_tol,
                  ci_high=kl.ci_high + rounding_tol, n=kl.n, ci_method=
                  f"normal (CLT over {kl.n} fresh draws x ~ P)")
    tv_terms = np.where(log_ratio > rounding_tol, -np.expm1(-np.maximum(log_ratio, 0.0)), 0.0)
    tv = mean_estimate(tv_terms)
    if not math.isfinite(tv.stderr):
        tv = Estimate(value=tv.value, stderr=0.0, ci_low=tv.value, ci_high=tv.value, n=tv.n,
                      ci_method=tv.ci_method)
    tv = Estimate(value=tv.value, stderr=tv.stderr, ci_low=max(0.0, tv.ci_low),
                  ci_high=min(1.0, tv.ci_high), n=tv.n, ci_method=
                  f"normal (CLT over {tv.n} fresh draws x ~ P), clipped to [0, 1]")
    return kl, tv


@dataclass(frozen=True)
class MonteCarloTarget:
    """When exact-likelihood Monte Carlo stops drawing.

    Rounds of ``round_size`` fresh draws continue until the 95% half-width of both KL and TV is
    at most ``max(rel_tol * |value|, abs_tol)``, or ``max_rounds`` rounds have been drawn.
    """

    rel_tol: float = 0.01
    abs_tol: float = 0.005
    round_size: int = 10_000
    max_rounds: int = 10

    def met(self, est: Estimate) -> bool:
        half = 0.5 * (est.ci_high - est.ci_low)
        return half <= max(self.rel_tol * abs(est.value), self.abs_tol)

    def describe(self) -> str:
        return (f"95% half-width <= max({self.rel_tol:g} * |value|, {self.abs_tol:g}); "
                f"rounds of {self.round_size} draws, at most {self.max_rounds} rounds")


@dataclass(frozen=True)
class MonteCarloKLTV:
    """Result of :func:`monte_carlo_kl_tv`: both estimates and how they were reached."""

    kl: Estimate
    tv: Estimate
    rounds: int
    target_met: bool
    target: MonteCarloTarget
    dropped: int = 0  # draws with a non-finite log p (float rounding onto a support edge)


def monte_carlo_kl_tv(draw: Callable[[int, int], tuple[np.ndarray, np.ndarray]], *,
                      target: MonteCarloTarget = MonteCarloTarget(),
                      rounding_tol: float = ROUNDING_TOL) -> MonteCarloKLTV:
    """KL and TV by Monte Carlo in rounds, until ``target`` is met or the draws are capped.

    Args:
        draw: ``draw(round_index, n)`` returns ``(log_p, log_q)``, each ``(n,)`` nats, at ``n``
            fresh draws ``x ~ P`` (a new, independent set each round).
        target: the stopping rule.
        rounding_tol: see :func:`kl_tv_from_log_ratios`.

    The stopping rule looks at the data (sequential sampling), which makes the nominal 95%
    slightly optimistic; with rounds of 10k draws the effect is negligible.
    """
    log_p_all: list[np.ndarray] = []
    log_q_all: list[np.ndarray] = []
    dropped = 0
    for r in range(target.max_rounds):
        log_p, log_q = (np.asarray(a, np.float64) for a in draw(r, target.round_size))
        # a draw of P has p > 0; a float32 draw rounded onto the edge of P's support may not
        keep = np.isfinite(log_p)
        dropped += int((~keep).sum())
        log_p_all.append(log_p[keep])
        log_q_all.append(log_q[keep])
        kl, tv = kl_tv_from_log_ratios(np.concatenate(log_p_all), np.concatenate(log_q_all),
                                       rounding_tol=rounding_tol)
        if target.met(kl) and target.met(tv):
            return MonteCarloKLTV(kl, tv, r + 1, True, target, dropped)
    return MonteCarloKLTV(kl, tv, target.max_rounds, False, target, dropped)


def importance_mass(log_p: np.ndarray, log_q: np.ndarray, *,
                    z: float = 4.0) -> tuple[float, float, int]:
    """The model's total mass on P's support, ``E_P[q/p]``, from draws ``x ~ P``.

    For a normalised ``q`` this is at most 1, so a lower confidence bound above 1 shows that
    ``log q`` is not normalised. The bound is ``mean - z * stderr`` (one-sided normal): for the
    heavy right tail ``q/p`` can have, a rare large term raises the stderr as much as the mean,
    so the bound errs low (a missed detection), not high.

    Args:
        log_p, log_q: ``(n,)`` nats at the same draws; draws with non-finite ``log p`` (float
            rounding onto the edge of P's support) are dropped.
        z: sigmas of the one-sided bound.

    Returns:
        ``(mean, lower_bound, n_used)``; both ``inf`` when a ratio overflows (``q/p > e^709`` at a
        draw of P, which a normalised ``q`` allows with probability at most ``e^-709``).
    """
    log_p = np.asarray(log_p, np.float64)
    log_q = np.asarray(log_q, np.float64)
    keep = np.isfinite(log_p)
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.exp(log_q[keep] - log_p[keep])  # (n_used,)
    n = len(ratio)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(ratio.mean())
    if not math.isfinite(mean):
        return math.inf, math.inf, n
    if n == 1:
        return mean, math.nan, n
    return mean, mean - z * float(ratio.std(ddof=1)) / math.sqrt(n), n


def lr_test_samples(kl: float) -> float:
    """Approximate number of i.i.d. draws from ``P`` a likelihood-ratio test needs to reject
    ``Q`` at 95% confidence: ``ln(20) / KL`` (the expected log-likelihood ratio grows by ``KL``
    nats per draw; 95% needs about ``ln 20`` nats). A rough Chernoff–Stein-style readout,
    not a power calculation; ``inf`` when ``KL <= 0``."""
    return LN20 / kl if kl > 0 else math.inf
