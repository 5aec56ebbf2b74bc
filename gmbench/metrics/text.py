"""Text metrics (``docs/CONTRACT.md``, section 4, text): ``bits_per_byte``,
``char_perplexity``, ``word_perplexity`` from one total log-likelihood of the test documents;
``verbatim_copy_rate``, ``distinct_4grams`` and ``text_c2st_accuracy`` of generated passages.

The likelihood comes from the model's ``token_log_prob`` by rolling windows
(:mod:`gmbench.models.text`), or, for a model that only scores whole passages with
``log_prob``, from non-overlapping passages of :data:`~gmbench.datasets.text.PASSAGE` bytes
(no context across them; the bytes after a document's last whole passage are not scored). The
record says which, with the context, stride, window and counts of what was scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gmbench.core.rng import COMMON_SEED, child_seed, generator
from gmbench.datasets.base import Documents
from gmbench.estimators.c2st import c2st
from gmbench.estimators.text import (
    Blocks,
    char_count,
    distinct_ngrams,
    distinct_ngrams_estimate,
    per_byte_estimate,
    span_hashes,
    verbatim_hits,
    word_count,
)
from gmbench.estimators.uncertainty import Estimate, mean_estimate, monotone_transform
from gmbench.metrics.context import Context
from gmbench.metrics.likelihood import normalisation_problem
from gmbench.metrics.metric import Measurement, Metric, register
from gmbench.models.text import Windows, score_documents, tokenize_documents, windows_per_call

if TYPE_CHECKING:
    from gmbench.datasets import Dataset

__all__ = ["NORMALISATION_POSITIONS", "TextLikelihood", "text_likelihood"]

NORMALISATION_POSITIONS = 8  # positions of the test text whose full next-token mass is summed
# At most this many candidate tokens per position: a subset's mass is at most 1 too.
NORMALISATION_VOCAB = 4096
MASS_TOLERANCE = 1e-3  # float rounding of a sum of softmax probabilities
PASSAGES_PER_BLOCK = 16  # passages of a log_prob-only model per bootstrap block (4,096 bytes)
SPANS = (32, 64)  # verbatim spans, bytes
TEXT_PROTOCOL = 1


MIN_PASSAGES = 20  # held-out passages the sample checks compare with


def text_passages(dataset: Dataset) -> str | None:
    """Why the sample checks cannot compare with held-out passages, or ``None``."""
    if len(dataset.test) < MIN_PASSAGES:
        return (f"needs at least {MIN_PASSAGES} held-out passages of {dataset.info.shape[0]} "
                f"bytes; the test documents hold {len(dataset.test)}")
    return None


@dataclass(frozen=True)
class TextLikelihood:
    """The test text's losses in blocks and how they were obtained (``details``)."""

    blocks: Blocks
    details: dict[str, Any]

    @property
    def per_byte(self) -> Estimate:
        return per_byte_estimate(self.blocks)


def _docs(ev: Context, split: str) -> Documents:
    docs = getattr(ev.dataset, split).documents
    assert docs is not None, "a text dataset has documents"
    return docs


def _tokens(ev: Context) -> list[tuple[np.ndarray, np.ndarray]]:
    """The test documents tokenized once per evaluation (scoring and the mass check)."""
    return ev.memo("text/tokens", lambda: tokenize_documents(ev.model, _docs(ev, "test")))


def text_likelihood(ev: Context) -> TextLikelihood:
    """The test documents scored once per evaluation (memoized)."""
    def compute() -> TextLikelihood:
        docs = _docs(ev, "test")
        model = ev.model
        if model.text is not None:
            windows = Windows.for_model(model.text, ev.config.context, ev.config.stride)
            score = score_documents(model, docs, windows, batch_size=ev.config.batch_size,
                                    desc="token_log_prob (test)", tokenized=_tokens(ev))
            blocks = Blocks.of_bytes(score.byte_nats, docs)
            return TextLikelihood(blocks, {
                "scoring": "rolling windows", "context": windows.context,
                "stride": windows.stride, "window": windows.length,
                "tokenizer": model.text.tokenizer, "tokens_scored": score.tokens,
                "windows": score.windows, "bytes_scored": docs.n_bytes,
                "bytes_not_scored": 0})
        lp = ev.test_log_prob  # (passages,) of the test documents
        edges = np.arange(0, len(lp), PASSAGES_PER_BLOCK)
        size = ev.info.dim
        blocks = Blocks(-np.add.reduceat(lp, edges), np.diff(np.append(edges, len(lp))) * size)
        return TextLikelihood(blocks, {
            "scoring": f"non-overlapping windows of {size} bytes (log_prob of whole "
                        "passages: no context across windows)",
            "context": 0, "stride": size, "window": size, "tokenizer": "bytes",
            "bytes_scored": len(lp) * size, "bytes_not_scored": docs.n_bytes - len(lp) * size})
    return ev.memo("text/likelihood", compute)


def _token_mass_problem(ev: Context) -> str | None:
    """The full next-token mass at a few positions of the test text: every candidate token
    placed at the position, the model's probabilities summed (at most 1)."""
    model, text = ev.model, ev.model.text
    assert text is not None
    windows = Windows.for_model(text, ev.config.context, ev.config.stride)
    docs = _docs(ev, "test")
    rng = generator(COMMON_SEED, "text-normalisation")
    vocab = np.arange(min(text.vocab_size, NORMALISATION_VOCAB))
    worst = (0.0, "")
    nonempty = np.flatnonzero(np.diff(docs.starts) > 0)
    for d in nonempty[rng.integers(0, len(nonempty), NORMALISATION_POSITIONS)]:
        ids, _ = _tokens(ev)[int(d)]
        if len(ids) == 0:
            continue
        length = min(windows.length, len(ids))
        start = int(rng.integers(0, len(ids) - length + 1))
        window = ids[start:start + length]
        if text.bos_token_id is not None and start == 0:
            window = np.concatenate([[text.bos_token_id], window[:-1]])
        step = windows_per_call(ev.config.batch_size, len(window))
        mass = 0.0
        for i in range(0, len(vocab), step):
            batch = np.repeat(window[None], len(vocab[i:i + step]), 0)
            batch[:, -1] = vocab[i:i + step]
            mass += float(np.exp(model.token_log_prob(batch)[:, -1]).sum())
        if mass > worst[0]:
            worst = (mass, f"document {docs.names[int(d)]}, token {start + length - 1}")
    if worst[0] <= 1 + MASS_TOLERANCE:
        return None
    return (f"the model's next-token probabilities sum to {worst[0]:.4g} over "
            f"{len(vocab)} candidate tokens at {worst[1]}, but a distribution sums to 1: "
            "token_log_prob is not normalised (return log-softmax values over the whole "
            "vocabulary, or smooth counts so that they sum to 1)")


def text_normalisation_problem(ev: Context) -> str | None:
    def compute() -> str | None:
        if ev.model.text is not None:
            return _token_mass_problem(ev)
        return normalisation_problem(ev)
    return ev.memo("text/normalisation", compute)


def _measure(ev: Context, est: Estimate, **extra: Any) -> Measurement:
    like = text_likelihood(ev)
    details = {**like.details, "blocks": len(like.blocks.nats), **extra}
    problem = text_normalisation_problem(ev)
    if problem is not None:
        details |= {"not_estimable": problem, "value_if_estimable": est.value}
        est = Estimate.not_estimable(n=est.n, method="not estimable (see not_estimable)")
    return Measurement(est, feature_space="data", kind=ev.model.log_prob_kind,
                       details=details)


def _bits_per_byte(ev: Context) -> Measurement:
    scale = 1 / math.log(2)
    est = monotone_transform(text_likelihood(ev).per_byte, lambda v: v * scale,
                             lambda v: scale)
    return _measure(ev, est, paired=[["test_text_blocks", scale]])


def _per_unit(ev: Context, units: int, unit: str) -> Measurement:
    n_bytes = _docs(ev, "test").n_bytes
    k = n_bytes / units  # bytes per unit
    est = monotone_transform(text_likelihood(ev).per_byte, lambda v: _exp(v * k),
                             lambda v: k * _exp(v * k))
    return _measure(ev, est, **{f"{unit}s": units, f"bytes_per_{unit}": k})


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _char_perplexity(ev: Context) -> Measurement:
    return _per_unit(ev, ev.memo("text/chars", lambda: char_count(_docs(ev, "test"))), "char")


def _word_perplexity(ev: Context) -> Measurement:
    return _per_unit(ev, ev.memo("text/words", lambda: word_count(_docs(ev, "test"))), "word")


# ------------------------------------------------------------------ samples
def _train_spans(ev: Context, n: int) -> np.ndarray:
    return ev.memo(f"text/train-spans/{n}", lambda: span_hashes(_docs(ev, "train"), n))


def _copy_rates(ev: Context, passages: np.ndarray, n: int) -> np.ndarray:
    """Per passage, the share of its ``n``-byte spans (every ``n // 4`` bytes) found in the
    training text."""
    return verbatim_hits(passages, _train_spans(ev, n), n, n // 4).mean(1)


def _held_out(ev: Context, count: int) -> np.ndarray:
    """Up to ``count`` held-out real passages (a seeded subset of the test split's, drawn once
    per evaluation for the three sample checks)."""
    def pick() -> np.ndarray:
        x = ev.dataset.test.x
        rng = generator(COMMON_SEED, "text-held-out")
        return x[np.sort(rng.permutation(len(x))[:count])]
    return ev.memo(f"text/held-out/{count}", pick)


def _verbatim_copy_rate(ev: Context) -> Measurement:
    samples = ev.samples
    rates = {n: _copy_rates(ev, samples, n) for n in SPANS}
    real = _held_out(ev, len(samples))
    reference = {n: float(_copy_rates(ev, real, n).mean()) for n in SPANS}
    est = mean_estimate(rates[SPANS[0]])
    est = replace(est, ci_low=max(est.ci_low, 0.0), ci_high=min(est.ci_high, 1.0))
    return Measurement(est, feature_space="data", details={
        "span_bytes": SPANS[0], "reference_rate": reference[SPANS[0]],
        "reference": f"held-out real text: {len(real)} test passages",
        f"rate_{SPANS[1]}": float(rates[SPANS[1]].mean()),
        f"reference_rate_{SPANS[1]}": reference[SPANS[1]],
        "spans": f"{SPANS[0]}-byte spans starting every {SPANS[0] // 4} bytes of each passage; "
                 "interval over passages"})


def _distinct_4grams(ev: Context) -> Measurement:
    samples = ev.samples
    real = _held_out(ev, len(samples))
    return Measurement(distinct_ngrams_estimate(samples, 4), feature_space="data",
                       details={"reference": distinct_ngrams(real, 4),
                                "reference_passages": len(real), "gram_bytes": 4})


BIGRAM_BUCKETS = 256


def byte_features(passages: np.ndarray) -> np.ndarray:
    """Byte frequencies (256) and hashed byte-bigram frequencies (:data:`BIGRAM_BUCKETS`) of
    each passage, ``(m, 512)`` float32."""
    x = np.asarray(passages, np.int64)
    m, length = x.shape
    rows = np.repeat(np.arange(m), length)
    uni = np.zeros((m, 256), np.float32)
    np.add.at(uni, (rows, x.reshape(-1)), 1.0 / length)
    pairs = (x[:, :-1] * 257 + x[:, 1:]) * 2_654_435_761 % BIGRAM_BUCKETS
    bi = np.zeros((m, BIGRAM_BUCKETS), np.float32)
    np.add.at(bi, (np.repeat(np.arange(m), length - 1), pairs.reshape(-1)),
              1.0 / (length - 1))
    return np.concatenate([uni, bi], 1)


def _text_c2st_accuracy(ev: Context) -> Measurement:
    samples = ev.samples
    real = _held_out(ev, len(samples))
    result = c2st(byte_features(real), byte_features(samples),
                  seed=child_seed(ev.seed, "text_c2st"))
    return Measurement(result.accuracy_estimate(),
                       feature_space="byte unigram and hashed bigram frequencies",
                       details={"tv_lower_bound": result.tv_lower_bound(),
                                "classifier": result.classifier_description
                                if hasattr(result, "classifier_description") else "mlp",
                                "passages": min(len(real), len(samples))})


for _metric in (
    Metric(key="bits_per_byte", description="text: -log2 p per UTF-8 byte of the test documents", needs_any=("token_log_prob", "log_prob"),
           higher_is_better=False, unit="bits/byte", compute=_bits_per_byte,
           kinds=("text",), protocol=TEXT_PROTOCOL, interval="population", bounds=(0, math.inf)),
    Metric(key="char_perplexity", description="text: exp(nats per character), same total",
           needs_any=("token_log_prob", "log_prob"), higher_is_better=False,
           unit="exp(nats/char)", compute=_char_perplexity, kinds=("text",),
           protocol=TEXT_PROTOCOL, interval="population", judged_with="bits_per_byte"),
    Metric(key="word_perplexity", description="text: exp(nats per word), lm-eval-harness words", needs_any=("token_log_prob", "log_prob"),
           higher_is_better=False, unit="exp(nats/word)", compute=_word_perplexity,
           kinds=("text",), protocol=TEXT_PROTOCOL, interval="population",
           judged_with="bits_per_byte"),
    Metric(key="verbatim_copy_rate", description="text: share of 32-byte spans found in the training "
           "text", needs=("sample",), higher_is_better=False,
           unit="fraction", compute=_verbatim_copy_rate, applies=text_passages, kinds=("text",),
           protocol=TEXT_PROTOCOL, bounds=(0.0, 1.0), n_samples_free=True),
    Metric(key="distinct_4grams", description="text: share of distinct byte 4-grams in the samples", needs=("sample",), higher_is_better=True, unit="fraction",
           compute=_distinct_4grams, applies=text_passages, kinds=("text",),
           protocol=TEXT_PROTOCOL, bounds=(0.0, 1.0)),
    Metric(key="text_c2st_accuracy", description="text: classifier accuracy, samples vs held-out "
           "passages",
           needs=("sample",), higher_is_better=False, ideal=0.5, unit="accuracy",
           compute=_text_c2st_accuracy, applies=text_passages, kinds=("text",),
           protocol=TEXT_PROTOCOL, interval="population", bounds=(0.0, 1.0)),
):
    register(_metric)
