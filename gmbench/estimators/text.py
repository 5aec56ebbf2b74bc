"""Estimators of text metrics: the mean loss per byte with a block bootstrap's standard error,
the units of perplexity (characters, words), verbatim copying and distinct n-grams.

Bytes of a text are dependent (a rare name recurs through a scene), so the spread of the
mean loss per byte comes from blocks of :data:`BLOCK_BYTES` consecutive bytes of each
document, not from bytes: the standard error is the one a bootstrap over those blocks
converges to (the ratio estimator's, ``sum L_i / sum n_i`` over blocks ``i`` of ``n_i`` bytes
and loss ``L_i``), computed in closed form, so without resampling noise.
"""

from __future__ import annotations

import math
import re

import numpy as np

from gmbench.datasets.base import Documents
from gmbench.estimators.uncertainty import Estimate

__all__ = ["BLOCK_BYTES", "VERBATIM_MARGIN", "Blocks", "char_count", "distinct_ngrams", "per_byte_estimate",
           "distinct_ngrams_estimate", "verbatim_hits", "word_count"]

BLOCK_BYTES = 4096
# A model is flagged as copying its training text when the share of its 32-byte spans found
# there exceeds held-out real text's share by more than this, with its whole interval.
VERBATIM_MARGIN = 0.1


class Blocks:
    """Losses summed over consecutive blocks of each document: ``nats`` and ``sizes``
    (bytes), ``(B,)`` each."""

    def __init__(self, nats: np.ndarray, sizes: np.ndarray) -> None:
        self.nats = np.asarray(nats, np.float64)
        self.sizes = np.asarray(sizes, np.float64)

    @classmethod
    def of_bytes(cls, byte_nats: np.ndarray, docs: Documents,
                 block: int = BLOCK_BYTES) -> Blocks:
        """Blocks of ``block`` bytes of each document (the last of each shorter)."""
        edges = np.unique(np.concatenate([
            np.arange(docs.starts[d], docs.starts[d + 1], block) for d in range(len(docs))]
            + [docs.starts[-1:]]))
        return cls(np.add.reduceat(byte_nats, edges[:-1]), np.diff(edges))

    @property
    def per_byte(self) -> np.ndarray:
        """Each block's loss divided by the mean block size: their mean is the mean loss per
        byte, and the difference of two models' is paired block by block (``gmbench
        check``)."""
        return self.nats / self.sizes.mean()


def per_byte_estimate(blocks: Blocks) -> Estimate:
    """Mean nats per byte ``sum L / sum n`` with the block bootstrap's standard error."""
    total, size = blocks.nats.sum(), blocks.sizes.sum()
    ratio = float(total / size)
    b = len(blocks.nats)
    if b < 2:
        return Estimate.normal(ratio, math.nan, n=b, method="block bootstrap (one block)")
    residual = blocks.nats - ratio * blocks.sizes
    se = float(math.sqrt((residual ** 2).sum() / (b * (b - 1))) / blocks.sizes.mean())
    return Estimate.normal(ratio, se, n=b, low=0.0,
                           method=f"normal, block bootstrap stderr ({b} blocks of up to "
                                  f"{int(blocks.sizes.max())} bytes)")


_SPACE = re.compile(r"\s+")


def word_count(docs: Documents) -> int:
    """Words as lm-evaluation-harness counts them for ``word_perplexity``:
    ``len(re.split(r"\\s+", doc))`` per document, summed."""
    return sum(len(_SPACE.split(doc.tobytes().decode("utf-8"))) for doc in docs)


def char_count(docs: Documents) -> int:
    """Unicode characters of the UTF-8 documents."""
    return sum(len(doc.tobytes().decode("utf-8")) for doc in docs)


def _hashes(rows: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every ``n``-byte span of each row, ``(m, L - n + 1)``
    uint64 (``n`` a power of two; collisions between distinct spans: about ``m^2 / 2^64``).
    Built by doubling: the hash of a ``2k``-byte span from those of its two halves."""
    assert n >= 1 and n & (n - 1) == 0, "a power of two"
    h = np.asarray(rows, np.uint64) + np.uint64(1)
    k, power = 1, _BASE
    with np.errstate(over="ignore"):
        while k < n:
            h = h[:, :-k] * power + h[:, k:]
            k, power = 2 * k, power * power
    return h


_BASE = np.uint64(1_099_511_628_211)


def span_hashes(docs: Documents, n: int) -> np.ndarray:
    """The sorted distinct hashes of every ``n``-byte span of the documents."""
    parts = [_hashes(doc[None, :], n)[0] for doc in docs if len(doc) >= n]
    return _distinct(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def _distinct(h: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``h`` (``np.unique``, by a plain sort: for uint64 some
    NumPy versions take a path 100 times slower)."""
    h = np.sort(h.reshape(-1))
    return h[np.concatenate([[True], h[1:] != h[:-1]])] if len(h) else h


def verbatim_hits(passages: np.ndarray, reference: np.ndarray, n: int, stride: int
                  ) -> np.ndarray:
    """For every ``n``-byte span of each passage starting at a multiple of ``stride``,
    whether it occurs in the text whose sorted span hashes are ``reference``:
    ``(m, spans)`` bool."""
    h = _hashes(passages, n)[:, ::stride]
    i = np.searchsorted(reference, h)
    return reference[np.minimum(i, len(reference) - 1)] == h


def distinct_ngrams(passages: np.ndarray, n: int) -> float:
    """The share of distinct ``n``-grams among all ``n``-grams of the passages (the
    "distinct-n" diversity of Li et al., 2016, over bytes)."""
    h = _hashes(passages, n).reshape(-1)
    return float(len(_distinct(h)) / len(h)) if len(h) else math.nan


def distinct_ngrams_estimate(passages: np.ndarray, n: int, groups: int = 20) -> Estimate:
    """:func:`distinct_ngrams` with a delete-a-group jackknife standard error over
    ``groups`` groups of consecutive passages (independent samples)."""
    value = distinct_ngrams(passages, n)
    m = len(passages)
    if m < 2 * groups:
        return Estimate.normal(value, math.nan, n=m, method="too few passages for a stderr")
    edges = np.linspace(0, m, groups + 1).astype(int)
    left_out = np.array([distinct_ngrams(np.delete(passages, np.s_[a:b], 0), n)
                         for a, b in zip(edges[:-1], edges[1:], strict=True)])
    se = math.sqrt((groups - 1) / groups * ((left_out - left_out.mean()) ** 2).sum())
    return Estimate.normal(value, se, n=m, low=0.0, high=1.0,
                           method=f"normal, delete-a-group jackknife stderr ({groups} groups)")
