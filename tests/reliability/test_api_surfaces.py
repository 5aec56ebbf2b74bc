"""The newer surfaces held to the old standard: a model object and its dataset, your own
dataset files in a long-lived process, odd files, and model code that relies on ordinary
Python (pickling its own classes)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import hooked_model

ROOT = Path(__file__).resolve().parents[2]
class Shift:
    """A model object with one setting."""

    def __init__(self, mu: float) -> None:
        self.mu = mu

    def sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, 2) + self.mu

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self.mu, 1.0).log_prob(x).sum(-1)


def test_configurations_of_one_class_are_two_models():
    import gmbench

    def identity(obj: Shift) -> str:
        return gmbench.evaluate(obj, dataset="gauss-2", metrics=["nll"],
                                progress=False).document["model"]["sha256"]

    assert identity(Shift(0.0)) != identity(Shift(5.0))
    assert identity(Shift(0.0)) == identity(Shift(0.0))


def test_a_model_loaded_for_one_dataset_is_not_scored_on_another(tmp_path):
    """A model object built by ``load(dataset)`` for digits (17 levels) is refused on a
    256-level dataset instead of having its levels 0..16 read as 0..16 of 255."""
    import gmbench
    from gmbench.errors import ModelError

    rng = np.random.default_rng(0)
    own = tmp_path / "bytes8x8.npz"
    np.savez(own, x_train=rng.integers(0, 256, (300, 8, 8), dtype=np.uint8),
             x_test=rng.integers(0, 256, (100, 8, 8), dtype=np.uint8))
    model = gmbench.load_model(ROOT / "baselines" / "categorical.py", dataset="digits")
    with pytest.raises(ModelError, match=r"was loaded for digits \(shape \(1, 8, 8\), 17 "
                                         r"levels\) and cannot be evaluated on bytes8x8"):
        gmbench.evaluate(model, dataset=str(own), metrics=["fid"], progress=False)
    same = gmbench.evaluate(model, dataset="digits", metrics=["nll"], progress=False)
    assert same.metrics["nll"].value > 0


def test_a_dataset_file_rewritten_between_two_evaluations_is_read_again(points_and_gauss):
    import gmbench

    own, model = points_and_gauss()
    first = gmbench.evaluate(str(model), dataset=str(own), metrics=["nll"], progress=False)
    points_and_gauss(3.0)
    second = gmbench.evaluate(str(model), dataset=str(own), metrics=["nll"], progress=False)
    assert first.document["dataset"]["sha256"] != second.document["dataset"]["sha256"]
    # N(0, I) scores the test points shifted by (3, 3) 9 nats worse each on average
    assert second.metrics["nll"].value - first.metrics["nll"].value > 5


def test_a_pipe_is_refused_not_read(tmp_path, gmbench_cli):
    """A FIFO among stored PNG samples, or passed as a dataset .npz, would block a read for
    ever; it is refused before anything opens it."""
    import signal

    folder = tmp_path / "pngs"
    folder.mkdir()
    os.mkfifo(folder / "0000.png")
    os.mkfifo(tmp_path / "data.npz")
    signal.alarm(60)  # a regression hangs: fail the test instead of the suite
    try:
        run = gmbench_cli("evaluate", folder, "--dataset", "digits", "--metrics", "fid")
        assert run.code == 2 and "0000.png is not a regular file" in run.err, run.err
        run = gmbench_cli("evaluate", ROOT / "examples" / "minimal_model.py", "--dataset",
                          tmp_path / "data.npz", "--metrics", "fid")
        assert run.code == 2 and "is not a regular file or a folder" in run.err, run.err
    finally:
        signal.alarm(0)


def test_a_model_may_pickle_its_own_classes(gmbench_cli, tmp_path):
    path = hooked_model(tmp_path, load="import pickle; copy = pickle.loads(pickle.dumps("
                                     "Model(dataset)))")
    run = gmbench_cli("evaluate", path, "--metrics", "nll")
    assert run.code == 0, run.err


def test_a_models_umask_does_not_reach_gmbenchs_files(gmbench_cli, tmp_path):
    path = hooked_model(tmp_path, load="import os; os.umask(0o777)")
    run = gmbench_cli("evaluate", path, "--metrics", "nll")
    assert run.code == 0, run.err
    assert (run.dir / "results.json").stat().st_mode & 0o777 == 0o644
    assert os.umask(0o022) == 0o022


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_model_thread_that_exits_later_does_not_end_gmbench(gmbench_cli, tmp_path):
    """The thread calls os._exit(0) after load returned, while gmbench samples: refused for
    the whole evaluation, which finishes with its results."""
    path = hooked_model(tmp_path, load="""import os, threading, time
    threading.Thread(target=lambda: (time.sleep(0.5), os._exit(0)), daemon=True).start()""")
    slow = path.read_text().replace("    def sample(self, n):\n",
                                    "    def sample(self, n):\n        import time; "
                                    "time.sleep(0.3)\n")
    path.write_text(slow)
    run = gmbench_cli("evaluate", path, "--metrics", "fid", "--n-samples", "2000")
    assert run.code == 0 and (run.dir / "results.json").is_file()


def test_a_model_may_use_a_process_pool(gmbench_cli, tmp_path):
    """Forked workers end as they ask (os._exit is refused only in gmbench's own process)."""
    path = hooked_model(tmp_path, load="""import multiprocessing as mp
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]""")
    run = gmbench_cli("evaluate", path, "--metrics", "nll")
    assert run.code == 0, run.err


def test_evaluations_in_two_threads_equal_the_same_run_one_after_the_other():
    import sys
    import threading

    import gmbench

    def run(model: str) -> dict:
        res = gmbench.evaluate(str(ROOT / "baselines" / f"{model}.py"), dataset="digits",
                               metrics=["nll", "fid"], progress=False)
        return {k: res[k].value for k in ("nll", "fid")}

    alone = {m: run(m) for m in ("ppca", "categorical")}
    stdout = sys.stdout
    together: dict = {}
    threads = [threading.Thread(target=lambda m=m: together.__setitem__(m, run(m)))
               for m in ("ppca", "categorical")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone and sys.stdout is stdout


class GlobalDrawer:
    """Samples from torch's and NumPy's global generators; ``meanwhile()`` runs inside each
    call to ``sample``, after the model was seeded and before it draws."""

    def __init__(self, meanwhile=lambda: None) -> None:
        self.meanwhile = meanwhile

    def sample(self, n: int) -> torch.Tensor:
        self.meanwhile()
        return torch.randn(n, 2, dtype=torch.float64) * 2 + torch.from_numpy(np.random.rand(n, 1))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(0.0, 2.0).log_prob(torch.as_tensor(x)).sum(-1)


def test_a_thread_drawing_from_the_global_generators_beside_an_evaluation_never_repeats():
    """A training loop draws from torch's and NumPy's global generators in one thread while
    evaluations run in another, the loop drawing while the model runs: the loop's draws
    never repeat and are the very numbers its seed gives (the evaluation neither seeds nor
    rewinds the global generators), and the evaluations give the values they give alone."""
    import threading

    import gmbench

    def mmd(model: GlobalDrawer) -> float:
        return gmbench.evaluate(model, dataset="toy2d-gmm8", metrics=["mmd"], n_samples=200,
                                threads=1, progress=False)["mmd"].value

    alone = mmd(GlobalDrawer())
    inside, resume = threading.Event(), threading.Event()

    def hand_over() -> None:  # the loop draws while the model is running
        inside.set()
        assert resume.wait(60)
        resume.clear()

    together: list[float] = []
    evaluations = threading.Thread(
        target=lambda: together.extend(mmd(GlobalDrawer(hand_over)) for _ in range(2)))
    torch.manual_seed(0)
    np.random.seed(0)
    drawn: list[tuple[float, float]] = []
    evaluations.start()
    while evaluations.is_alive():  # the training loop
        burst = 200 if inside.wait(0.005) else 1
        drawn += [(torch.rand(1, dtype=torch.float64).item(), np.random.rand())
                  for _ in range(burst)]
        if burst > 1:
            inside.clear()
            resume.set()
    evaluations.join()
    torch_draws, numpy_draws = [t for t, _ in drawn], [n for _, n in drawn]
    assert len(drawn) >= 400
    assert len(set(torch_draws)) == len(drawn) and len(set(numpy_draws)) == len(drawn)
    seeded = torch.Generator().manual_seed(0)
    assert torch_draws == [torch.rand(1, dtype=torch.float64, generator=seeded).item()
                           for _ in drawn]
    assert numpy_draws == list(np.random.RandomState(0).rand(len(drawn)))
    assert together == [alone, alone]


def _png_folder(root: Path, values: np.ndarray) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for c in ("a", "b"):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(6):
                Image.fromarray(values[i % len(values)]).save(folder / f"{i}.png")
    return root


def test_sixteen_bit_pngs_keep_their_grey_levels(tmp_path):
    """17 grey levels stored in 16 bits (v * 4095.9 ...) become 17 distinct 8-bit levels,
    round(v / 257); PIL's own conversion clipped them to 2 values."""
    from gmbench.datasets import get_dataset
    from gmbench.errors import DatasetError

    levels = np.round(np.linspace(0, 65535, 17)).astype(np.uint16)
    img = np.resize(levels, (8, 8)).astype(np.uint16)
    root = _png_folder(tmp_path / "sixteen", np.stack([img, img[::-1]]))
    data = get_dataset(str(root))
    assert len(np.unique(data.train.x)) == 17
    np.testing.assert_array_equal(np.unique(data.train.x), np.rint(levels / 257))
    fine = np.arange(64, dtype=np.uint16).reshape(8, 8) * 3 + 1000  # 64 values 3 apart
    bad = _png_folder(tmp_path / "fine", np.stack([fine, fine]))
    with pytest.raises(DatasetError, match="do not fit 256 levels"):
        get_dataset(str(bad))


def test_a_test_split_that_is_the_training_split_is_no_yardstick_for_copies(tmp_path):
    """600 exact copies of the training split read copy_rate 0 when the test split is the
    training split; the memorization checks say why they do not apply instead."""
    import gmbench
    from gmbench.metrics import get_metric

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (600, 1, 8, 8), dtype=np.uint8)
    same = tmp_path / "same.npz"
    np.savez(same, x_train=x, x_test=x)
    model = tmp_path / "replay.py"
    model.write_text("import numpy as np\n"
                     f"X = np.load({str(same)!r})['x_train']\n"
                     "class Replay:\n"
                     "    def sample(self, n):\n"
                     "        return X[np.arange(n) % len(X)]\n"
                     "model = Replay()\n")
    res = gmbench.evaluate(str(model), dataset=str(same), metrics=None, progress=False)
    for key in ("copy_rate", "nn_distance_ratio", "data_copying_ct"):
        assert key not in res.metrics
        assert "the test split is not held out: 600 of its 600 examples" in res.skipped[key]
    from gmbench.datasets import get_dataset

    assert get_metric("copy_rate").applies(get_dataset("digits")) is None


def test_degenerate_own_files_get_clear_errors(tmp_path, monkeypatch):
    """A one-example test split, a label of 10^9 (CAS would allocate terabytes), an .npz
    member whose header claims 10^12 values, and a decompression bomb among PNGs: each a
    DatasetError saying what to change, none a raw exception or an allocation."""
    import zipfile

    from PIL import Image

    import gmbench
    from gmbench.errors import DatasetError

    model = tmp_path / "gauss.py"
    model.write_text("import torch\nmodel = torch.distributions.MultivariateNormal("
                     "torch.zeros(2), torch.eye(2))\n")
    rng = np.random.default_rng(0)
    one = tmp_path / "one.npz"
    np.savez(one, x_train=rng.random((50, 2), dtype=np.float32),
             x_test=rng.random((1, 2), dtype=np.float32))
    with pytest.raises(DatasetError, match="The test split of one holds 1 example; gmbench "
                                           "needs at least 10"):
        gmbench.evaluate(str(model), dataset=str(one), metrics=["mmd"], progress=False)

    x = rng.integers(0, 256, (100, 8, 8), dtype=np.uint8)
    labels = tmp_path / "labels.npz"
    np.savez(labels, x_train=x, x_test=x[:50], y_train=np.r_[np.zeros(99, int), 10**9],
             y_test=np.zeros(50, int))
    with pytest.raises(DatasetError, match="makes 1000000001 classes for 100 examples"):
        gmbench.evaluate(str(model), dataset=str(labels), metrics=["cas"], progress=False)

    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    header = header + " " * (118 - len(header)) + "\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    huge = tmp_path / "huge.npz"
    with zipfile.ZipFile(huge, "w") as z:
        z.writestr("x_train.npy", npy)
        z.writestr("x_test.npy", npy)
    with pytest.raises(DatasetError, match="x_train.npy declares 8,000,000,000,000 bytes"):
        gmbench.evaluate(str(model), dataset=str(huge), metrics=["mmd"], progress=False)

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a bomb: over twice the limit
    for split in ("train", "test"):
        (tmp_path / "bomb" / split / "a").mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "bomb" / split / "a" / "0.png")
    Image.new("L", (100, 100)).save(tmp_path / "bomb" / "train" / "a" / "1.png")
    with pytest.raises(DatasetError, match="could be decompression bomb"):
        gmbench.evaluate(str(model), dataset=str(tmp_path / "bomb"), metrics=["fid"],
                         progress=False)


@pytest.mark.parametrize("close", ["sys.stderr.close()", "os.close(2)",
                                   "os.dup2(os.open(os.devnull, os.O_WRONLY), 2)"])
def test_a_model_that_closes_stderr_leaves_gmbench_its_messages(tmp_path, close):
    import subprocess
    import sys

    path = hooked_model(tmp_path, load=f"import os, sys; {close}")
    ok = subprocess.run([sys.executable, "-m", "gmbench", "evaluate", str(path), "--metrics",
                         "fid", "--out", str(tmp_path / "o")], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0 and "wrote" in ok.stderr, ok.stderr
    # an error found after load (the model has no encode/decode): still said on stderr
    bad = subprocess.run([sys.executable, "-m", "gmbench", "evaluate", str(path), "--metrics",
                          "reconstruction_error"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "needs encode_decode" in bad.stderr, bad.stderr
