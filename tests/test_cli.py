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
