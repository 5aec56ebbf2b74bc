"""The ``transformers`` adapter, offline: a tiny randomly initialised GPT-2 and a byte-level
BPE tokenizer trained here, scored by gmbench's rolling windows and by a hand-written loop
(the sliding-window perplexity loop of the transformers documentation) over the same model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gmbench.datasets import get_dataset
from gmbench.models.model import Model, ModelSource
from gmbench.run.evaluation import run_evaluation
from gmbench.run.request import RunRequest

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CONTEXT, STRIDE = 23, 40  # windows of 63 tokens (64 with the BOS)


@pytest.fixture(scope="module")
def lm():
    from gmbench.models.transformers_lm import CausalLM

    docs = get_dataset("text-markov").train.documents
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([d.tobytes().decode() for d in docs][:8], vocab_size=300,
                            min_frequency=2, special_tokens=["<|endoftext|>"])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer,
                                               eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2,
                                     n_head=2, bos_token_id=tok.eos_token_id,
                                     eos_token_id=tok.eos_token_id)
    return CausalLM(transformers.GPT2LMHeadModel(config), tok, sample_length=64)


def hand_loop(lm, text: str) -> float:
    """Total nats of one document's tokens: the first window is the BOS and 63 tokens, each
    later one the 63 tokens ending STRIDE further, its last STRIDE tokens the targets."""
    tokens = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    room = CONTEXT + STRIDE
    total, done = 0.0, 0
    while done < len(tokens):
        stop = min(len(tokens), room if done == 0 else done + STRIDE)
        window = [lm.bos_token_id] + tokens[:stop] if done == 0 else tokens[stop - room:stop]
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=torch.tensor([window])).logits
                                     .double(), -1)[0]
        for j in range(len(window) - (stop - done), len(window)):  # the targets
            total -= float(logp[j - 1, window[j]])
        done = stop
    return total


def test_the_adapter_scores_what_a_hand_written_loop_scores(lm, tmp_path):
    from gmbench.datasets.local import make_local_dataset

    docs = get_dataset("text-markov").test.documents
    for split in ("train", "test"):  # a small corpus of its own: three documents of 2-3 kB
        (tmp_path / "few" / split).mkdir(parents=True)
        for i in range(3):
            text = docs[i][:2000 + 500 * i].tobytes() + "\u00e9t\u00e9\n".encode()
            (tmp_path / "few" / split / f"{i}.txt").write_bytes(text)
    data = make_local_dataset(tmp_path / "few")
    model = Model(lm, source=ModelSource(Path("hf.py"), "hf", "0" * 64, None), info=data.info,
                  device="cpu")
    rec = run_evaluation(model, data, RunRequest(context=CONTEXT, stride=STRIDE),
                         ["bits_per_byte"]).to_dict()["metrics"]["bits_per_byte"]
    docs = data.test.documents
    by_hand = sum(hand_loop(lm, d.tobytes().decode()) for d in docs)
    assert rec["value"] == pytest.approx(by_hand / docs.n_bytes / math.log(2), rel=1e-6)
    assert "(300 tokens)" in rec["tokenizer"]
    assert rec["tokens_scored"] < docs.n_bytes  # merges: fewer tokens than bytes


def test_token_ends_are_utf8_byte_offsets(lm):
    data = "caf\u00e9 \u2014 ok".encode()
    ids, ends = lm.tokenize(data)
    assert ends[-1] == len(data) and (np.diff(ends) >= 0).all()
    checked = 0
    for k in range(1, len(ids) + 1):  # a prefix of whole characters ends where it says
        prefix = lm.tokenizer.decode(ids[:k].tolist())
        if "\ufffd" not in prefix:
            assert len(prefix.encode()) == ends[k - 1], (k, prefix)
            checked += 1
    assert checked >= 4


def test_samples_are_passages_of_bytes(lm):
    torch.manual_seed(1)
    out = lm.sample(3)
    assert out.shape == (3, 64) and out.dtype == np.int64 and out.min() >= 0 and out.max() < 256
