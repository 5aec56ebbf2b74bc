"""Bundled classifiers, feature extractors, the torch-fidelity registration and the on-disk
feature cache (issue 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gmbench.core.files import sha256_file
from gmbench.datasets import get_dataset
from gmbench.features.classifier import (
    WEIGHTS_DIR,
    ExtractorError,
    classifier_available,
    classifier_for,
)
from gmbench.features.extractors import (
    INCEPTION_URL,
    INCEPTION_WEIGHTS_FILE,
    ClassifierFeatures,
    InceptionFeatures,
    PixelFeatures,
    default_extractor,
    feature_space_label,
    get_extractor,
)

TARGETS = {"digits": 0.97, "fashion-mnist": 0.90, "mnist": 0.99}


def needs_weights(name: str):
    return pytest.mark.skipif(not classifier_available(name),
                              reason=f"no trained {name} classifier in the package")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_bundled_weights_are_recorded_small_and_accurate(name):
    if not classifier_available(name):
        pytest.fail(f"the {name} classifier must ship with the package")
    record = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    weights = WEIGHTS_DIR / record["weights_file"]
    assert sha256_file(weights) == record["weights_sha256"]
    assert weights.stat().st_size < 2_000_000
    assert record["test_accuracy"] >= TARGETS[name]
    assert record["feature_dim"] == 128
    for key in ("seed", "device", "seconds", "epochs", "command"):
        assert key in record["training"]
    # safetensors: a JSON header and raw tensors, nothing to unpickle
    from safetensors.torch import load_file

    assert set(load_file(str(weights))) == set(classifier_for(name).net.state_dict())


@needs_weights("digits")
def test_digits_accuracy_reproduces_the_record():
    ds = get_dataset("digits")
    clf = classifier_for("digits")
    acc = float((clf.predict(ds.test.x) == ds.test.y).mean())
    assert acc == pytest.approx(clf.test_accuracy, abs=1e-6)
    assert clf.features(ds.test.x[:5]).shape == (5, 128)
    assert clf.logits(ds.test.x[:5]).shape == (5, 10)


@needs_weights("digits")
def test_features_do_not_depend_on_batch_size():
    x = get_dataset("digits").test.x[:70]
    clf = classifier_for("digits")
    ref = clf.extract(x, batch_size=1000)
    for bs in (1, 7, 64):
        out = clf.extract(x, batch_size=bs)
        for key in ("features", "logits"):
            np.testing.assert_allclose(out[key], ref[key], rtol=1e-5, atol=1e-5)


@needs_weights("digits")
def test_integer_and_scaled_inputs_agree():
    x = get_dataset("digits").test.x[:20]
    clf = classifier_for("digits")
    np.testing.assert_allclose(clf.features(x), clf.features(x.astype(np.float32) / 16),
                               rtol=1e-6, atol=1e-6)


def test_mnist_without_weights_says_how_to_train(tmp_path):
    with pytest.raises(ExtractorError, match=r"gmbench\.features\.train_classifier --dataset mnist"):
        classifier_for("mnist", directory=tmp_path)
    with pytest.raises(ExtractorError, match="no trained classifier for dataset 'toy2d-gmm8'"):
        classifier_for("toy2d-gmm8")


def test_corrupt_weights_are_refused(tmp_path):
    if not classifier_available("digits"):
        pytest.skip("no digits classifier")
    for suffix in (".json", ".safetensors"):
        (tmp_path / f"digits{suffix}").write_bytes((WEIGHTS_DIR / f"digits{suffix}").read_bytes())
    blob = bytearray((tmp_path / "digits.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / "digits.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ExtractorError, match="do not match the sha256"):
        classifier_for("digits", directory=tmp_path)


@needs_weights("digits")
def test_extractor_choice_and_labels():
    ds = get_dataset("digits")
    auto = default_extractor(ds)
    assert isinstance(auto, ClassifierFeatures)
    assert feature_space_label(auto) == f"gmbench-digits (sha256 {auto.sha256[:12]})"
    assert isinstance(get_extractor("pixels", ds), PixelFeatures)
    assert feature_space_label(get_extractor("pixels", ds)) == "pixels"
    assert isinstance(get_extractor("auto", get_dataset("gauss-2")), PixelFeatures)
    with pytest.raises(ExtractorError, match="Did you mean 'classifier'"):
        get_extractor("clasifier", ds)
    with pytest.raises(ExtractorError, match="works on images"):
        get_extractor("classifier", get_dataset("gauss-2"))


# ------------------------------------------------------------------ InceptionV3
def test_inception_offline_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    ds = get_dataset("digits")
    with pytest.raises(ExtractorError) as err:
        get_extractor("inception-v3-compat", ds)
    assert INCEPTION_URL in str(err.value) and "--inception-weights" in str(err.value)
    with pytest.raises(ExtractorError, match="no such file"):
        get_extractor("inception-v3-compat", ds, inception_weights=tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"not": object()}, bad)  # needs the unrestricted unpickler: refused
    with pytest.raises(ExtractorError, match="not a torch-fidelity InceptionV3 weights file"):
        get_extractor("inception-v3-compat", ds, inception_weights=bad)


def test_cli_inception_without_weights(write_model, gmbench_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = write_model("""
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return torch.randint(0, 17, (n, 1, 8, 8))
        model = M()
    """)
    run = gmbench_cli("evaluate", model, "--metrics", "fid", "--n-samples", "100",
                      "--feature-extractor", "inception-v3-compat")
    assert run.code == 2
    assert INCEPTION_WEIGHTS_FILE in run.err and "Traceback" not in run.err


@pytest.mark.slow
def test_inception_weights_path_plumbing(random_inception_weights, write_model, gmbench_cli):
    ds = get_dataset("digits")
    ext = get_extractor("inception-v3-compat", ds, inception_weights=random_inception_weights)
    assert isinstance(ext, InceptionFeatures)
    assert ext.sha256 == sha256_file(random_inception_weights)
    x = ds.test.x[:3]
    t = ext._as_uint8(x)
    assert t.dtype == torch.uint8 and t.shape == (3, 3, 8, 8)
    assert int(t.max()) == round(int(x.max()) * 255 / 16)  # 0..16 mapped onto 0..255
    assert torch.equal(t[:, 0], t[:, 2])  # grayscale tiled
    out = ext.extract(x)
    assert out["features"].shape == (3, 2048) and out["logits"].shape == (3, 1008)
    assert feature_space_label(ext).startswith("inception-v3-compat (sha256 ")


# ------------------------------------------------------------------ torch-fidelity registration
class _Images(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, levels: int) -> None:
        self.x = torch.as_tensor(x.astype(np.float32) / (levels - 1))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


@needs_weights("digits")
def test_torch_fidelity_calculate_metrics_matches_ours():
    """torch-fidelity running our registered extractor end to end gives our numbers."""
    import torch_fidelity

    import gmbench.features.fidelity  # noqa: F401  (registers gmbench-<dataset>)
    from gmbench.estimators.image_quality import (
        fid_estimate,
        inception_score_estimate,
        kid_estimate,
        precision_recall_values,
    )
    from gmbench.estimators.prdc import prdc

    ds = get_dataset("digits")
    fake_x, real_x = ds.train.x[:400], ds.test.x
    tf = torch_fidelity.calculate_metrics(
        input1=_Images(fake_x, 17), input2=_Images(real_x, 17),
        feature_extractor="gmbench-digits", isc=True, fid=True, kid=True, prc=True,
        kid_subset_size=300, kid_subsets=20, rng_seed=7, cuda=False, cache=False,
        save_cpu_ram=True, verbose=False, batch_size=50)
    clf = classifier_for("digits")
    fake, real = clf.extract(fake_x), clf.extract(real_x)
    isc = inception_score_estimate(fake["logits"], seed=7)
    fid = fid_estimate(fake["features"], real["features"])
    kid, _ = kid_estimate(fake["features"], real["features"], seed=7, subsets=20,
                          subset_size=300)
    res = prdc(real["features"], fake["features"], seed=0)  # what gmbench reports
    precision, recall = res.values["precision"], res.values["recall"]
    tf_part = precision_recall_values(fake["features"], real["features"])  # float32 fractions
    assert (np.float32(precision), np.float32(recall)) == tuple(map(np.float32, tf_part))
    assert isc.value == pytest.approx(tf["inception_score_mean"], rel=1e-5)
    assert fid.value == pytest.approx(tf["frechet_inception_distance"], rel=1e-5)
    assert kid.value == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-4, abs=1e-7)
    # torch-fidelity returns the fraction rounded to float32; the counts are the same
    assert np.float32(precision) == np.float32(tf["precision"])
    assert np.float32(recall) == np.float32(tf["recall"])


# ------------------------------------------------------------------ on-disk cache
REPLAY_DIGITS = """
    import numpy as np
    from gmbench.datasets import get_dataset
    DATASET = "digits"
    class Replay:
        def __init__(self):
            self.x = get_dataset("digits").train.x
        def sample(self, n):
            return self.x[np.random.randint(0, len(self.x), n)]
    model = Replay()
"""


@needs_weights("digits")
def test_real_features_are_cached_on_disk(tmp_path, monkeypatch, write_model):
    from gmbench.models.model import build_model, import_model_file
    from gmbench.run.evaluation import Evaluation
    from gmbench.run.request import RunRequest

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = get_dataset("digits")
    module, source = import_model_file(write_model(REPLAY_DIGITS))
    model = build_model(module, source, ds.info, "cpu")

    ev = Evaluation(model, ds, RunRequest(n_samples=50))
    first = ev.features("test")
    files = list((tmp_path / "cache" / "gmbench" / "features").glob("*.safetensors"))
    assert len(files) == 1
    assert ds.sha256[:16] in files[0].name and ev.extractor.sha256[:16] in files[0].name

    calls = []
    ev2 = Evaluation(model, ds, RunRequest(n_samples=50))
    real_extract = ClassifierFeatures.extract
    monkeypatch.setattr(ClassifierFeatures, "extract",
                        lambda self, x: calls.append(len(x)) or real_extract(self, x))
    np.testing.assert_array_equal(ev2.features("test"), first)
    assert ev2.logits("test").shape == (len(ds.test), 10)
    assert calls == []  # test split read from the cache
    ev2.features("samples")
    assert calls == [50]  # samples are never cached

    files[0].write_bytes(b"garbage")  # a corrupt file is recomputed and rewritten
    ev3 = Evaluation(model, ds, RunRequest(n_samples=50))
    np.testing.assert_array_equal(ev3.features("test"), first)
    assert calls == [50, len(ds.test)]
    ev4 = Evaluation(model, ds, RunRequest(n_samples=50))
    ev4.features("test")
    assert calls == [50, len(ds.test)]
