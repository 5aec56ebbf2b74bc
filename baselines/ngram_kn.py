"""An interpolated Kneser-Ney n-gram over bytes: the classical text baseline.

``p_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h) + D_k N1+(h .) / c_k(h) p_{k-1}(w | h')``
for orders ``k = 1 .. ORDER``, where ``h'`` drops the oldest byte of ``h``, ``c_ORDER`` are
raw counts and the lower orders' are continuation counts (the number of distinct bytes seen
before the n-gram), ``D_k = n1 / (n1 + 2 n2)`` (Ney's estimate from the counts of n-grams
seen once and twice) and ``p_0`` is uniform over the 256 bytes. An unseen context passes its
lower order's distribution up unchanged. Every context's distribution sums to 1 over all 256
bytes (gmbench's normalisation check sums it at sampled positions).

The counts are taken from the training documents when the model is loaded (a few seconds;
no weights file). :data:`ORDER` was chosen on three training plays held out from the counts
(``python baselines/ngram_kn.py --choose-order``, which prints each order's bits per byte on
them); the test plays were never used.

Evaluate: ``gmbench evaluate baselines/ngram_kn.py --dataset shakespeare``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np
import torch

from gmbench.datasets import DatasetInfo, Documents, get_dataset

__all__ = ["ORDER", "KneserNey", "load"]

ORDER = 6
BYTES = 256


def _counted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and how often each occurs."""
    keys = np.sort(keys)
    first = np.concatenate([[True], keys[1:] != keys[:-1]])
    starts = np.flatnonzero(first)
    return keys[starts], np.diff(np.append(starts, len(keys)))


def _find(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each ``query`` is in sorted ``keys``, and whether it is there."""
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return i, keys[i] == query


class Order:
    """One order's counts: n-gram keys (context bytes above the predicted byte's 8 bits) and
    counts, and per context its total count and number of distinct following bytes."""

    def __init__(self, grams: np.ndarray, counts: np.ndarray) -> None:
        self.grams, self.counts = grams, counts.astype(np.float64)
        of = grams >> np.uint64(8)  # sorted like the grams
        first = np.flatnonzero(np.concatenate([[True], of[1:] != of[:-1]]))
        self.contexts = of[first]
        self.totals = np.add.reduceat(self.counts, first)
        self.types = np.diff(np.append(first, len(grams))).astype(np.float64)
        n1, n2 = float((counts == 1).sum()), float((counts == 2).sum())
        self.discount = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5

    def update(self, p: np.ndarray, context: np.ndarray, gram: np.ndarray) -> np.ndarray:
        """``p_k`` from the lower order's ``p`` (``(m, c)``) at contexts ``(m,)`` and their
        n-grams ``(m, c)``."""
        at, known = _find(self.contexts, context)  # one search per context, not per candidate
        total = np.where(known, self.totals[at], 0.0)[:, None]
        types = np.where(known, self.types[at], 0.0)[:, None]
        at, known = _find(self.grams, gram)
        count = np.where(known, self.counts[at], 0.0)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        mixed = (np.maximum(count - self.discount, 0.0) + self.discount * types * p) / safe
        return np.where(seen, mixed, p)


def _grams(docs: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Every ``k``-gram inside a document, keyed ``sum_j x[i - j] 256^j``."""
    parts = []
    for doc in docs:
        x = doc.astype(np.uint64)
        if len(x) < k:
            continue
        key = np.zeros(len(x) - k + 1, np.uint64)
        for j in range(k):  # x[i - j] for the gram ending at i = k - 1 + position
            key |= x[k - 1 - j:len(x) - j] << np.uint64(8 * j)
        parts.append(key)
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


class KneserNey(torch.nn.Module):
    """``token_log_prob(x)``: ``(n, T)`` bytes -> ``(n, T)`` log-probabilities, each byte
    given up to ``order - 1`` bytes before it in its window."""

    log_prob_kind = "exact"

    def __init__(self, docs: Sequence[np.ndarray], order: int = ORDER,
                 sample_length: int = 256) -> None:
        super().__init__()
        if not 1 <= order <= 8:
            raise ValueError(f"order {order}: n-grams are keyed in 64 bits, 1 <= order <= 8")
        self.order, self.sample_length = order, sample_length
        self.context_length = 4 * order  # windows longer than the order add nothing
        top_grams, top_counts = _counted(_grams(docs, order))
        tables = [Order(top_grams, top_counts)]
        distinct = top_grams
        for k in range(order - 1, 0, -1):  # continuation counts of the lower orders
            suffix = distinct & np.uint64((1 << (8 * k)) - 1)
            grams, counts = _counted(suffix)
            tables.insert(0, Order(grams, counts))
            distinct = grams
        self.tables = tables

    def _probabilities(self, history: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``p(w | history)`` where ``history`` holds up to ``order - 1`` previous bytes per
        row, ``-1`` where a position has none: ``(m, order - 1)`` oldest first; ``w``
        ``(m, c)`` candidate bytes."""
        p = np.full(w.shape, 1.0 / BYTES)
        context = np.zeros(len(history), np.uint64)
        available = np.ones(len(history), bool)
        for k, table in enumerate(self.tables):  # order k + 1: k bytes of context
            if k:
                prev = history[:, -k]
                available &= prev >= 0
                context = context | (np.maximum(prev, 0).astype(np.uint64) << np.uint64(8 * (k - 1)))
            gram = (context[:, None] << np.uint64(8)) | w.astype(np.uint64)
            updated = table.update(p, context, gram)
            p = np.where(available[:, None], updated, p)
        return p

    def _history(self, x: np.ndarray) -> np.ndarray:
        """``(n, T, order - 1)``: the bytes before each position of each window (-1: none)."""
        n, t = x.shape
        padded = np.concatenate([np.full((n, self.order - 1), -1), x], 1)
        return np.stack([padded[:, j:j + t] for j in range(self.order - 1)], -1)

    def token_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.cpu().numpy().astype(np.int64)
        n, t = xs.shape
        p = self._probabilities(self._history(xs).reshape(n * t, -1), xs.reshape(-1, 1))
        return torch.from_numpy(np.log(p).reshape(n, t))

    def next_distribution(self, history: np.ndarray) -> np.ndarray:
        """``(m, 256)`` next-byte probabilities after each row of ``history``."""
        w = np.broadcast_to(np.arange(BYTES), (len(history), BYTES))
        return self._probabilities(history, w)

    def sample(self, n: int) -> torch.Tensor:
        """``(n, sample_length)`` bytes drawn one at a time from the start of a document."""
        out = np.full((n, self.order - 1 + self.sample_length), -1, np.int64)
        for t in range(self.sample_length):
            probs = self.next_distribution(out[:, t:t + self.order - 1])
            u = torch.rand(n, dtype=torch.float64).numpy()[:, None]
            cdf = np.cumsum(probs, 1)
            out[:, t + self.order - 1] = np.minimum((cdf < u * cdf[:, -1:]).sum(1), BYTES - 1)
        return torch.from_numpy(out[:, self.order - 1:])


def load(dataset: DatasetInfo, device: str) -> KneserNey:
    del device
    docs = get_dataset(dataset.name).train.documents
    if docs is None:
        raise ValueError(f"ngram_kn needs a text dataset; {dataset.name} is {dataset.kind} data")
    return KneserNey(list(docs))


def choose_order(docs: Documents, held: int = 3, orders: Sequence[int] = range(3, 9)
                 ) -> dict[int, float]:
    """Bits per byte of each order on the last ``held`` training documents, counted on the
    others (each document scored in one pass, every byte with its full history)."""
    fit, check = list(docs)[:-held], list(docs)[-held:]
    scores = {}
    for order in orders:
        model = KneserNey(fit, order)
        nats = sum(-float(model.token_log_prob(torch.from_numpy(d[None].astype(np.int64))).sum())
                   for d in check)
        scores[order] = nats / sum(len(d) for d in check) / math.log(2)
    return scores


if __name__ == "__main__":
    if "--choose-order" in sys.argv:
        for k, bpb in choose_order(get_dataset("shakespeare").train.documents).items():
            print(f"order {k}: {bpb:.4f} bits per byte on 3 held-out training plays")
