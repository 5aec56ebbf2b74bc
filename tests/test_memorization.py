"""Memorization checks: reference values for the statistics, and the issue-5 acceptance
cases (train replay flagged, noisy train replay flagged, held-out replay not flagged) on
digits and a Fashion-MNIST subset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from gmbench.datasets import Dataset, Split, get_dataset
from gmbench.estimators import copying as mem
from gmbench.estimators.uncertainty import clopper_pearson
from gmbench.metrics import get_metric
from gmbench.models.model import Model, ModelSource
from gmbench.present.verdicts import memorization_line
from gmbench.run.evaluation import Evaluation
from gmbench.run.request import RunRequest

KEYS = ("nn_distance_ratio", "copy_rate", "data_copying_ct")


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- statistics
def meehan_z(q: np.ndarray, p: np.ndarray) -> float:
    """Meehan et al.'s reference Zu: scipy's U of (q, p), their continuity correction."""
    m, n = len(q), len(p)
    u = stats.mannwhitneyu(q, p, alternative="less").statistic
    return (u - (n * m / 2 - 0.5)) / math.sqrt(n * m * (n + m + 1) / 12)


@pytest.mark.parametrize("ties", [False, True])
def test_mann_whitney_z_matches_reference(ties):
    rng = np.random.default_rng(0)
    q, p = rng.normal(0.2, 1, 57), rng.normal(0, 1, 91)
    if ties:
        q, p = np.round(q, 1), np.round(p, 1)
    assert mem.mann_whitney_z(q, p) == pytest.approx(meehan_z(q, p), rel=1e-12)


def test_exact_copies_give_the_extreme_z():
    m, n = 40, 60
    z = mem.mann_whitney_z(np.zeros(m), np.ones(n))
    assert z == pytest.approx((0.5 - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12))


def test_data_copying_ct_is_the_test_mass_weighted_mean():
    rng = np.random.default_rng(1)
    k = 4
    q_cells, p_cells = rng.integers(0, k, 400), rng.integers(0, k, 300)
    p_cells[:5] = 3  # cell 3 gets test mass but (below) too few samples
    q_cells[q_cells == 3] = 0
    q_cells[:10] = 3
    q, p = rng.exponential(size=400), rng.exponential(size=300)
    res = mem.data_copying_ct(q, q_cells, p, p_cells, n_cells=k, min_cell_samples=20)
    assert res.dropped == 1 and not res.kept[3]
    z = np.array([meehan_z(q[q_cells == c], p[p_cells == c]) for c in range(3)])
    w = np.bincount(p_cells, minlength=k)[:3] / 300
    assert res.value == pytest.approx(w @ z / w.sum(), rel=1e-12)
    np.testing.assert_allclose(res.cell_z[:3], z, rtol=1e-12)


def test_copy_rate_calibration_and_clopper_pearson():
    rng = np.random.default_rng(2)
    test_dist = rng.gamma(5, size=5000)
    threshold = mem.copy_threshold(test_dist)
    assert (test_dist < threshold).mean() == pytest.approx(0.01, abs=0.001)
    samples = np.concatenate([np.zeros(30), rng.gamma(5, size=970)])
    est = mem.copy_rate(samples, threshold)
    k = int((samples < threshold).sum())
    assert est.value == k / 1000 and est.n == 1000
    assert (est.ci_low, est.ci_high) == pytest.approx(clopper_pearson(k, 1000))


def test_nn_distance_ratio_is_a_ratio_of_medians():
    rng = np.random.default_rng(3)
    s, t = rng.gamma(3, size=801), rng.gamma(3, size=600) * 2
    est = mem.nn_distance_ratio(s, t, rng=np.random.default_rng(0), n_boot=200)
    assert est.value == pytest.approx(np.median(s) / np.median(t))
    assert est.ci_low < est.value < est.ci_high
    again = mem.nn_distance_ratio(s, t, rng=np.random.default_rng(0), n_boot=200)
    assert again == est


def test_verdict_lines():
    from gmbench.storage.results import MetricRecord

    def rec(v, lo=None, hi=None):
        return MetricRecord.from_dict("m", {"value": v, "ci_low": v if lo is None else lo,
                                            "ci_high": v if hi is None else hi})

    flagged = memorization_line({"copy_rate": rec(0.9, 0.88), "data_copying_ct": rec(-20.0),
                           "nn_distance_ratio": rec(0.0), "nll": rec(180.0),
                           "generalization_gap": rec(170.0, 165.0, 175.0)})
    assert flagged.startswith("memorization: flagged (copy_rate 0.9")
    assert "generalization_gap 170 nats" in flagged
    fine = memorization_line({"copy_rate": rec(0.012, 0.008), "data_copying_ct": rec(0.3),
                        "nn_distance_ratio": rec(1.01)})
    assert fine.startswith("memorization: not flagged")
    assert memorization_line({"nll": rec(3.0)}) is None
    only_gap = memorization_line({"nll": rec(100.0), "generalization_gap": rec(0.5, -0.1, 1.1)})
    assert only_gap.startswith("memorization: not flagged") and "generalization_gap" in only_gap


# ----------------------------------------------------------------------------- replay models
class Replay:
    """Replays rows of ``pool`` in a seeded order, optionally with Gaussian noise of ``noise``
    levels (rounded, clipped)."""

    def __init__(self, pool: np.ndarray, levels: int, noise: float = 0.0, seed: int = 0):
        self.pool, self.levels, self.noise = pool.astype(np.int64), levels, noise
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(pool))
        self.cursor = 0

    def sample(self, n):
        idx = self.order[np.arange(self.cursor, self.cursor + n) % len(self.pool)]
        self.cursor += n
        x = self.pool[idx]
        if self.noise:
            x = np.clip(np.round(x + self.rng.normal(0, self.noise, x.shape)), 0,
                        self.levels - 1).astype(np.int64)
        return torch.as_tensor(x)


def run_metrics(obj, dataset: Dataset, n_samples: int, keys=KEYS) -> dict:
    source = ModelSource(Path("replay.py"), "replay", "0" * 64, None)
    model = Model(obj, source=source, info=dataset.info, device="cpu")
    ev = Evaluation(model, dataset, RunRequest(seed=0, n_samples=n_samples))
    return {k: get_metric(k).run(ev) for k in keys}


def assert_flagged(r: dict) -> None:
    assert r["copy_rate"].value > 0.5, r["copy_rate"]
    assert r["data_copying_ct"].value < -3, r["data_copying_ct"]
    assert r["nn_distance_ratio"].value < 0.5, r["nn_distance_ratio"]


def assert_not_flagged(r: dict) -> None:
    assert r["copy_rate"].value < 0.05, r["copy_rate"]
    assert 0.7 <= r["nn_distance_ratio"].value <= 1.4, r["nn_distance_ratio"]
    assert r["data_copying_ct"].value > -3, r["data_copying_ct"]


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return get_dataset("digits")


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_digits_train_replay_is_flagged(digits, noise):
    r = run_metrics(Replay(digits.train.x, 17, noise), digits, len(digits.test))
    assert_flagged(r)
    assert r["copy_rate"].details["test_copy_rate"] == pytest.approx(0.01, abs=0.01)
    assert r["data_copying_ct"].details["cells_dropped"] == 0


def test_digits_test_replay_is_not_flagged(digits):
    r = run_metrics(Replay(digits.test.x, 17), digits, len(digits.test))
    assert_not_flagged(r)


FMNIST_TRAIN, FMNIST_TEST, FMNIST_SAMPLES = 20_000, 2_000, 2_000


@pytest.fixture(scope="module")
def fmnist() -> tuple[Dataset, np.ndarray]:
    """A Fashion-MNIST subset (train 20k, test 2k) and held-out images (the other 8k test
    images, seen by neither split: what a perfectly generalizing model could draw)."""
    full = get_dataset("fashion-mnist")
    sub = Dataset(full.info, Split(full.train.x[:FMNIST_TRAIN], full.train.y[:FMNIST_TRAIN]),
                  Split(full.test.x[:FMNIST_TEST], full.test.y[:FMNIST_TEST]),
                  source=full.source, description="subset for tests")
    return sub, full.test.x[FMNIST_TEST:]


@pytest.mark.slow
@pytest.mark.parametrize("noise", [0.0, 4.0])
def test_fashion_mnist_train_replay_is_flagged(fmnist, noise):
    # Light noise: sigma = 4 of 255 levels. In the bundled classifier's feature space the
    # copy rate falls as noise grows (sigma 8: copy_rate 0.39, nn_distance_ratio 0.47, C_T
    # -11; pixel-space copy_rate still 1.0), so the headline flags exact and near-exact
    # copies, and C_T keeps flagging noisier ones.
    dataset, _ = fmnist
    r = run_metrics(Replay(dataset.train.x, 256, noise), dataset, FMNIST_SAMPLES)
    assert_flagged(r)


@pytest.mark.slow
def test_fashion_mnist_held_out_replay_is_not_flagged(fmnist):
    dataset, held_out = fmnist
    r = run_metrics(Replay(held_out, 256), dataset, FMNIST_SAMPLES)
    assert_not_flagged(r)
    ct = r["data_copying_ct"]
    assert ct.estimate.ci_low < ct.value < ct.estimate.ci_high


MEMORIZER = """
    import math
    import numpy as np
    import torch
    from gmbench.datasets import get_dataset
    DATASET = "digits"
    EPS = 1e-6

    class Memorizer:
        '''Replays training images; log_prob: the empirical training distribution mixed with
        EPS of the uniform distribution (a valid log-mass).'''

        def __init__(self):
            self.train = torch.as_tensor(get_dataset("digits").train.x.astype(np.int64))
            self.keys = {bytes(x.numpy().astype(np.uint8)) for x in self.train}
            self.counts = {}
            for x in self.train:
                k = bytes(x.numpy().astype(np.uint8))
                self.counts[k] = self.counts.get(k, 0) + 1

        def sample(self, n):
            return self.train[torch.randint(0, len(self.train), (n,))]

        def log_prob(self, x):
            n, uniform = len(self.train), -64 * math.log(17)
            out = []
            for row in x:
                c = self.counts.get(bytes(row.numpy().astype(np.uint8)), 0)
                out.append(math.log((1 - EPS) * c / n + EPS * math.exp(uniform)))
            return torch.tensor(out, dtype=torch.float64)

    model = Memorizer()
"""


def test_cli_shows_the_flag_beside_the_generalization_gap(write_model, gmbench_cli):
    run = gmbench_cli("evaluate", write_model(MEMORIZER), "--metrics",
                      "nll,nll_train,generalization_gap,nn_distance_ratio,copy_rate,"
                      "data_copying_ct")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("memorization:"))
    line = " ".join([lines[at], *(ln.strip() for ln in lines[at + 1:]
                                  if ln.startswith("  "))][:3])  # wrapped at 120 columns
    assert line.startswith("memorization: flagged")
    assert "copy_rate" in line and "generalization_gap" in line
    m = run.results["metrics"]
    assert m["generalization_gap"]["value"] > 100
    assert m["copy_rate"]["value"] == 1.0
    assert (run.dir / "neighbours.png").is_file()
