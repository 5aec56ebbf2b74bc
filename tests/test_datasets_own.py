"""CIFAR-10 from its binary distribution, and your own dataset (``.npz`` or image folders),
on small generated RGB data: loading, the official-or-not note, the download code (local
``file://`` URLs), identical results from the same images in either form, CAS with labels,
clear errors for bad files; and InceptionV3 features and metrics equal to torch-fidelity's
with the same (random, local) weights file, on RGB images, at more than one batch size."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from gmbench.datasets import cifar, get_dataset
from gmbench.errors import DatasetError

RECORD = cifar.RECORD


def _blobs(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` RGB images ``(n, 3, size, size)`` uint8 of a coloured blob whose position,
    width and colour depend on its class (10 classes), plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:size, 0:size] * (32 / size)
    x = np.empty((n, 3, size, size), np.uint8)
    for i in range(n):
        cx, cy = 8 + 2 * y[i] + rng.normal(0, 1), 16 + rng.normal(0, 3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (3 + y[i] / 3) ** 2))
        colour = np.array([y[i] / 9, 1 - y[i] / 9, 0.5])[:, None, None]
        x[i] = np.clip(blob * colour * 255 + rng.normal(0, 8, (3, size, size)), 0, 255)
    return x, y.astype(np.int64)


def _records(x: np.ndarray, y: np.ndarray) -> bytes:
    return np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], 1).tobytes()


@pytest.fixture(scope="module")
def cifar_files(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray,
                                          np.ndarray]:
    """Generated images in the official binary layout: five training batches of 60 and a
    test batch of 100, in ``cifar-10-batches-bin/``, and the same as a ``.tar.gz``."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "files" / cifar.FOLDER
    folder.mkdir(parents=True)
    x_train, y_train = _blobs(300, 1)
    x_test, y_test = _blobs(100, 2)
    for i, name in enumerate(cifar.TRAIN_FILES):
        (folder / name).write_bytes(_records(x_train[60 * i:60 * (i + 1)],
                                             y_train[60 * i:60 * (i + 1)]))
    (folder / cifar.TEST_FILE).write_bytes(_records(x_test, y_test))
    (root / "archive").mkdir()
    with tarfile.open(root / "archive" / cifar.ARCHIVE, "w:gz") as tar:
        tar.add(folder, arcname=cifar.FOLDER)
    return root, x_train, y_train, x_test, y_test


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GMBENCH_DATA", raising=False)
    monkeypatch.setenv("GMBENCH_OFFLINE", "1")
    from gmbench.datasets import _load
    _load.cache_clear()
    yield
    _load.cache_clear()


def test_cifar10_from_binary_files_and_from_the_archive(cifar_files, isolated):
    root, x_train, y_train, x_test, y_test = cifar_files
    for where, says in ((root / "files", "extracted .bin files"),
                        (root / "archive", "NOT the official archive")):
        ds = cifar.make_cifar10(where, allow_download=False)
        assert ds.info.shape == (3, 32, 32) and ds.info.levels == 256
        assert ds.info.num_classes == 10
        np.testing.assert_array_equal(ds.train.x, x_train)
        np.testing.assert_array_equal(ds.train.y, y_train)
        np.testing.assert_array_equal(ds.test.x, x_test)
        np.testing.assert_array_equal(ds.test.y, y_test)
        assert says in ds.source and "300/100 images, not the official 50000/10000" in ds.source
    # the red plane first, row-major: the first pixel bytes of a record
    raw = (root / "files" / cifar.FOLDER / cifar.TEST_FILE).read_bytes()
    assert raw[1:4] == bytes(x_test[0, 0, 0, :3]) and raw[1 + 1024] == x_test[0, 1, 0, 0]


def test_a_truncated_cifar10_archive_is_called_damaged(cifar_files, isolated, tmp_path):
    """A download cut short lists the members before its end only: damaged, not "another
    archive"."""
    root = cifar_files[0]
    whole = (root / "archive" / cifar.ARCHIVE).read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / cifar.ARCHIVE).write_bytes(whole[:len(whole) // 3])
    with pytest.raises(DatasetError, match="damaged or incomplete"):
        cifar.make_cifar10(cut, allow_download=False)


def test_cifar10_offline_without_files_names_them(isolated, tmp_path):
    with pytest.raises(DatasetError) as err:
        get_dataset("cifar10", data_root=tmp_path / "empty")
    text = str(err.value)
    assert cifar.ARCHIVE in text and "data_batch_1.bin" in text and "--data-root" in text
    assert "GMBENCH_OFFLINE" in text


def test_cifar10_bad_binary_files(tmp_path):
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte records"):
        cifar.read_cifar_binary(b"\x00" * (RECORD * 2 - 5), path="data_batch_1.bin")
    bad = bytearray(RECORD)
    bad[0] = 12
    with pytest.raises(DatasetError, match="label 12"):
        cifar.read_cifar_binary(bytes(bad), path="test_batch.bin")
    (tmp_path / cifar.ARCHIVE).write_bytes(b"not a tar archive")
    with pytest.raises(DatasetError, match="damaged or incomplete"):
        cifar.make_cifar10(tmp_path, allow_download=False)


def test_cifar10_download_is_verified_atomic_and_resumes(cifar_files, tmp_path, monkeypatch):
    root = cifar_files[0]
    archive = root / "archive" / cifar.ARCHIVE
    url = (root / "archive").as_uri()
    dest = tmp_path / "dl"
    with pytest.raises(DatasetError, match="does not match the published sha256"):
        cifar.download_archive(dest, urls=(url,))
    assert not (dest / cifar.ARCHIVE).exists() and not (dest / f"{cifar.ARCHIVE}.part").exists()
    monkeypatch.setattr(cifar, "ARCHIVE_SHA256",
                        hashlib.sha256(archive.read_bytes()).hexdigest())
    (dest / f"{cifar.ARCHIVE}.part").write_bytes(archive.read_bytes()[:1000])  # interrupted
    got = cifar.download_archive(dest, urls=("file:///nonexistent/mirror", url))
    assert got.read_bytes() == archive.read_bytes()
    assert not (dest / f"{cifar.ARCHIVE}.part").exists()
    ds = cifar.make_cifar10(dest, allow_download=False)  # now the "official" archive
    assert "the official archive (sha256 verified)" in ds.source


# ------------------------------------------------------------------ your own dataset
def _write_pngs(folder: Path, x: np.ndarray, y: np.ndarray | None) -> None:
    from PIL import Image
    for i, img in enumerate(x):
        where = folder / (f"class{y[i]}" if y is not None else "")
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(where / f"{i:05d}.png")


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    """The same 8x8 RGB images as ``blobs.npz`` (labels sorted by class, as class folders
    order them), as ``blobs/`` with class sub-folders, and as ``flat/blobs`` without."""
    root = tmp_path_factory.mktemp("own")
    x_train, y_train = _blobs(400, 3, size=8)
    x_test, y_test = _blobs(200, 4, size=8)
    o_tr, o_te = np.argsort(y_train, kind="stable"), np.argsort(y_test, kind="stable")
    x_train, y_train, x_test, y_test = x_train[o_tr], y_train[o_tr], x_test[o_te], y_test[o_te]
    np.savez(root / "blobs.npz", x_train=x_train.transpose(0, 2, 3, 1), x_test=x_test,
             y_train=y_train, y_test=y_test)  # NHWC and NCHW both accepted
    _write_pngs(root / "blobs" / "train", x_train, y_train)
    _write_pngs(root / "blobs" / "test", x_test, y_test)
    _write_pngs(root / "flat" / "blobs" / "train", x_train, None)
    _write_pngs(root / "flat" / "blobs" / "test", x_test, None)
    return root


MODEL = """
import numpy as np
from gmbench.datasets import get_dataset
PATH = {path!r}
class Noisy:
    def __init__(self):
        self.x = get_dataset(PATH).train.x
    def sample(self, n):
        x = self.x[np.random.randint(0, len(self.x), n)].astype(int)
        return np.clip(x + np.random.randint(-20, 21, x.shape), 0, 255).astype(np.uint8)
def load(dataset, device):
    return Noisy()
"""


def test_npz_and_png_folders_are_the_same_dataset(own_data):
    a = get_dataset(str(own_data / "blobs.npz"))
    b = get_dataset(str(own_data / "blobs"))
    c = get_dataset(str(own_data / "flat" / "blobs"))
    assert a.info == b.info and a.info.shape == (3, 8, 8) and a.info.num_classes == 10
    assert a.sha256 == b.sha256  # same name, arrays and labels: the same content hash
    np.testing.assert_array_equal(a.train.x, c.train.x)
    assert c.info.num_classes is None and c.train.y is None


def test_npz_and_png_folders_give_identical_metrics_and_cas_runs(own_data, write_model,
                                                                 gmbench_cli):
    metrics = "fid,kid,precision,recall,density,coverage,mmd,c2st_accuracy,copy_rate,cas"
    values = []
    for where in (own_data / "blobs.npz", own_data / "blobs"):
        model = write_model(MODEL.format(path=str(where)))
        run = gmbench_cli("evaluate", model, "--dataset", str(where), "--metrics", metrics,
                          "--n-samples", "400", "--seed", "3")
        assert run.code == 0, run.err
        values.append({k: run.metric(k)["value"] for k in metrics.split(",")})
    assert values[0] == values[1]
    assert values[0]["cas"] > 0.5  # labelled: CAS trains on the blobs' classes


BY_NAME = """
import numpy as np
from gmbench.datasets import get_dataset
class Replay:
    def __init__(self, x):
        self.x = x
    def sample(self, n):
        return self.x[np.arange(n) % len(self.x)]
def load(dataset, device):  # your own dataset too: by the name gmbench passes
    return Replay(get_dataset(dataset.name).train.x)
"""


def test_a_model_reaches_the_training_split_of_your_own_dataset_by_its_name(
        own_data, write_model, gmbench_cli):
    model = write_model(BY_NAME)
    run = gmbench_cli("evaluate", model, "--dataset", str(own_data / "blobs.npz"),
                      "--metrics", "copy_rate", "--n-samples", "400")
    assert run.code == 0, run.err
    assert run.metric("copy_rate")["value"] == 1.0  # it replays the training images


@pytest.mark.parametrize(("make", "message"), [
    ("mixed_sizes", "4x4 pixels, not 8x8"),
    ("gray_among_rgb", "grayscale among RGB images"),
    ("label_length", "needs one label per image"),
    ("one_split_labelled", "labels for one split only"),
    ("missing_test", "has no x_test"),
    ("classes_differ", "different class sub-folders"),
    ("builtin_name", "the name of a built-in dataset"),
])
def test_bad_own_datasets_are_clear_errors(tmp_path, make, message):
    from PIL import Image
    rgb = np.zeros((8, 8, 3), np.uint8)
    where = tmp_path / "data"
    if make in ("mixed_sizes", "gray_among_rgb", "classes_differ"):
        for split in ("train", "test"):
            (where / split / "a").mkdir(parents=True)
            Image.fromarray(rgb).save(where / split / "a" / "0.png")
        odd = where / "train" / "a" / "1.png"
        if make == "mixed_sizes":
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(odd)
        elif make == "gray_among_rgb":
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(odd)
        else:
            (where / "test" / "b").mkdir()
            Image.fromarray(rgb).save(where / "test" / "b" / "0.png")
    else:
        arrays = {"x_train": np.zeros((5, 8, 8), np.uint8), "x_test": np.zeros((3, 8, 8),
                                                                                np.uint8)}
        if make == "label_length":
            arrays |= {"y_train": np.zeros(4, np.int64), "y_test": np.zeros(3, np.int64)}
        elif make == "one_split_labelled":
            arrays["y_train"] = np.zeros(5, np.int64)
        elif make == "missing_test":
            del arrays["x_test"]
        where = tmp_path / ("digits.npz" if make == "builtin_name" else "data.npz")
        np.savez(where, **arrays)
    with pytest.raises(DatasetError, match=message):
        get_dataset(str(where))


def test_bad_own_dataset_on_the_command_line(tmp_path, gmbench_cli):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    run = gmbench_cli("evaluate", "baselines/ppca.py", "--dataset", str(tmp_path / "broken.npz"))
    assert run.code == 2 and "Cannot read" in run.err and "Traceback" not in run.err


# ------------------------------------------------------------------ folders as found on disk
def _grey_folder(root: Path, classes: tuple[str, ...] = (), n: int = 12, seed: int = 0
                 ) -> Path:
    """``root/{train,test}`` of ``n`` random 8x8 grey PNGs each (in each of ``classes``'
    sub-folders when given)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in classes or ("",):
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                    folder / f"{i:03d}.png")
    return root


def test_hidden_entries_are_not_classes_or_images(tmp_path):
    """Jupyter's .ipynb_checkpoints/ (with a checkpoint copy of an image) and a .DS_Store
    are not part of the dataset: no hidden class shifting every label, no extra image, and
    a flat folder stays flat."""
    from PIL import Image
    classes = _grey_folder(tmp_path / "cls", ("cat", "dog"), n=6)
    flat = _grey_folder(tmp_path / "flat")
    for root in (classes, flat):
        for split in ("train", "test"):
            hidden = root / split / ".ipynb_checkpoints"
            hidden.mkdir()
            Image.fromarray(np.full((8, 8), 7, np.uint8)).save(hidden / "000-checkpoint.png")
            (root / split / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    data = get_dataset(str(classes))
    assert data.info.num_classes == 2 and len(data.train) == 12
    np.testing.assert_array_equal(np.unique(data.train.y), [0, 1])  # cat 0, dog 1
    assert get_dataset(str(flat)).train.x.shape == (12, 1, 8, 8)


def test_a_broken_symbolic_link_is_refused_by_name(tmp_path):
    root = _grey_folder(tmp_path / "imgs")
    (root / "train" / "999.png").symlink_to(tmp_path / "nonexistent" / "999.png")
    with pytest.raises(DatasetError, match=r"999\.png is a broken symbolic link"):
        get_dataset(str(root))


def test_a_folder_mixing_images_and_class_folders_names_the_folders(tmp_path):
    root = _grey_folder(tmp_path / "imgs")
    (root / "train" / "extra").mkdir()
    with pytest.raises(DatasetError, match=r"mixes image files and class sub-folders \(extra/\)"):
        get_dataset(str(root))


def test_notes_beside_images_do_not_make_a_text_corpus(tmp_path):
    """One .txt per split used to turn an image folder into a text corpus of its notes."""
    root = _grey_folder(tmp_path / "imgs")
    for split in ("train", "test"):
        (root / split / "notes.txt").write_text("exported from the camera\n")
    data = get_dataset(str(root))
    assert data.info.kind == "image" and data.train.x.shape == (12, 1, 8, 8)
    (root / "test").rename(tmp_path / "gone")  # .txt only in test/, images in train/
    (root / "test").mkdir()
    (root / "test" / "notes.txt").write_text("a note\n")
    with pytest.raises(DatasetError, match="holds no image files.*text corpus only where"):
        get_dataset(str(root))


def test_float_images_are_refused_not_read_as_black(tmp_path):
    """Mode-F (32-bit float) TIFFs in [0, 1] went through convert("RGB"): every pixel 0."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / "tiffs" / split).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.random((8, 8)).astype(np.float32), mode="F").save(
                tmp_path / "tiffs" / split / f"{i}.tif")
    with pytest.raises(DatasetError, match="32-bit floating-point image"):
        get_dataset(str(tmp_path / "tiffs"))


def test_examples_without_values_are_refused(tmp_path):
    where = tmp_path / "empty.npz"
    np.savez(where, x_train=np.zeros((60, 0), np.float32), x_test=np.zeros((40, 0),
                                                                        np.float32))
    with pytest.raises(DatasetError, match=r"x_train has shape \(60, 0\).*at least one value"):
        get_dataset(str(where))


SAME_NAME = """
from gmbench.datasets import get_dataset
def load(dataset, device):
    data = get_dataset(dataset.name)
    if not data.source.endswith("data.npz") or data.train.x.shape != (60, 1, 8, 8):
        raise ValueError(f"got {data.source} {data.train.x.shape}")
    class Replay:
        def sample(self, n):
            return data.train.x[:n]
    return Replay()
"""


def test_a_model_gets_the_dataset_evaluated_not_a_folder_of_its_name(
        tmp_path, monkeypatch, write_model, gmbench_cli):
    """data.npz beside a folder data/: get_dataset('data') in the model is data.npz's
    dataset (whose hash the results record), not the folder found in the working folder."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez("data.npz", x_train=rng.integers(0, 10, (60, 8, 8)),
             x_test=rng.integers(0, 10, (40, 8, 8)))
    _grey_folder(tmp_path / "data", n=15)
    run = gmbench_cli("evaluate", write_model(SAME_NAME), "--dataset", "data.npz",
                      "--metrics", "mmd", "--n-samples", "40")
    assert run.code == 0, run.err
    from gmbench.datasets import open_dataset
    folder = open_dataset("data")  # what the user names is the path: the folder
    assert folder.source == str(tmp_path / "data") and len(folder.train) == 15
    assert get_dataset("data") is folder  # now the dataset loaded under that name
    assert get_dataset("data.npz").train.x.shape == (60, 1, 8, 8)
    assert get_dataset("data").source.endswith("data.npz")
    assert len(open_dataset("data").train) == 15
    for f in sorted((tmp_path / "data" / "train").iterdir())[:5]:  # the folder rewritten
        f.unlink()
    assert len(get_dataset("data").train) == 10  # the same place: read again


# ------------------------------------------------------------------ Inception parity
@pytest.mark.slow
def test_inception_features_and_metrics_equal_torch_fidelity(random_inception_weights):
    """gmbench's ``inception-v3-compat`` pass and its FID, KID, IS and precision/recall equal
    ``torch_fidelity.calculate_metrics`` with the same weights file on the same RGB images
    (torch-fidelity's own resizing and normalisation inside the module), at batch sizes 7
    and 64; figures of the largest relative difference are printed for the record."""
    import torch
    import torch_fidelity

    from gmbench.estimators.image_quality import (
        fid_estimate,
        inception_score_estimate,
        kid_estimate,
        precision_recall_values,
    )
    from gmbench.features.extractors import InceptionFeatures

    fake_x, _ = _blobs(60, 5)
    real_x, _ = _blobs(60, 6)
    from gmbench.features.extractors import find_inception_weights
    with pytest.MonkeyPatch.context() as mp:  # the environment variable names the file too
        mp.setenv("GMBENCH_INCEPTION_WEIGHTS", str(random_inception_weights))
        assert find_inception_weights(None) == random_inception_weights
    ext = InceptionFeatures.load(levels=256, weights=random_inception_weights)
    outputs = []
    for batch in (7, 64):
        ext_b = InceptionFeatures(module=ext.module, levels=256, sha256=ext.sha256,
                                  batch_size=batch)
        outputs.append((ext_b.extract(fake_x), ext_b.extract(real_x)))
    for key in ("features", "logits"):  # batch size does not change the pass
        np.testing.assert_allclose(outputs[0][0][key], outputs[1][0][key], rtol=1e-5,
                                   atol=1e-5)
    fake, real = outputs[1]

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = torch.as_tensor(x)  # uint8 (n, 3, H, W): torch-fidelity's own input

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    figures = {}
    for batch in (7, 64):
        tf = torch_fidelity.calculate_metrics(
            input1=Images(fake_x), input2=Images(real_x), feature_extractor="inception-v3-compat",
            feature_extractor_weights_path=str(random_inception_weights), isc=True, fid=True,
            kid=True, prc=True, kid_subset_size=50, kid_subsets=10, rng_seed=7, cuda=False,
            cache=False, save_cpu_ram=True, verbose=False, batch_size=batch)
        isc = inception_score_estimate(fake["logits"], seed=7, splits=10)
        fid = fid_estimate(fake["features"], real["features"])
        kid, _ = kid_estimate(fake["features"], real["features"], seed=7, subsets=10,
                              subset_size=50)
        precision, recall = precision_recall_values(fake["features"], real["features"])
        pairs = {"inception_score": (isc.value, tf["inception_score_mean"]),
                 "fid": (fid.value, tf["frechet_inception_distance"]),
                 "kid": (kid.value, tf["kernel_inception_distance_mean"]),
                 "precision": (precision, tf["precision"]), "recall": (recall, tf["recall"])}
        for key, (ours, theirs) in pairs.items():
            figures[f"{key}@{batch}"] = abs(ours - theirs) / max(abs(theirs), 1e-12)
        assert isc.value == pytest.approx(tf["inception_score_mean"], rel=1e-5)
        assert fid.value == pytest.approx(tf["frechet_inception_distance"], rel=1e-5)
        assert kid.value == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-4)
        assert np.float32(precision) == np.float32(tf["precision"])
        assert np.float32(recall) == np.float32(tf["recall"])
    print("max relative difference against torch-fidelity:", json.dumps(
        {k: float(f"{v:.2e}") for k, v in figures.items()}))


UNIFORM = """
import math
import numpy as np
import torch
class Uniform:
    log_prob_space = "data"
    log_prob_kind = "exact"
    def log_prob(self, x):
        return torch.full((len(x),), -3072 * math.log(256), dtype=torch.float64)
    def sample(self, n):
        return np.random.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
def load(dataset, device):
    return Uniform()
"""


def test_cifar10_evaluates_from_generated_official_files(cifar_files, isolated, write_model,
                                                         gmbench_cli):
    """``gmbench evaluate --dataset cifar10`` with the files in place: bits/dim over 3,072
    dimensions (the uniform mass over 256 levels is exactly 8 bits/dim), sample metrics,
    and CAS on the ten classes."""
    root = cifar_files[0]
    run = gmbench_cli("evaluate", write_model(UNIFORM), "--dataset", "cifar10", "--data-root",
                      str(root / "files"), "--metrics", "bits_per_dim,nll,mmd,precision,cas",
                      "--n-samples", "200")
    assert run.code == 0, run.err
    assert run.metric("bits_per_dim")["value"] == pytest.approx(8.0, abs=1e-12)
    assert run.metric("nll")["value"] == pytest.approx(3072 * np.log(256), rel=1e-12)
    assert run.metric("precision")["value"] < 0.2  # uniform noise is far from the blobs
    assert 0.0 <= run.metric("cas")["value"] <= 0.3  # noise labels teach nothing


def test_a_classifier_trained_for_your_dataset_is_its_feature_space(own_data, tmp_path,
                                                                   monkeypatch, write_model,
                                                                   gmbench_cli, one_thread):
    """The documented command trains the same weights twice (same data, seed, threads); with
    GMBENCH_CLASSIFIERS set, ``auto`` evaluates in that space (logits too: the Inception
    Score runs); a classifier recorded for other contents under the same name is refused."""
    from gmbench.features import classifier as clf_mod
    from gmbench.features.train_classifier import main as train_main

    data = str(own_data / "blobs.npz")
    for out in ("a", "b"):
        assert train_main(["--dataset", data, "--epochs", "2", "--threads", "1", "--out",
                           str(tmp_path / out)]) == 0
    records = [json.loads((tmp_path / out / "blobs.json").read_text()) for out in "ab"]
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"]
    assert records[0]["architecture"]["in_shape"] == [3, 8, 8]
    assert records[0]["dataset_sha256"] == get_dataset(data).sha256
    monkeypatch.setenv("GMBENCH_CLASSIFIERS", str(tmp_path / "a"))
    clf_mod._load.cache_clear()
    model = write_model(MODEL.format(path=data))
    run = gmbench_cli("evaluate", model, "--dataset", data, "--metrics",
                      "inception_score,fid", "--n-samples", "400")
    assert run.code == 0, run.err
    assert run.metric("fid")["feature_space"].startswith("gmbench-blobs (sha256 "
                                                          f"{records[0]['weights_sha256'][:12]}")
    other = tmp_path / "other" / "blobs.npz"  # other contents, the same name
    other.parent.mkdir()
    x, y = _blobs(50, 9, size=8)
    np.savez(other, x_train=x, x_test=x[:20], y_train=y, y_test=y[:20])
    run = gmbench_cli("evaluate", model, "--dataset", str(other), "--metrics", "fid",
                      "--n-samples", "50")
    assert run.code != 0 and "trained on other data named 'blobs'" in run.err
    clf_mod._load.cache_clear()
