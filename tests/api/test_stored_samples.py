"""Stored samples (``.npz``, ``.npy``, a folder of PNGs, an array) are evaluated exactly like
the model that drew them: the same samples and seed give identical metric values through a
model file on the command line, the Python API with the object, and every stored form. Bad
stored samples get a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import gmbench
from gmbench.errors import GmbenchError, ModelError

SEED = 5
N = 300
# Every sample metric that is cheap on digits; cas exercises the pseudo-labels, c2st the
# classifier training, the rest the shared feature and neighbour passes.
METRICS = ["fid", "kid", "precision", "recall", "density", "coverage", "mmd", "kl_knn",
           "nn_distance_ratio", "copy_rate", "data_copying_ct", "c2st_accuracy", "cas"]
TRAINED = {"c2st_accuracy", "cas"}  # the slow ones: checked on one stored form

MODEL = """
    import torch
    from gmbench.datasets import get_dataset
    DATASET = "digits"
    X = torch.as_tensor(get_dataset("digits").train.x)

    class Jitter:
        '''Training digits with +-2 levels of noise: not a copy, not noise.'''
        def sample(self, n):
            idx = torch.randint(0, len(X), (n,))
            return (X[idx] + torch.randint(-2, 3, X[idx].shape)).clamp(0, 16)

    model = Jitter()
"""


def _values(doc: dict) -> dict[str, tuple]:
    return {k: (m["value"], m["ci_low"], m["ci_high"]) for k, m in doc["metrics"].items()}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The model file, its samples (as the boundary hands them to the metrics) and the
    command line's results for it."""
    from gmbench.cli import main

    tmp = tmp_path_factory.mktemp("stored")
    model_file = tmp / "jitter.py"
    import textwrap

    model_file.write_text(textwrap.dedent(MODEL))
    out = tmp / "cli-model"
    code = main(["evaluate", str(model_file), "--seed", str(SEED), "--n-samples", str(N),
                 "--metrics", ",".join(METRICS), "--out", str(out), "--quiet"])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    # the API with the model object: the same values, and the samples it evaluated
    obj = gmbench.load_model(model_file).obj
    api = gmbench.evaluate(obj, dataset="digits", seed=SEED, n_samples=N, metrics=METRICS,
                           progress=False)
    assert _values(api.document) == _values(doc)
    samples = api.artifacts.samples  # int64 levels 0..16, (N, 1, 8, 8)
    assert samples is not None and samples.shape == (N, 1, 8, 8)
    return {"tmp": tmp, "samples": samples, "doc": doc}


def test_stored_forms_match_the_model(drawn, gmbench_cli):
    tmp, samples = drawn["tmp"], drawn["samples"]
    expected = _values(drawn["doc"])
    assert set(expected) == set(METRICS)

    np.save(tmp / "levels.npy", samples.astype(np.uint8))
    np.savez(tmp / "nhwc.npz", samples=np.transpose(samples, (0, 2, 3, 1)).astype(np.int16))
    png_dir = tmp / "pngs"
    png_dir.mkdir()
    from PIL import Image

    for i, img in enumerate(samples.astype(np.uint8)):
        Image.fromarray(img[0], mode="L").save(png_dir / f"{i:05d}.png")
    for target in (tmp / "levels.npy", tmp / "nhwc.npz", png_dir):
        keys = METRICS if target.suffix == ".npy" else [k for k in METRICS if k not in TRAINED]
        run = gmbench_cli("evaluate", target, "--dataset", "digits", "--seed", str(SEED),
                          "--metrics", ",".join(keys), "--quiet")
        assert run.code == 0, run.err
        assert _values(run.results) == {k: expected[k] for k in keys}, target.name
        assert run.results["n_samples"] == N

    # the API with arrays: floats in [0, 1] (bin centres) and a tensor of levels
    keys = [k for k in METRICS if k not in TRAINED]
    floats = (samples.astype(np.float64) + 0.5) / 17
    for stored in (floats, torch.as_tensor(samples)):
        res = gmbench.evaluate(samples=stored, dataset="digits", seed=SEED, metrics=keys,
                               progress=False)
        assert _values(res.document) == {k: expected[k] for k in keys}


def test_likelihood_metrics_are_skipped_with_a_note(tmp_path):
    x = np.random.default_rng(0).integers(0, 17, size=(100, 1, 8, 8))
    res = gmbench.evaluate(samples=x, dataset="digits", metrics=None, seed=0, progress=False)
    assert "nll" in res.skipped and "log_prob" in res.skipped["nll"]
    assert "nll" not in res and "mmd" in res


def test_toy_data_as_a_two_column_array():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    res = gmbench.evaluate(samples=x, dataset="toy2d-gmm8", metrics=["mmd"], seed=0,
                           progress=False)
    assert res["mmd"].n == 400 and res["mmd"].value > 0


def _save(tmp: Path, name: str, arr: np.ndarray) -> Path:
    path = tmp / name
    np.save(path, arr) if name.endswith(".npy") else np.savez(path, **{"samples": arr})
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda: np.zeros((50, 1, 8, 9), np.uint8), r"shape \(50, 1, 8, 9\).*\(n, 1, 8, 8\)"),
    (lambda: np.zeros((50, 64), np.uint8), r"shape \(50, 64\)"),
    (lambda: np.zeros((50, 1, 8, 8), np.complex64), "dtype complex64"),
    (lambda: np.zeros((50, 1, 8, 8), bool), "dtype bool"),
    (lambda: np.full((50, 1, 8, 8), 200, np.uint8), "uint8 with values up to 200.*17 levels"),
    (lambda: np.full((50, 1, 8, 8), 1.5), r"floats in \[1\.5, 1\.5\]"),
    (lambda: np.full((50, 1, 8, 8), np.nan), "non-finite"),
    (lambda: np.full((50, 1, 8, 8), -1, np.int64), r"integers in \[-1, -1\]"),
    (lambda: np.zeros((5, 1, 8, 8), np.uint8), "holds 5 samples; sample metrics need at least 20"),
])
def test_bad_stored_samples_get_a_clear_error(tmp_path, gmbench_cli, make, message):
    path = _save(tmp_path, "bad.npy", make())
    run = gmbench_cli("evaluate", path, "--dataset", "digits", "--metrics", "mmd", "--quiet")
    assert run.code == 2
    assert run.err.startswith("gmbench: error:") and "Traceback" not in run.err
    import re

    assert re.search(message, run.err), run.err
    assert not run.dir.exists()  # nothing half-written
    with pytest.raises(GmbenchError, match=message):
        gmbench.evaluate(samples=path, dataset="digits", metrics=["mmd"], progress=False)


def test_unreadable_stored_files(tmp_path):
    cases = {}
    (tmp_path / "cut.npy").write_bytes(np.save.__doc__.encode()[:50])
    cases["cut.npy"] = "cannot be read as a NumPy file"
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases["obj.npy"] = "pickled arrays are refused"
    np.savez(tmp_path / "two.npz", a=np.zeros((30, 1, 8, 8)), b=np.zeros(3))
    cases["two.npz"] = "holds 2 arrays.*name the samples 'samples'"
    (tmp_path / "empty").mkdir()
    cases["empty"] = "holds no .png images"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "0.png").write_bytes(b"not a png")
    cases["broken"] = "0.png is not a readable PNG"
    cases["missing.npz"] = "do not exist"
    for name, message in cases.items():
        with pytest.raises(ModelError, match=message):
            gmbench.evaluate(samples=tmp_path / name, dataset="digits", progress=False)


def test_more_samples_than_stored_is_refused():
    x = np.zeros((40, 1, 8, 8), np.uint8)
    with pytest.raises(ModelError, match="40 stored samples.*--n-samples 40 or fewer"):
        gmbench.evaluate(samples=x, dataset="digits", n_samples=50, metrics=["mmd"],
                         progress=False)


def test_model_and_samples_together_are_refused():
    with pytest.raises(ModelError, match="either a model or stored samples"):
        gmbench.evaluate(object(), samples=np.zeros((40, 2)), dataset="toy2d-gmm8")
