"""The public Python API: ``gmbench.evaluate`` on in-memory objects, typed ``Results``, saving,
the regression gate from Python (``Results.check``, ``gmbench.testing``), listings, and the
command line's machine-readable and quiet output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import gmbench
from gmbench.datasets import get_dataset
from gmbench.errors import DatasetError, MetricError
from gmbench.testing import assert_no_regression

DATASET = "toy2d-gmm8"
KEYS = ["kl_exact", "nll", "mmd", "tv_exact", "kl_knn"]


class Truth:
    """Exact draws from the dataset's own distribution, optionally shifted (a regression)."""

    NAME = "truth"

    def __init__(self, shift: float = 0.0) -> None:
        self.truth = get_dataset(DATASET).truth
        self.shift = shift

    def sample(self, n: int) -> torch.Tensor:
        rng = np.random.default_rng(int(torch.randint(0, 2**31, ())))  # seeded by gmbench
        return torch.as_tensor(self.truth.sample(n, rng) + self.shift)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.truth.log_prob(x.numpy() - self.shift))


@pytest.fixture(scope="module")
def results() -> gmbench.Results:
    return gmbench.evaluate(Truth(), dataset=DATASET, metrics=KEYS, seed=1, n_samples=2000,
                            progress=False)


def test_records_are_typed_and_match_the_document(results):
    assert list(results) == KEYS and len(results) == 5
    nll = results["nll"]
    assert isinstance(nll, gmbench.MetricRecord)
    doc = results.to_dict()["metrics"]["nll"]
    assert (nll.value, nll.stderr, nll.ci_low, nll.ci_high, nll.n, nll.unit) == (
        doc["value"], doc["stderr"], doc["ci_low"], doc["ci_high"], doc["n"], doc["unit"])
    assert nll.higher_is_better is False and nll.protocol == 2 and nll.kind == "exact"
    # the truth scores KL = 0 within the interval, and its nll is the dataset's entropy
    kl = results["kl_exact"]
    assert kl.ci_low <= 0 <= kl.ci_high
    x = get_dataset(DATASET).test.x
    assert nll.value == pytest.approx(float(-Truth().log_prob(torch.as_tensor(x)).mean()),
                                      rel=1e-12)
    with pytest.raises(MetricError, match="Did you mean 'mmd'"):
        results["mmdd"]


def test_to_dict_is_the_saved_results_json(results, tmp_path):
    out = results.save(tmp_path / "run")
    assert json.loads((out / "results.json").read_text()) == results.to_dict()
    assert sorted(p.name for p in out.iterdir()) == ["per_example.npz", "results.csv",
                                                     "results.json", "samples.png"]
    assert results.to_dict()["schema_version"] == 2
    doc = results.to_dict()
    doc["metrics"]["nll"]["value"] = 0.0  # a copy: the results are not changed
    assert results["nll"].value != 0.0


def test_to_frame_is_long_format(results):
    frame = results.to_frame()
    assert list(frame["metric"]) == KEYS
    row = frame.set_index("metric").loc["mmd"]
    rec = results["mmd"]
    assert math.isclose(row["value"], rec.value) and math.isclose(row["ci_low"], rec.ci_low)
    assert row["model"] == "truth" and row["dataset"] == DATASET and row["seed"] == 1
    assert row["details"] == dict(rec.details)


def test_check_and_assert_no_regression(results, tmp_path):
    from gmbench.storage.leaderboard import add_results

    saved = results.save(tmp_path / "ref")
    board = tmp_path / "board.csv"
    add_results(board, [saved / "results.json"])

    again = gmbench.evaluate(Truth(), dataset=DATASET, metrics=KEYS, seed=2, n_samples=2000,
                             progress=False)
    report = again.check(board)
    assert report.exit_code == 0 and not report.regressions
    assert {v.metric for v in report.verdicts} == set(KEYS)
    assert_no_regression(again, board=board)

    worse = gmbench.evaluate(Truth(shift=0.3), dataset=DATASET, metrics=KEYS, seed=2,
                             n_samples=2000, progress=False, name="truth")
    report = worse.check(board)
    assert report.exit_code == 1
    assert {"kl_exact", "nll", "mmd"} <= {v.metric for v in report.regressions}
    with pytest.raises(AssertionError, match=r"regression\(s\) \(.*kl_exact.*\) against "
                                             r"'truth'") as info:
        assert_no_regression(worse, board=board)
    assert "tv_exact" in str(info.value)  # the whole verdict table, not only the failures
    # an accepted worsening larger than the shift's damage lets it through
    assert_no_regression(worse, board=board, tolerances={"*": 5.0})


def test_in_memory_objects_of_every_kind():
    """A Distribution, an nn.Module and a plain object; the object's NAME names the run."""
    dist = torch.distributions.MultivariateNormal(torch.zeros(2), 4 * torch.eye(2))

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(2.0))

        def sample(self, n: int) -> torch.Tensor:
            return self.scale * torch.randn(n, 2)

        def log_prob(self, x: torch.Tensor) -> torch.Tensor:
            return dist.log_prob(x)

    a = gmbench.evaluate(dist, dataset=DATASET, metrics=["nll", "mmd"], n_samples=500,
                         progress=False)
    b = gmbench.evaluate(Module(), dataset=DATASET, metrics=["nll", "mmd"], n_samples=500,
                         progress=False)
    assert a["nll"].value == b["nll"].value  # the same log_prob
    assert a.document["model"]["name"] == "MultivariateNormal"
    assert b.document["model"]["weights_sha256"] is not None  # the module's parameters
    assert gmbench.evaluate(Truth(), dataset=DATASET, metrics=["nll"],
                                          progress=False).document["model"]["name"] == Truth.NAME


def test_bad_arguments_raise_gmbench_errors():
    with pytest.raises(DatasetError, match="Did you mean 'toy2d-gmm8'"):
        gmbench.evaluate(Truth(), dataset="toy2d-gmm9")
    with pytest.raises(MetricError, match="Did you mean 'fid'"):
        gmbench.evaluate(Truth(), dataset=DATASET, metrics=["fidd"])
    with pytest.raises(gmbench.GmbenchError, match="device"):
        gmbench.evaluate(Truth(), dataset=DATASET, device="tpu")


def test_listings():
    keys = [m.key for m in gmbench.list_metrics()]
    assert keys[0] == "nll" and "fid" in keys and len(keys) == len(set(keys))
    assert "digits" in [s.name for s in gmbench.list_datasets()]
    assert {"memorizer", "vae", "flow"} <= set(gmbench.list_baselines("digits"))


def test_load_model_reads_a_model_file(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import torch\nDATASET = 'toy2d-gmm8'\nNAME = 'origin'\n"
                    "class M:\n    def sample(self, n):\n        return torch.zeros(n, 2)\n"
                    "model = M()\n")
    model = gmbench.load_model(path)
    assert model.source.name == "origin" and model.info.name == DATASET
    assert model.sample(3, seed=0).tolist() == [[0.0, 0.0]] * 3


# ---------------------------------------------------------------- the command line's output
MODEL = """
    import torch
    DATASET = "toy2d-gmm8"
    class M:
        def sample(self, n):
            return torch.randn(n, 2) * 2
        def log_prob(self, x):
            return torch.distributions.Normal(0.0, 2.0).log_prob(x).sum(-1)
    model = M()
"""


def test_json_prints_only_the_document_and_writes_nothing(write_model, tmp_path, monkeypatch,
                                                          capsys):
    from gmbench.cli import main

    path = write_model(MODEL)
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", str(path), "--metrics", "nll,mmd", "--n-samples", "200", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)  # stdout is exactly one JSON document
    assert set(doc["metrics"]) == {"nll", "mmd"} and doc["schema_version"] == 2
    assert not (tmp_path / "gmbench-out").exists()
    # with --out the same document is also written
    code = main(["evaluate", str(path), "--metrics", "nll,mmd", "--n-samples", "200", "--json",
                 "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert json.loads(captured.out) == json.loads((tmp_path / "o" / "results.json").read_text())


def test_quiet_shows_no_progress(write_model, gmbench_cli, monkeypatch):
    """Bars are drawn through ``gmbench.core.progress.tqdm``; --quiet never creates one."""
    import gmbench.core.progress as progress_module

    made: list[str] = []

    def fake_tqdm(items, **kwargs):
        made.append(kwargs.get("desc", ""))
        return iter(items)

    monkeypatch.setattr(progress_module, "tqdm", fake_tqdm)
    path = write_model(MODEL)
    args = ("evaluate", path, "--metrics", "nll", "--batch-size", "1000")  # 10 batches
    assert gmbench_cli(*args).code == 0
    assert made  # bars were drawn without --quiet
    made.clear()
    assert gmbench_cli(*args, "--quiet").code == 0
    assert made == []


def test_default_table_fits_120_columns_and_wide_shows_every_baseline(write_model, gmbench_cli):
    path = write_model(MODEL.replace("toy2d-gmm8", "digits").replace(
        "torch.randn(n, 2) * 2", "torch.rand(n, 1, 8, 8)").replace(
        "torch.distributions.Normal(0.0, 2.0).log_prob(x).sum(-1)",
        "torch.full((len(x),), -64 * torch.log(torch.tensor(17.0)).item())"))
    keys = "nll,bits_per_dim,fid,precision,recall,density,coverage,nn_distance_ratio"
    run = gmbench_cli("evaluate", path, "--metrics", keys, "--n-samples", "300", "--quiet")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert "best baseline" in run.out
    wide = gmbench_cli("evaluate", path, "--metrics", keys, "--n-samples", "300", "--quiet",
                       "--wide")
    for family in gmbench.list_baselines("digits"):
        assert family in wide.out
    assert max(len(line) for line in wide.out.splitlines()) > 120
