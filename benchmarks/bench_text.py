"""Text scoring: gmbench's rolling windows (tokenize, window, validate, charge each token to
its byte) against a bare loop that calls the same model on the same windows, in the same
process, on text-markov's test documents (196,608 bytes; windows of 256 bytes, stride 128).

Run: ``python -m pytest benchmarks/bench_text.py --benchmark-enable``; the ``text`` group's
relative column is the ratio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gmbench.datasets import get_dataset
from gmbench.models.model import Model, ModelSource
from gmbench.models.text import Windows, rolling, score_documents

CONTEXT, STRIDE, BATCH = 128, 128, 64


class Bigram(torch.nn.Module):
    """An embedding-and-linear next-byte model: cheap, so the harness's own cost shows."""

    context_length = 256

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(256, 64)
        self.out = torch.nn.Linear(64, 256)

    def token_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
        logp = torch.log_softmax(self.out(self.embed(prev)), -1)
        return logp.gather(-1, x[..., None])[..., 0]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = get_dataset("text-markov")
    net = Bigram().eval()
    model = Model(net, source=ModelSource(Path(__file__), "bench", "", None), info=data.info,
                  device="cpu")
    return data.test.documents, net, model


@pytest.mark.benchmark(group="text")
def test_bare_loop(benchmark, setup):
    docs, net, _ = setup

    def run() -> float:
        total = 0.0
        windows = Windows(CONTEXT, STRIDE)
        for doc in docs:
            x = torch.from_numpy(doc.astype(np.int64))
            spans = list(rolling(len(doc), windows))
            for i in range(0, len(spans), BATCH):
                group = spans[i:i + BATCH]
                if len({stop - start for start, stop, _ in group}) > 1:  # the first window
                    for start, stop, first in group:
                        lp = net.token_log_prob(x[None, start:stop])[0]
                        total -= float(lp[first - start:].sum())
                    continue
                with torch.no_grad():
                    lp = net.token_log_prob(torch.stack([x[a:b] for a, b, _ in group]))
                total -= sum(float(lp[r, f - a:].sum()) for r, (a, _, f) in enumerate(group))
        return total

    benchmark(run)


@pytest.mark.benchmark(group="text")
def test_gmbench_rolling_windows(benchmark, setup):
    docs, _, model = setup
    benchmark(lambda: score_documents(model, docs, Windows(CONTEXT, STRIDE), batch_size=BATCH))
