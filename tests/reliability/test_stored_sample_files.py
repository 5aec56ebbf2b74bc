"""Stored samples given instead of a model: folders of PNG images (16-bit and mixed bit depths,
transparency, colour for a grey dataset, opaque grey-and-alpha images), NumPy files whose
header lies about their size or whose data is cut short, and what is said to a folder without
PNGs (or with them one level down) and to a NumPy file named without its suffix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gmbench
from gmbench.datasets import get_dataset
from gmbench.errors import ModelError


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)


def test_a_16_bit_png_folder_is_read_at_its_depth_not_binarised(tmp_path):
    """16-bit grey PNGs used to be binarised by an 8-bit conversion; now value / 65535."""
    digits = get_dataset("digits").test.x[:60]  # (60, 1, 8, 8) levels 0..16
    folder = tmp_path / "deep"
    folder.mkdir()
    for i, img in enumerate(digits):
        _png(folder / f"{i:03d}.png", (img[0].astype(np.uint16) * 4096 - (img[0] > 0)).astype(
            np.uint16))
    from gmbench.models.stored import read_samples

    x, _, _ = read_samples(folder, get_dataset("digits").info)
    want = (digits.astype(np.float64) * 4096 - (digits > 0)) / 65535
    assert x.dtype == np.float32 and np.allclose(x, want, atol=1e-7)
    # and through the boundary the same levels as the 8-bit originals
    res = gmbench.evaluate(samples=folder, dataset="digits", metrics=["copy_rate"],
                           progress=False)
    ref = gmbench.evaluate(samples=digits, dataset="digits", metrics=["copy_rate"],
                           progress=False)
    assert res["copy_rate"].value == ref["copy_rate"].value


@pytest.mark.parametrize("make, needle", [
    (lambda a: (np.stack([a, np.full_like(a, 128)], -1), "LA"), "transparent pixels"),
    (lambda a: (np.stack([a, a // 2, a], -1), "RGB"), "colour image"),
])
def test_png_transparency_and_colour_are_refused_for_a_grey_dataset(tmp_path, make, needle):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        arr, mode = make(np.full((8, 8), 16 * i, np.uint8))
        _png(folder / f"{i}.png", arr, mode)
    with pytest.raises(ModelError, match=needle):
        gmbench.evaluate(samples=folder, dataset="digits", progress=False)


def test_an_opaque_la_png_is_read_as_grey(tmp_path):
    folder = tmp_path / "la"
    folder.mkdir()
    digits = get_dataset("digits").test.x[:30]
    for i, img in enumerate(digits):
        grey = (img[0] * 255 // 16).astype(np.uint8)
        _png(folder / f"{i:02d}.png", np.stack([grey, np.full_like(grey, 255)], -1), "LA")
    from gmbench.models.stored import read_samples

    x, _, _ = read_samples(folder, get_dataset("digits").info)
    assert x.shape == (30, 1, 8, 8) and x.dtype == np.uint8


def test_a_png_folder_mixing_bit_depths_is_refused(tmp_path):
    from PIL import Image

    from gmbench.datasets import get_dataset

    digits = get_dataset("digits").test.x[:30, 0]
    for i, img in enumerate(digits):
        Image.fromarray(img.astype(np.uint8)).save(tmp_path / f"{i:02d}.png")
    Image.fromarray(digits[0].astype(np.uint16) * 4096).save(tmp_path / "99.png")
    with pytest.raises(ModelError, match="1 of the 31 images are 16-bit.*one bit depth"):
        gmbench.evaluate(samples=tmp_path, dataset="digits", progress=False)


def test_numpy_files_that_lie_or_are_cut_are_refused_before_loading(tmp_path):
    """A header claiming 10^12 images over 256 bytes of data used to end in a MemoryError
    traceback; a cut .npz in a BadZipFile one."""
    lying = tmp_path / "huge.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((4, 1, 8, 8), np.uint8))
    header["shape"] = (10**12, 1, 8, 8)
    with open(lying, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(bytes(256))
    with pytest.raises(ModelError, match="truncated or corrupt"):
        gmbench.evaluate(samples=lying, dataset="digits", progress=False)
    cut = tmp_path / "cut.npz"
    np.savez_compressed(cut, samples=np.zeros((500, 1, 8, 8), np.uint8))
    cut.write_bytes(cut.read_bytes()[:-40])
    with pytest.raises(ModelError, match="cannot be read as a NumPy file"):
        gmbench.evaluate(samples=cut, dataset="digits", progress=False)


# ------------------------------------------------------------------ what was meant as samples
def test_a_folder_without_pngs_is_read_as_a_samples_folder_that_says_what_it_expects(
        tmp_path, gmbench_cli):
    """A folder given as the model is never a model file: one holding only a README, or
    holding its PNGs one level down, is told where the images must be."""
    empty = tmp_path / "pngs"
    empty.mkdir()
    (empty / "README.txt").write_text("samples go here\n")
    run = gmbench_cli("evaluate", empty, "--dataset", "digits")
    assert run.code == 2 and "Traceback" not in run.err
    assert "pngs is a directory that holds no .png images" in run.err, run.err
    assert "folder of .png images, a .npy or a .npz" in run.err
    deeper = tmp_path / "deep"
    (deeper / "epoch10").mkdir(parents=True)
    for i, img in enumerate(get_dataset("digits").test.x[:30, 0]):
        _png(deeper / "epoch10" / f"{i:02d}.png", img.astype(np.uint8))
    run = gmbench_cli("evaluate", deeper, "--dataset", "digits")
    assert run.code == 2 and "Traceback" not in run.err
    assert "sub-folder epoch10/ holds some: pass" in run.err and \
        str(deeper / "epoch10") in run.err, run.err
    assert gmbench_cli("evaluate", deeper / "epoch10", "--dataset", "digits", "--metrics",
                       "mmd", "--n-samples", "30").code == 0


def test_a_numpy_file_without_its_suffix_is_told_to_take_one(tmp_path, gmbench_cli):
    bare = tmp_path / "samples"
    with open(bare, "wb") as fh:
        np.save(fh, np.random.default_rng(0).normal(size=(300, 2)))
    run = gmbench_cli("evaluate", bare, "--dataset", "toy2d-gmm8")
    assert run.code == 2 and "Traceback" not in run.err
    assert "is a NumPy .npy file named without its suffix" in run.err, run.err
    assert "rename it samples.npy" in run.err
    (tmp_path / "notes").write_text("not a model\n")
    run = gmbench_cli("evaluate", tmp_path / "notes", "--dataset", "toy2d-gmm8")
    assert run.code == 2 and "neither a model file nor stored samples" in run.err, run.err
    with pytest.raises(ModelError, match="rename it samples.npy"):
        gmbench.evaluate(samples=bare, dataset="toy2d-gmm8", progress=False)
