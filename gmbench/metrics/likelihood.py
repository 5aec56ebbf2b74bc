"""Likelihood metrics: ``nll``, ``nll_train``, ``generalization_gap``, ``bits_per_dim``,
``perplexity``, ``cross_entropy``, ``entropy_gap`` (SPEC section 4).

All are functions of the per-example log-likelihoods that :class:`Context` computes once;
the interval is the normal (CLT) interval of a mean of i.i.d. test examples, transformed
exactly through monotone maps (bits/dim, perplexity).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gmbench.estimators.uncertainty import Estimate, difference, mean_estimate, monotone_transform
from gmbench.metrics.context import Context
from gmbench.metrics.metric import Measurement, Metric, register

if TYPE_CHECKING:
    from gmbench.datasets import Dataset

__all__ = ["likelihood_details", "nll_estimate"]


def discrete_only(dataset: Dataset) -> str | None:
    return None if dataset.info.is_discrete else "defined for discrete data only"


def continuous_only(dataset: Dataset) -> str | None:
    return None if not dataset.info.is_discrete else "defined for continuous data only"


def known_entropy(dataset: Dataset) -> str | None:
    if dataset.truth is None or getattr(dataset.truth, "entropy", None) is None:
        return ("needs a closed-form entropy of the data (gauss-<d>, markov-<v>, "
                "toy2d-checkerboard, toy2d-banana)")
    return None


def likelihood_details(ev: Context) -> dict[str, Any]:
    """How the likelihood was obtained: space, dequantization draws and estimator."""
    model = ev.model
    details: dict[str, Any] = {"log_prob_space": model.log_prob_space}
    if model.log_prob_space == "dequantized":
        k = ev.config.dequant_samples
        details.update({
            "dequantization": "uniform",
            "dequant_samples": k,
            "dequant_estimator": (
                "mean over draws of log p((x+u)/L) - D log L (Jensen bound on the log-mass)"
                if k == 1 else
                f"importance-weighted log-mean-exp over {k} draws (tighter bound on the log-mass)"
            ),
        })
    return details


def nll_estimate(ev: Context) -> Estimate:
    return ev.memo("nll", lambda: mean_estimate(-ev.test_log_prob))


def nll_train_estimate(ev: Context) -> Estimate:
    return ev.memo("nll_train", lambda: mean_estimate(-ev.train_log_prob))


def _measure(ev: Context, est: Estimate, **extra: Any) -> Measurement:
    return Measurement(est, feature_space="data", kind=ev.model.log_prob_kind,
                       details={**likelihood_details(ev), **extra})


def _nll(ev: Context) -> Measurement:
    return _measure(ev, nll_estimate(ev), split="test")


def _nll_train(ev: Context) -> Measurement:
    n_train = len(ev.dataset.train)
    subset = len(ev.train_index)
    return _measure(ev, nll_train_estimate(ev), split="train",
                    train_subset=f"{subset} of {n_train} (seeded)" if subset < n_train else "all")


def _gap(ev: Context) -> Measurement:
    return _measure(ev, difference(nll_estimate(ev), nll_train_estimate(ev)),
                    note="nll(test) - nll(train); a large positive gap means the model fits "
                         "its training examples far better than unseen ones (memorization)")


def _bits_per_dim(ev: Context) -> Measurement:
    scale = ev.info.dim * math.log(2)
    return _measure(ev, monotone_transform(nll_estimate(ev), lambda v: v / scale,
                                           lambda v: 1 / scale))


def _perplexity(ev: Context) -> Measurement:
    d = ev.info.dim
    per = "token" if ev.info.kind == "sequence" else "dimension"
    return _measure(ev, monotone_transform(nll_estimate(ev), lambda v: math.exp(v / d),
                                           lambda v: math.exp(v / d) / d), per=per)


def _cross_entropy(ev: Context) -> Measurement:
    return _measure(ev, nll_estimate(ev), split="test")


def _entropy_gap(ev: Context) -> Measurement:
    h = float(ev.dataset.truth.entropy)  # type: ignore[union-attr, arg-type]
    est = nll_estimate(ev)
    shifted = est.shifted(-h)
    return _measure(ev, shifted, entropy=h, note="nll - H(P) = KL(P||Q) for exact log_prob")


# protocol 2: dequantization noise is keyed on each example's index (results no longer depend
# on --batch-size); generalization_gap is judged by its distance from 0.
LIKELIHOOD_PROTOCOL = 2

for _metric in (
    Metric(key="nll", description="mean -log P(x) over the test split",
           needs=("log_prob",), higher_is_better=False, unit="nats", compute=_nll,
           protocol=LIKELIHOOD_PROTOCOL),
    Metric(key="nll_train", description="mean -log P(x) over the train split (subset <= 10k)",
           needs=("log_prob",), higher_is_better=False, unit="nats", compute=_nll_train,
           protocol=LIKELIHOOD_PROTOCOL),
    Metric(key="generalization_gap", description="nll - nll_train (about 0 ideal; large positive = memorization)",
           needs=("log_prob",), higher_is_better=False, ideal=0.0, unit="nats", compute=_gap,
           protocol=LIKELIHOOD_PROTOCOL),
    Metric(key="bits_per_dim", description="nll / (D ln 2)",
           needs=("log_prob",), higher_is_better=False, unit="bits/dim",
           compute=_bits_per_dim, applies=discrete_only, protocol=LIKELIHOOD_PROTOCOL),
    Metric(key="perplexity", description="exp(nll / D), per token or per pixel", needs=("log_prob",),
           higher_is_better=False, unit="exp(nats/dim)", compute=_perplexity,
           applies=discrete_only, protocol=LIKELIHOOD_PROTOCOL),
    Metric(key="cross_entropy", description="nll for continuous data",
           needs=("log_prob",), higher_is_better=False, unit="nats", compute=_cross_entropy,
           applies=continuous_only, protocol=LIKELIHOOD_PROTOCOL),
    Metric(key="entropy_gap", description="nll - H(P) = KL(P||Q), generated data", needs=("log_prob",),
           higher_is_better=False, unit="nats", compute=_entropy_gap, applies=known_entropy,
           protocol=LIKELIHOOD_PROTOCOL),
):
    register(_metric)
