"""The listing commands and the output files of `gmbench evaluate`."""

from __future__ import annotations

import csv
import math

from gmbench.metrics import METRICS


def test_datasets_lists_every_family(gmbench_cli):
    run = gmbench_cli("datasets")
    assert run.code == 0
    for name in ("toy2d-gmm8", "toy2d-checkerboard", "toy2d-banana", "gauss-<d>", "markov-<v>",
                 "digits", "fashion-mnist", "mnist"):
        assert name in run.out


def test_metrics_lists_needs_and_direction(gmbench_cli):
    run = gmbench_cli("metrics")
    assert run.code == 0
    lines = {line.split()[1]: line for line in run.out.splitlines()}
    assert set(METRICS) <= set(lines)
    assert lines["nll"].startswith("↓") and "needs log_prob" in lines["nll"]


def test_results_files_agree(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "markov-4"
        class Uniform:
            def sample(self, n):
                return torch.randint(0, 4, (n, 64))
            def log_prob(self, x):
                return torch.full((len(x),), -64 * torch.log(torch.tensor(4.0)).item(),
                                  dtype=torch.float64)
        model = Uniform()
    """)
    run = gmbench_cli("evaluate", path, "--seed", "3")
    assert run.code == 0, run.err
    res = run.results
    assert res["schema_version"] == 2 and res["seed"] == 3
    assert res["dataset"]["name"] == "markov-4" and len(res["dataset"]["sha256"]) == 64
    assert set(res["provenance"]) >= {"gmbench_version", "torch_version", "python", "platform",
                                      "device", "started", "duration_s"}
    rows = list(csv.DictReader((run.dir / "results.csv").open()))
    assert {r["metric"] for r in rows} == set(res["metrics"])
    for row in rows:
        value = res["metrics"][row["metric"]]["value"]
        if value is None:  # not estimable: an empty cell
            assert row["value"] == ""
            continue
        assert math.isclose(float(row["value"]), value, rel_tol=1e-12)
    assert "perplexity" in run.out and "↓" in run.out
    assert not list(run.dir.glob(".*.tmp"))  # no temporary files left behind


def test_results_csv_neutralises_formula_names(write_model, gmbench_cli):
    path = write_model("""
        import torch
        NAME = '=HYPERLINK("http://x","y")'
        DATASET = "gauss-1"
        model = torch.distributions.MultivariateNormal(torch.zeros(1), torch.eye(1))
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "nll")
    row = next(csv.DictReader((run.dir / "results.csv").open()))
    assert row["model"] == "'" + '=HYPERLINK("http://x","y")'
    assert run.results["model"]["name"] == '=HYPERLINK("http://x","y")'  # JSON keeps the truth
    assert run.results["metrics"]["nll"]["feature_space"] == "data"


def test_results_csv_neutralises_a_dataset_named_after_a_formula(write_model, gmbench_cli,
                                                                  tmp_path):
    """Every text cell of results.csv, not only the model's name: a dataset file called
    ``=HYPERLINK(...).npz``."""
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / '=HYPERLINK("http:x","y").npz'
    np.savez(data, x_train=rng.normal(size=(200, 2)).astype(np.float32),
             x_test=rng.normal(size=(100, 2)).astype(np.float32))
    path = write_model("""
        import torch
        model = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    """)
    run = gmbench_cli("evaluate", path, "--dataset", data, "--metrics", "nll")
    assert run.code == 0, run.err
    row = next(csv.DictReader((run.dir / "results.csv").open()))
    assert row["dataset"] == "'" + run.results["dataset"]["name"]
    assert run.results["dataset"]["name"].startswith("=HYPERLINK")


COUNTING = """
    import torch
    DATASET = "markov-4"
    SEEN = []
    class Uniform:
        def sample(self, n):
            SEEN.append(torch.get_num_threads())
            (__import__("pathlib").Path(__file__).parent / "sampled").write_text(str(SEEN))
            return torch.randint(0, 4, (n, 64))
        def log_prob(self, x):
            return torch.full((len(x),), -64 * torch.log(torch.tensor(4.0)).item(),
                              dtype=torch.float64)
    model = Uniform()
"""


def test_out_conflicts_are_found_before_the_evaluation(write_model, gmbench_cli, tmp_path):
    path = write_model(COUNTING)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--out", busy)
    assert run.code == 2 and "notes.txt" in run.err
    assert not (path.parent / "sampled").exists()  # refused before the model was asked


def test_a_file_named_like_the_default_folder_is_found_before_the_evaluation(
        write_model, tmp_path, monkeypatch, capsys):
    from cli_errors import assert_clear_error

    from gmbench.cli import main

    path = write_model(COUNTING)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gmbench-out").write_text("oops")
    capsys.readouterr()
    code = main(["evaluate", str(path), "--metrics", "nll,mmd", "--quiet"])
    captured = capsys.readouterr()
    assert_clear_error(type("Run", (), {"code": code, "out": captured.out,
                                        "err": captured.err})(), "gmbench-out is a file")
    assert not (path.parent / "sampled").exists()  # refused before the model was asked
    assert (tmp_path / "gmbench-out").read_text() == "oops"


def test_a_subset_run_never_replaces_a_fuller_run(write_model, gmbench_cli, tmp_path,
                                                  monkeypatch):
    path = write_model(COUNTING)
    full = gmbench_cli("evaluate", path, "--metrics", "nll,mmd", "--out", tmp_path / "r")
    assert full.code == 0, full.err
    subset = gmbench_cli("evaluate", path, "--metrics", "nll", "--out", tmp_path / "r")
    assert subset.code == 2 and "mmd" in subset.err and "--overwrite" in subset.err
    import json

    def held() -> set[str]:
        return set(json.loads((tmp_path / "r" / "results.json").read_text())["metrics"])

    assert held() == {"nll", "mmd"}  # still there, untouched
    forced = gmbench_cli("evaluate", path, "--metrics", "nll", "--out", tmp_path / "r",
                         "--overwrite")
    assert forced.code == 0 and held() == {"nll"}
    # the default folder: the subset run goes beside the fuller one, and says so
    monkeypatch.chdir(tmp_path)
    from gmbench.cli import main

    assert main(["evaluate", str(path), "--metrics", "nll,mmd", "--quiet"]) == 0
    assert main(["evaluate", str(path), "--metrics", "nll", "--quiet"]) == 0
    first = json.loads((tmp_path / "gmbench-out" / f"{path.stem}-markov-4" / "results.json")
                       .read_text())
    second = json.loads((tmp_path / "gmbench-out" / f"{path.stem}-markov-4-2" / "results.json")
                        .read_text())
    assert set(first["metrics"]) == {"nll", "mmd"} and set(second["metrics"]) == {"nll"}


def test_threads_sets_the_whole_budget_and_leaves_values_alone(write_model, gmbench_cli):
    import torch

    path = write_model(COUNTING)
    before = torch.get_num_threads()
    one = gmbench_cli("evaluate", path, "--metrics", "mmd,nll", "--threads", "1")
    assert one.code == 0, one.err
    assert set(eval((path.parent / "sampled").read_text())) == {1}
    assert torch.get_num_threads() == before  # restored
    two = gmbench_cli("evaluate", path, "--metrics", "mmd,nll", "--threads", "2")
    assert set(eval((path.parent / "sampled").read_text())) == {2}
    for key in ("mmd", "nll"):
        assert math.isclose(one.metric(key)["value"], two.metric(key)["value"], rel_tol=1e-6)
    bad = gmbench_cli("evaluate", path, "--threads", "0")
    assert bad.code == 2 and "threads" in bad.err
