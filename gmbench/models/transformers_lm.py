"""Causal language models of the ``transformers`` library behind gmbench's text contract.

A model file of a few lines evaluates any causal LM with a fast tokenizer::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from gmbench.models.transformers_lm import CausalLM

    def load(dataset, device):
        name = "path/to/model"  # a local folder or a hub name
        return CausalLM(AutoModelForCausalLM.from_pretrained(name),
                        AutoTokenizer.from_pretrained(name), device=device)

Each document is tokenized once (without special tokens) and must decode back to itself; the
beginning-of-sequence token (the tokenizer's BOS, else its end-of-text token, as
lm-evaluation-harness does) starts each document; a token's loss is charged to the UTF-8 byte
where it ends (from the tokenizer's character offsets). Needs ``pip install
"gmbench[transformers]"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gmbench.core.errors import ModelError

__all__ = ["CausalLM"]


def _gathered_log_softmax(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[..., target]`` in float64, without a float64 copy of the logits
    (tokens x vocabulary: the largest array of a language model's pass)."""
    lse = torch.logsumexp(logits.float(), -1).double()
    return logits.gather(-1, targets[..., None])[..., 0].double() - lse


class CausalLM:
    """``token_log_prob``, ``tokenize`` and ``sample`` of a causal LM and its tokenizer.

    Args:
        model: a ``transformers`` causal LM (``model(input_ids).logits``).
        tokenizer: its fast tokenizer (character offsets are needed).
        context_length: the longest window (default: the model's position count).
        device: where the model runs.
        sample_length: bytes per sample (the dataset's passage length).
    """

    log_prob_kind = "exact"

    def __init__(self, model: Any, tokenizer: Any, *, context_length: int | None = None,
                 device: str = "cpu", sample_length: int = 256) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError("CausalLM needs a fast tokenizer (character offsets): load it "
                             "with AutoTokenizer.from_pretrained(..., use_fast=True).")
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.device = device
        self.sample_length = sample_length
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None \
            else tokenizer.eos_token_id
        if bos is None:
            raise ModelError("CausalLM needs a beginning-of-sequence token: the tokenizer has "
                             "neither bos_token_id nor eos_token_id.")
        self.bos_token_id = int(bos)
        self.vocab_size = int(model.config.vocab_size)
        positions = getattr(model.config, "max_position_embeddings", None) \
            or getattr(model.config, "n_positions", None)
        self.context_length = int(context_length or positions or 1024)
        self.tokenizer_name = f"{type(tokenizer).__name__} ({len(tokenizer)} tokens)"

    def tokenize(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a document and the byte offset where each token ends."""
        text = data.decode("utf-8")
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], np.int64)
        if self.tokenizer.decode(ids.tolist(), clean_up_tokenization_spaces=False) != text:
            raise ModelError("The tokenizer does not decode its tokens back to the document "
                             "(it normalises or drops characters): bits per byte through it "
                             "would not be of these bytes.")
        byte_at = np.concatenate([[0], np.cumsum([len(c.encode("utf-8")) for c in text])])
        ends = np.maximum.accumulate(byte_at[[end for _, end in enc["offset_mapping"]]])
        if len(ends):
            ends[-1] = len(data)
            ends = np.maximum(ends, 1)
        return ids, ends.astype(np.int64)

    def token_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_j | x_<j)`` of every token of each window; the first from the
        beginning-of-sequence token."""
        x = x.to(self.device)
        out = torch.empty(x.shape, dtype=torch.float64, device=x.device)
        out[:, 1:] = _gathered_log_softmax(self.model(input_ids=x).logits[:, :-1], x[:, 1:])
        start = torch.stack([torch.full_like(x[:, 0], self.bos_token_id), x[:, 0]], 1)
        out[:, 0] = _gathered_log_softmax(self.model(input_ids=start).logits[:, :1],
                                          x[:, :1])[:, 0]
        return out

    def sample(self, n: int) -> np.ndarray:
        """``(n, sample_length)`` bytes: text generated from the beginning-of-sequence token
        at temperature 1, UTF-8 encoded and cut to length."""
        start = torch.full((n, 1), self.bos_token_id, device=self.device)
        ids = self.model.generate(start, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                  max_new_tokens=self.sample_length,
                                  min_new_tokens=self.sample_length,
                                  pad_token_id=self.bos_token_id)[:, 1:]
        out = np.zeros((n, self.sample_length), np.int64)
        for i, row in enumerate(ids.tolist()):
            raw = self.tokenizer.decode(row).encode("utf-8")[:self.sample_length]
            if len(raw) < self.sample_length:
                raise ModelError(f"The model's {len(row)} generated tokens decode to "
                                 f"{len(raw)} bytes, fewer than {self.sample_length}.")
            out[i] = np.frombuffer(raw, np.uint8)
        return out
