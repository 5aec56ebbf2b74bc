"""Scoring a text model (``docs/CONTRACT.md``, section 2, text): its declared interface, and
the rolling windows that give every byte of a document its log-likelihood exactly once.

A text model has ``token_log_prob(x)``: ``(n, T)`` token windows in, ``(n, T)``
``log p(x[:, j] | x[:, :j])`` out, for windows of up to ``context_length`` tokens. Tokens are
bytes (0..255) unless the model declares ``tokenize(data: bytes) -> (ids, ends)``, the token
ids of a document and the byte offset where each token ends, with ``vocab_size`` and, where
it expects one, ``bos_token_id`` (placed before each document, never scored).

:func:`score_documents` tokenizes each document once and rolls windows of ``context +
stride`` tokens over it in token space: the first window scores all its tokens (each with
every earlier token as context), every later one its last ``stride`` tokens, each with at
least ``context`` tokens before it. A token's loss is charged to the byte where it ends, so
the per-byte losses of a document sum to its total log-likelihood whatever the tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gmbench.core.errors import ModelError
from gmbench.core.progress import progress
from gmbench.datasets.base import Documents


class Model(Protocol):
    """What scoring needs of :class:`gmbench.models.model.Model` (which imports this module)."""

    source: Any
    text: TextInterface | None

    def attribute(self, name: str, default: Any) -> Any: ...

    def call(self, member: str, fn: Callable[..., Any], *args: Any) -> Any: ...

    def token_log_prob(self, windows: np.ndarray) -> np.ndarray: ...

__all__ = ["BYTES", "TOKENS_PER_CALL", "TextInterface", "TextScore", "Windows", "score_documents",
           "text_interface", "tokenize_documents",
           "windows_per_call"]

BYTES = 256  # the vocabulary of a model without a tokenizer
# Tokens per call at most (--batch-size windows, fewer where windows are long): a language
# model's logits are tokens x vocabulary floats.
TOKENS_PER_CALL = 16_384


def windows_per_call(batch_size: int, length: int) -> int:
    """How many windows of ``length`` tokens one call of ``token_log_prob`` gets."""
    return max(1, min(batch_size, TOKENS_PER_CALL // max(length, 1)))


@dataclass(frozen=True)
class TextInterface:
    """What a text model declares: its longest window, vocabulary, beginning-of-sequence
    token and tokenizer (``None``: bytes are the tokens)."""

    context_length: int
    vocab_size: int
    bos_token_id: int | None
    tokenize: Callable[[bytes], Any] | None
    tokenizer: str  # "bytes", or the tokenizer's name

    def tokens(self, model: Model, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, ends)`` of a document, validated: int64 token ids and, per token, the byte
        offset where it ends (non-decreasing, the last at ``len(data)``)."""
        if self.tokenize is None:
            ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
            return ids, np.arange(1, len(data) + 1, dtype=np.int64)
        where = f"{model.source.path.name}: `tokenize`"
        out = model.call("tokenize", self.tokenize, data)
        try:
            ids, ends = (np.asarray(a) for a in out)
        except (TypeError, ValueError):
            raise ModelError(f"{where} returned {type(out).__name__}; return (ids, ends): the "
                             "token ids and the byte offset where each token ends.") from None
        if ids.ndim != 1 or ends.shape != ids.shape or ids.dtype.kind not in "iu" \
                or ends.dtype.kind not in "iu":
            raise ModelError(f"{where} returned ids of shape {ids.shape} ({ids.dtype}) and ends "
                             f"of shape {ends.shape} ({ends.dtype}); both must be integer "
                             "arrays of one value per token.")
        if len(ids) == 0 and len(data):
            raise ModelError(f"{where} returned no tokens for {len(data)} bytes.")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ModelError(f"{where} returned token ids in [{ids.min()}, {ids.max()}] but "
                             f"vocab_size is {self.vocab_size}.")
        if len(ids) and (np.any(np.diff(ends) < 0) or ends[0] < 1 or ends[-1] != len(data)):
            raise ModelError(f"{where}: the token end offsets must be non-decreasing byte "
                             f"offsets ending at the document's length {len(data)} (got "
                             f"{ends[0]} .. {ends[-1]}): every byte belongs to a token.")
        return ids.astype(np.int64), ends.astype(np.int64)


def text_interface(model: Model, obj: Any) -> TextInterface:
    """The text interface ``obj`` declares (refused with what to fix when incomplete)."""
    where = model.source.path.name
    length = model.attribute("context_length", None)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 2:
        raise ModelError(f"{where}: a model with `token_log_prob` needs `context_length`, the "
                         f"most tokens one window may hold (an int >= 2), got {length!r}.")
    tokenize = model.attribute("tokenize", None)
    if tokenize is None:
        return TextInterface(int(length), BYTES, None, None, "bytes")
    vocab = model.attribute("vocab_size", None)
    bos = model.attribute("bos_token_id", None)
    if isinstance(vocab, bool) or not isinstance(vocab, (int, np.integer)) or vocab < 2:
        raise ModelError(f"{where}: a model with `tokenize` needs `vocab_size` (an int), got "
                         f"{vocab!r}.")
    if bos is not None and (not isinstance(bos, (int, np.integer)) or not 0 <= bos < vocab):
        raise ModelError(f"{where}: `bos_token_id` must be None or a token id below "
                         f"vocab_size {vocab}, got {bos!r}.")
    name = model.attribute("tokenizer_name", None) or type(tokenize).__qualname__
    return TextInterface(int(length), int(vocab), None if bos is None else int(bos), tokenize,
                         str(name))


@dataclass(frozen=True)
class Windows:
    """The rolling-window protocol: each scored token has at least ``context`` tokens before
    it where the document has them; ``stride`` tokens are scored per window of
    ``context + stride`` tokens."""

    context: int
    stride: int

    @property
    def length(self) -> int:
        return self.context + self.stride

    @classmethod
    def for_model(cls, text: TextInterface, context: int | None, stride: int | None) -> Windows:
        """The protocol asked for, defaults filled in from the model's ``context_length``; a
        window longer than the model takes is refused. A beginning-of-sequence token takes
        one place of the first window."""
        room = text.context_length - (text.bos_token_id is not None)
        if context is None:
            context = room // 2 if stride is None else max(room - stride, 0)
        if stride is None:
            stride = room - context
        if stride < 1 or context < 0 or context + stride > room:
            raise ModelError(
                f"A window of context {context} + stride {stride} tokens does not fit the "
                f"model's context_length of {text.context_length}"
                + (" (one place taken by its beginning-of-sequence token)"
                   if text.bos_token_id is not None else "")
                + f": pass --context and --stride with context + stride <= {room}.")
        return cls(context, stride)


def rolling(n: int, windows: Windows) -> Iterator[tuple[int, int, int]]:
    """``(start, stop, first_scored)`` token ranges of a document of ``n`` tokens: the
    window ``[start, stop)`` scores tokens ``[first_scored, stop)``; together they score
    every token once."""
    done = 0
    while done < n:
        stop = min(n, windows.length if done == 0 else done + windows.stride)
        yield max(0, stop - windows.length), stop, done
        done = stop


@dataclass(frozen=True)
class TextScore:
    """Per-byte losses (nats) of every document, concatenated like ``Documents.data``, and
    what was done to get them."""

    byte_nats: np.ndarray
    tokens: int
    windows: int


def tokenize_documents(model: Model, docs: Documents) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(ids, ends)`` of every document, validated (:meth:`TextInterface.tokens`)."""
    text = model.text
    assert text is not None
    return [text.tokens(model, doc.tobytes()) for doc in docs]


def score_documents(model: Model, docs: Documents, windows: Windows, *, batch_size: int,
                    desc: str = "token_log_prob",
                    tokenized: list[tuple[np.ndarray, np.ndarray]] | None = None) -> TextScore:
    """Every byte's loss under ``model``, by rolling windows (see the module docstring);
    ``tokenized``: the documents' :func:`tokenize_documents`, where already made."""
    text = model.text
    assert text is not None
    if tokenized is None:
        tokenized = tokenize_documents(model, docs)
    bos = text.bos_token_id
    byte_nats = np.zeros(docs.n_bytes, np.float64)
    jobs: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}  # by window length
    tokens = 0
    for d, (ids, ends) in enumerate(tokenized):
        tokens += len(ids)
        if bos is not None:
            ids = np.concatenate([[bos], ids])
        offset = 1 if bos is not None else 0
        for start, stop, first in rolling(len(ids) - offset, windows):
            # token positions in ``ids`` (after the BOS when there is one)
            lo = 0 if (start == 0 and bos is not None) else start + offset
            window = ids[lo:stop + offset]
            scored = np.arange(first, stop)  # document token indices scored here
            columns = scored + offset - lo
            where = docs.starts[d] + ends[scored] - 1  # the byte where each token ends
            jobs.setdefault(len(window), []).append((window, columns, where))
    n_windows = sum(len(v) for v in jobs.values())
    batches = [(length, group[i:i + step]) for length, group in sorted(jobs.items())
               for step in [windows_per_call(batch_size, length)]
               for i in range(0, len(group), step)]
    at, losses = [], []
    for _, group in progress(batches, total=len(batches), desc=desc):
        lp = model.token_log_prob(np.stack([w for w, _, _ in group]))
        for row, (_, columns, where) in enumerate(group):
            at.append(where)
            losses.append(-lp[row, columns])
    if at:  # tokens ending at the same byte add up
        byte_nats = np.bincount(np.concatenate(at), weights=np.concatenate(losses),
                                minlength=docs.n_bytes).astype(np.float64)
    return TextScore(byte_nats, tokens, n_windows)
