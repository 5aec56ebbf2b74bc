"""Exact-likelihood Monte Carlo estimates of ``KL(P||Q)`` and ``TV(P, Q)``: over fresh draws
``x ~ P``, ``KL = E_P[log p - log q]`` and ``TV = E_P[max(0, 1 - q/p)]`` (needs ``log p`` and
``log q``). Pure functions; randomness comes in through the ``draw`` callback."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gmbench.estimators.uncertainty import Estimate, mean_estimate

__all__ = ["LN20", "MASS_CAP", "MASS_DELTA", "MonteCarloKLTV", "MonteCarloTarget", "ROUNDING_TOL",
           "importance_mass", "kl_tv_from_log_ratios", "lr_test_samples", "markov_mass_excess",
           "monte_carlo_kl_tv"]

LN20 = math.log(20.0)  # -log(0.05): the evidence (nats) a 95% likelihood-ratio test needs
ROUNDING_TOL = 1e-5  # nats: float32 rounding of a model's log_prob
MASS_CAP = 10.0  # importance weights above this count as this in the mass bound
MASS_DELTA = 1e-4  # the probability that the mass bound refuses a normalised model

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


def importance_mass(log_w: np.ndarray, *, cap: float = MASS_CAP, delta: float = MASS_DELTA
                    ) -> tuple[float, float, int]:
    """A lower confidence bound on a total mass ``E[W]`` from i.i.d. nonnegative importance
    weights ``W = exp(log_w)``, valid however heavy their tail.

    For a normalised model the mass is at most 1: ``W = q(x)/p(x)`` at draws ``x ~ P`` (its
    mass on P's support), ``W = L^D q(x)`` at uniform draws over all ``L^D`` discrete points,
    and the same with a stochastic ``q`` whose ``exp`` is unbiased or biased low (IWAE, an
    ELBO's weight, a dequantization draw). The weights are capped at ``cap`` (which only
    lowers their mean) and the empirical Bernstein inequality (Maurer & Pontil 2009, Thm. 4)
    bounds the mean of the capped weights from below with probability ``1 - delta``: a bound
    above 1 shows that ``q`` is not normalised, with a false refusal of a normalised model at
    most ``delta`` likely, whatever the distribution of ``W``.

    Args:
        log_w: ``(n,)`` log-weights (``-inf``: a weight of 0); NaN ones are dropped (drop
            draws with ``log p = -inf``, float rounding onto the edge of P's support, before).
        cap: the cap; a mass above it is seen as ``cap``.
        delta: the false-refusal probability of the bound.

    Returns:
        ``(mean, lower_bound, n_used)``: the mean of the uncapped weights (``inf`` when one
        overflows) and the bound on the mass.

    References:
        Maurer, Pontil, "Empirical Bernstein bounds and sample variance penalization", COLT
        2009.
    """
    log_w = np.asarray(log_w, np.float64)
    log_w = log_w[~np.isnan(log_w)]
    n = len(log_w)
    if n == 0:
        return math.nan, math.nan, 0
    with np.errstate(over="ignore"):
        mean = float(np.exp(log_w).mean())
    capped = np.exp(np.minimum(log_w, math.log(cap))) / cap  # (n,) in [0, 1]
    if n < 2:
        return mean, math.nan, n
    log_term = math.log(2.0 / delta)
    bound = (float(capped.mean()) - math.sqrt(2.0 * float(capped.var(ddof=1)) * log_term / n)
             - 7.0 * log_term / (3.0 * (n - 1)))
    return mean, cap * bound, n


def markov_mass_excess(log_masses: np.ndarray, *, stochastic: bool,
                       rounding: float = 1e-3, delta: float = MASS_DELTA) -> float | None:
    """The total ``sum(exp(log_masses))`` over distinct points when it proves the masses are
    not normalised, else ``None``: an exact log-mass may exceed 1 only by float rounding
    (``rounding`` nats); a stochastic one (``exp`` unbiased or biased low) has expectation at
    most 1, so by Markov's inequality it exceeds ``1 / delta`` with probability at most
    ``delta``, however heavy its tail."""
    from scipy.special import logsumexp

    total = float(logsumexp(np.asarray(log_masses, np.float64)))
    limit = math.log(1 / delta) if stochastic else rounding
    return math.exp(min(total, 709.0)) if total > limit else None


def lr_test_samples(kl: float) -> float:
    """Approximate number of i.i.d. draws from ``P`` a likelihood-ratio test needs to reject
    ``Q`` at 95% confidence: ``ln(20) / KL`` (the expected log-likelihood ratio grows by ``KL``
    nats per draw; 95% needs about ``ln 20`` nats). A rough Chernoff–Stein-style readout,
    not a power calculation; ``inf`` when ``KL <= 0``."""
    return LN20 / kl if kl > 0 else math.inf
