"""Shared fixtures: writing model files into a temporary directory and running the CLI."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gmbench.cli import main


def pytest_configure(config):
    """Under pytest-xdist (``-n 2``, as `.ci/run` runs the suite) each worker gets one torch
    thread: the workers already use the cores, and more threads would oversubscribe them."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def private_caches(tmp_path_factory):
    """The suite never writes into the user's own caches (features, neighbour lists and CAS
    references go to a temporary folder for the whole session) and never downloads."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    mp.setenv("GMBENCH_OFFLINE", "1")  # no test reaches for the network
    yield
    mp.undo()


@dataclass
class CliRun:
    code: int
    out: str
    err: str
    dir: Path

    @property
    def results(self) -> dict:
        return json.loads((self.dir / "results.json").read_text())

    def metric(self, key: str) -> dict:
        return self.results["metrics"][key]


@pytest.fixture
def write_model(tmp_path: Path) -> Callable[..., Path]:
    """Write ``source`` (dedented) as a model file and return its path."""
    counter = iter(range(1000))

    def write(source: str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"model_{next(counter)}.py")
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def gmbench_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """Run ``gmbench`` in-process; ``evaluate`` gets a fresh ``--out`` directory."""
    counter = iter(range(1000))

    def run(*args: str | Path) -> CliRun:
        argv = [str(a) for a in args]
        out_dir = tmp_path / f"out_{next(counter)}"
        if argv and argv[0] == "evaluate" and "--out" not in argv:
            argv += ["--out", str(out_dir)]
        capsys.readouterr()
        code = main(argv)
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err, out_dir)

    return run


@pytest.fixture(scope="session")
def fashion_mnist():
    """The Fashion-MNIST dataset, or a skip saying how to get it."""
    from gmbench.datasets import get_dataset
    from gmbench.errors import DatasetError

    try:
        return get_dataset("fashion-mnist")
    except DatasetError as exc:
        pytest.skip(f"Fashion-MNIST not available ({exc}); `apt-get install "
                    "dataset-fashion-mnist` provides it (CI installs it)")


@pytest.fixture(scope="module")
def one_thread():
    """Small torch models train far faster on one thread on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory) -> Path:
    """A randomly initialised InceptionV3 state dict in torch-fidelity's format (the real
    weights cannot be downloaded here; this tests the plumbing, not the numbers)."""
    import torch
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    from gmbench.features.extractors import INCEPTION_WEIGHTS_FILE

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    try:
        torch.manual_seed(0)
        module = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        mp.undo()
    path = tmp_path_factory.mktemp("inception") / INCEPTION_WEIGHTS_FILE
    torch.save(module.state_dict(), path)
    return path


@pytest.fixture
def points_and_gauss(tmp_path: Path) -> Callable[[float], tuple[Path, Path]]:
    """``make(shift)`` writes ``pts.npz`` (300 seeded 2-D normal points, 200/100, shifted
    by ``shift``) and ``gauss.py`` (a standard normal model file) into ``tmp_path``."""
    def make(shift: float = 0.0) -> tuple[Path, Path]:
        import numpy as np

        own = tmp_path / "pts.npz"
        x = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32) + shift
        np.savez(own, x_train=x[:200], x_test=x[200:])
        model = tmp_path / "gauss.py"
        model.write_text("import torch\nmodel = torch.distributions.MultivariateNormal("
                         "torch.zeros(2), torch.eye(2))\n")
        return own, model

    return make
