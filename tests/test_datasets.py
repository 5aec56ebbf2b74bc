"""Datasets (``docs/CONTRACT.md``, section 3): ground truth against closed forms and scipy,
IDX loading."""

from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from gmbench.datasets import get_dataset
from gmbench.datasets.idx import download, make_idx_dataset
from gmbench.errors import DatasetError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                                   reason="apt-get install dataset-fashion-mnist (CI does)")


def test_digits():
    ds = get_dataset("digits")
    assert ds.info.shape == (1, 8, 8) and ds.info.levels == 17 and ds.info.num_classes == 10
    assert len(ds.train) + len(ds.test) == 1797 and len(ds.test) == 360
    assert ds.train.x.max() == 16 and ds.train.x.min() == 0
    assert np.bincount(ds.test.y).min() >= 35  # stratified
    assert get_dataset("digits") is ds  # cached in memory
    assert len(ds.sha256) == 64


@pytest.mark.parametrize("d", [1, 2, 5])
def test_gauss_truth_matches_scipy(d):
    ds = get_dataset(f"gauss-{d}")
    idx = np.arange(d)
    cov = 0.5 ** np.abs(idx[:, None] - idx[None])
    ref = stats.multivariate_normal(np.zeros(d), cov)
    x = ds.test.x[:100]
    np.testing.assert_allclose(ds.truth.log_prob(x), ref.logpdf(x), rtol=1e-10, atol=1e-10)
    assert ds.truth.entropy == pytest.approx(ref.entropy(), rel=1e-12)
    np.testing.assert_allclose(np.cov(ds.train.x.T).reshape(d, d), cov, atol=0.05)


@pytest.mark.parametrize("name", ["toy2d-gmm8", "toy2d-checkerboard", "toy2d-banana",
                                  "toy2d-rings"])
def test_toy2d_density_integrates_to_one(name):
    truth = get_dataset(name).truth
    lim = 6.0
    grid = np.linspace(-lim, lim, 1201)
    xx, yy = np.meshgrid(grid, grid)
    p = np.exp(truth.log_prob(np.stack([xx.ravel(), yy.ravel()], 1))).reshape(xx.shape)
    total = integrate.simpson(integrate.simpson(p, x=grid, axis=1), x=grid)
    assert total == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name", ["toy2d-checkerboard", "toy2d-banana"])
def test_toy2d_entropy_matches_samples(name):
    ds = get_dataset(name)
    nll = -ds.truth.log_prob(ds.test.x)
    se = nll.std(ddof=1) / math.sqrt(len(nll))
    assert abs(nll.mean() - ds.truth.entropy) < 4 * se + 1e-12
    assert np.isfinite(nll).all()  # samples lie on the support


@pytest.mark.parametrize("v", [2, 8])
def test_markov_truth(v):
    ds = get_dataset(f"markov-{v}")
    chain = ds.truth
    np.testing.assert_allclose(chain.transition.sum(1), 1.0)
    np.testing.assert_allclose(chain.stationary @ chain.transition, chain.stationary, atol=1e-12)
    assert ds.test.x.shape == (5000, 64) and ds.test.x.max() == v - 1
    # empirical first-token frequencies follow the stationary law
    freq = np.bincount(ds.train.x[:, 0], minlength=v) / len(ds.train)
    np.testing.assert_allclose(freq, chain.stationary, atol=0.03)
    nll = -chain.log_prob(ds.test.x)
    assert abs(nll.mean() - chain.entropy) < 4 * nll.std() / math.sqrt(len(nll))
    assert chain.entropy_rate < math.log(v)


def test_markov_log_prob_is_normalised_on_short_chains():
    """Summing exp(log_prob) over every sequence of a 2-symbol, 6-step chain gives 1."""
    from itertools import product

    from gmbench.datasets.synthetic import MarkovChain

    chain = get_dataset("markov-2").truth
    short = MarkovChain(chain.transition, chain.stationary, length=6)
    every = np.array(list(product(range(2), repeat=6)))
    assert np.exp(short.log_prob(every)).sum() == pytest.approx(1.0, abs=1e-12)
    assert short.entropy == pytest.approx(-(np.exp(short.log_prob(every))
                                            * short.log_prob(every)).sum(), rel=1e-10)


def test_bad_parametric_names():
    with pytest.raises(DatasetError, match="1 <= d"):
        get_dataset("gauss-0")
    with pytest.raises(DatasetError, match="Did you mean 'markov-<v>'|Unknown dataset"):
        get_dataset("markov")


# ----------------------------------------------------------------------------- IDX
@needs_fashion
def test_fashion_mnist_from_debian():
    ds = get_dataset("fashion-mnist")
    assert ds.info.shape == (1, 28, 28) and ds.info.levels == 256
    assert len(ds.train) == 60_000 and len(ds.test) == 10_000
    assert ds.train.x.dtype == np.uint8 and ds.test.y.max() == 9
    assert np.bincount(ds.test.y).tolist() == [1000] * 10


@needs_fashion
def test_lookup_order_and_checksum(tmp_path, monkeypatch):
    """--data-root wins over $GMBENCH_DATA; a corrupted file there is caught by checksum."""
    root = tmp_path / "root"
    root.mkdir()
    for f in DEBIAN_FASHION.iterdir():  # store decompressed: raw checksums still apply
        (root / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    monkeypatch.setenv("GMBENCH_DATA", str(tmp_path / "empty"))
    ds = make_idx_dataset("fashion-mnist", root)
    assert ds.source == str(root) and len(ds.test) == 10_000
    raw = bytearray((root / "t10k-labels-idx1-ubyte").read_bytes())
    raw[100] = (raw[100] + 1) % 10
    (root / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="Checksum mismatch.*t10k-labels"):
        make_idx_dataset("fashion-mnist", root)
    monkeypatch.setenv("GMBENCH_DATA", str(root))
    with pytest.raises(DatasetError, match="Checksum mismatch"):
        make_idx_dataset("fashion-mnist", None)


def test_truncated_idx_file(tmp_path):
    from gmbench.datasets.idx import read_idx

    header = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big")
    assert read_idx(header + bytes(10), path=tmp_path / "f").tolist() == [0] * 10
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(header + bytes(9), path=tmp_path / "f")
    with pytest.raises(DatasetError, match="magic"):
        read_idx(b"\x1f\x8b" + header, path=tmp_path / "f")


@needs_fashion
def test_download_path_with_local_mirror(tmp_path, monkeypatch):
    """The real download code, pointed at a file:// mirror: files are fetched, verified and
    then found in the user cache."""
    mirror = tmp_path / "mirror"
    shutil.copytree(DEBIAN_FASHION, mirror)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dest = tmp_path / "cache" / "gmbench" / "fashion-mnist"
    download("fashion-mnist", dest, urls=("file:///nonexistent/", mirror.as_uri() + "/"))
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in mirror.iterdir())
    ds = make_idx_dataset("fashion-mnist", tmp_path / "nothing-here")
    assert ds.source == str(dest)


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="could not be downloaded.*--data-root"):
        download("mnist", tmp_path / "dest", urls=((tmp_path / "no-mirror").as_uri() + "/",))
    assert not any((tmp_path / "dest").iterdir())  # nothing half-written


def test_bad_mirror_content_rejected(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (mirror / f"{stem}.gz").write_bytes(gzip.compress(b"not the real file"))
    with pytest.raises(DatasetError, match="Checksum mismatch"):
        download("mnist", tmp_path / "dest", urls=(mirror.as_uri() + "/",))
    assert not any((tmp_path / "dest").iterdir())
