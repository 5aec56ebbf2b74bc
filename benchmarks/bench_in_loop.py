"""In-loop cost: the 2nd..Nth ``gmbench.evaluate`` call of FID + precision/recall on 5,000
Fashion-MNIST samples, against the bare cost of what any evaluation must do on each call:
extract the samples' features with the same classifier, then the metric maths (FID from the
sample statistics against precomputed test statistics; precision and recall from k-NN radii,
the test radii precomputed). Both run in the same process on the same samples.

Run: ``python -m pytest benchmarks/bench_in_loop.py --benchmark-enable``; the ``in-loop``
group's relative column is the ratio (target: at most 1.2x).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gmbench

N = 5000
K = 3  # torch-fidelity's precision/recall neighbourhood
ROUNDS = 5


class Replay:
    """A model whose sampling costs nothing: it hands out a fixed set of images in order (the
    comparison is about what gmbench adds around the model, not the model)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = torch.as_tensor(x)
        self.next = 0

    def sample(self, n: int) -> torch.Tensor:
        out = self.x[self.next:self.next + n]
        self.next = (self.next + n) % len(self.x)
        return out


@pytest.fixture(scope="module")
def setup():
    from gmbench.datasets import get_dataset
    from gmbench.features.extractors import ClassifierFeatures

    fashion_mnist = get_dataset("fashion-mnist")

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    train = fashion_mnist.train.x
    # training images with noise: neither copies nor garbage
    x = np.clip(train[rng.choice(len(train), N, replace=False)].astype(np.int64)
                + rng.integers(-20, 21, (N, 1, 28, 28)), 0, 255)
    ext = ClassifierFeatures.for_dataset("fashion-mnist")
    real = ext(fashion_mnist.test.x).astype(np.float64)
    mu_r, cov_r = real.mean(0), np.cov(real, rowvar=False)
    real_t = torch.as_tensor(real, dtype=torch.float32)
    r_real = torch.cdist(real_t, real_t).kthvalue(K + 1, dim=1).values  # self at distance 0
    return x, ext, (mu_r, cov_r), (real_t, r_real)


def bare(x, ext, real_stats, real_radii) -> dict[str, float]:
    from scipy import linalg

    feats = ext(x).astype(np.float64)
    mu, cov = feats.mean(0), np.cov(feats, rowvar=False)
    mu_r, cov_r = real_stats
    covmean = linalg.sqrtm(cov @ cov_r).real
    fid = float(((mu - mu_r) ** 2).sum() + np.trace(cov + cov_r - 2 * covmean))
    real_t, r_real = real_radii
    f = torch.as_tensor(feats, dtype=torch.float32)
    r_fake = torch.cdist(f, f).kthvalue(K + 1, dim=1).values
    d = torch.cdist(f, real_t)  # (N, n_test)
    precision = int((d <= r_real[None, :]).any(1).sum()) / len(f)
    recall = int((d <= r_fake[:, None]).any(0).sum()) / len(real_t)
    return {"fid": fid, "precision": precision, "recall": recall}


@pytest.mark.benchmark(group="in-loop")
def test_bare_features_and_maths(benchmark, setup):
    x, ext, stats, radii = setup
    out = benchmark.pedantic(lambda: bare(x, ext, stats, radii), rounds=ROUNDS,
                             warmup_rounds=1)
    assert out["fid"] > 0 and 0 < out["precision"] <= 1


@pytest.mark.benchmark(group="in-loop")
def test_gmbench_evaluate_in_a_loop(benchmark, setup):
    x, ext, stats, radii = setup
    model = Replay(x)

    def call():
        return gmbench.evaluate(model, dataset="fashion-mnist", metrics=["fid", "precision",
                                "recall"], n_samples=N, seed=0, progress=False)

    results = benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=1)  # warm-up: 1st call
    ref = bare(x, ext, stats, radii)
    # the same numbers as the bare computation (FID to float rounding of two sqrtm routes)
    assert results["fid"].value == pytest.approx(ref["fid"], rel=1e-4)
    assert results["precision"].value == pytest.approx(ref["precision"], abs=1e-12)
    assert results["recall"].value == pytest.approx(ref["recall"], abs=1e-12)
