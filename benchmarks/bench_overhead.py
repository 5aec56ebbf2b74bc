"""Harness overhead: gmbench's validated, seeded, batched test-set scoring against a bare loop
over ``model.log_prob`` on the same Fashion-MNIST batches, in the same process.

Run: ``python -m pytest benchmarks/bench_overhead.py --benchmark-enable``; the
``overhead`` group's relative column is the ratio (target: under 1.1x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gmbench.datasets import get_dataset
from gmbench.models.model import Model, ModelSource

BATCH = 500


class DiscretizedLogistic(nn.Module):
    """A small conv net predicting a discretized logistic per pixel from a blurred context:
    a typical cheap likelihood model (about 10k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 2, 3, padding=1))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float() / 255.0
        mu, log_s = self.net(F.avg_pool2d(y, 3, 1, 1)).chunk(2, dim=1)
        inv = torch.exp(-log_s.clamp(min=-7))
        plus = torch.sigmoid(inv * (y + 0.5 / 255 - mu))
        minus = torch.sigmoid(inv * (y - 0.5 / 255 - mu))
        lo = torch.where(x == 0, torch.ones_like(plus), plus)
        hi = torch.where(x == 255, torch.zeros_like(minus), minus)
        return torch.log((lo - hi).clamp(min=1e-12)).flatten(1).sum(1).double()


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    ds = get_dataset("fashion-mnist")
    net = DiscretizedLogistic().eval()
    source = ModelSource(path=Path(__file__), name="bench", sha256="", dataset=None)
    model = Model(net, source=source, info=ds.info, device="cpu")
    batches = [torch.from_numpy(ds.test.x[i:i + BATCH]).long() for i in range(0, len(ds.test), BATCH)]
    return ds, net, model, batches


@pytest.mark.benchmark(group="overhead")
def test_bare_loop(benchmark, setup):
    _, net, _, batches = setup

    def bare():
        with torch.no_grad():
            return torch.cat([net.log_prob(b) for b in batches]).numpy()

    out = benchmark.pedantic(bare, rounds=10, warmup_rounds=2)
    assert out.shape == (10_000,)


@pytest.mark.benchmark(group="overhead")
def test_gmbench_harness(benchmark, setup):
    ds, net, model, batches = setup
    out = benchmark.pedantic(lambda: model.log_prob(ds.test.x, seed=0, split="test",
                                                    batch_size=BATCH), rounds=10, warmup_rounds=2)
    with torch.no_grad():
        ref = torch.cat([net.log_prob(b) for b in batches]).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-12)
