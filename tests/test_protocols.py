"""Numbers that stay comparable (issue 11): files of gmbench 0.1 still read, changed meanings
carry new protocol versions, a model's identity follows its weights, results do not depend on
--batch-size, and target-valued metrics are ranked by their distance from the ideal."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gmbench.datasets import get_dataset
from gmbench.metrics import METRICS
from gmbench.models.identity import weights_identity
from gmbench.present.compare import compare_with_baselines
from gmbench.storage.leaderboard import COLUMNS, COLUMNS_V1, read_board, rows_from_results
from gmbench.storage.results import read_results

ROOT = Path(__file__).resolve().parent.parent
V01 = Path(__file__).resolve().parent / "data" / "v0.1"


# ------------------------------------------------------------------ files of gmbench 0.1
def test_a_v01_results_file_reads_as_schema_2_with_protocol_1():
    data = read_results(V01 / "minimal-digits-results.json")
    assert data["schema_version"] == 2
    assert data["model"]["weights_sha256"] is None
    assert {rec["protocol"] for rec in data["metrics"].values()} == {1}
    # 0.1 called nn_distance_ratio higher-is-better: the file keeps its own direction
    assert data["metrics"]["nn_distance_ratio"]["higher_is_better"] is True
    assert data["metrics"]["nn_distance_ratio"]["ideal"] is None


def test_a_v01_board_reads_and_is_upgraded_once_on_write(tmp_path, gmbench_cli):
    board = tmp_path / "digits.csv"
    shutil.copyfile(V01 / "digits-board.csv", board)
    assert board.read_text().splitlines()[0] == ",".join(COLUMNS_V1)
    old = read_board(board)
    assert old and {r.protocol for r in old} == {1} and {r.weights_sha256 for r in old} == {""}
    run = gmbench_cli("leaderboard", "add", V01 / "minimal-digits-results.json",
                      "--board", board)
    assert run.code == 0, run.err
    assert "upgraded" in run.out
    assert board.read_text().splitlines()[0] == ",".join(COLUMNS)
    new = read_board(board)
    assert len(new) == len(old) + 5
    assert {r.identity for r in old} <= {r.identity for r in new}  # no row lost or changed
    again = gmbench_cli("leaderboard", "add", V01 / "minimal-digits-results.json",
                        "--board", board)
    assert "upgraded" not in again.out and "added 0 row(s)" in again.out
    # a 0.1 results file checks against its own 0.1 rows: same protocol, so comparable
    check = gmbench_cli("check", V01 / "minimal-digits-results.json", "--against", board,
                        "--model", "minimal_model")
    assert check.code == 0, check.out + check.err


def test_check_refuses_to_compare_across_protocol_versions(tmp_path, gmbench_cli):
    """A 0.2 evaluation against a 0.1 reference: nn_distance_ratio changed meaning
    (protocol 2), so the check stops with exit 2 and says to re-record."""
    board = tmp_path / "board.csv"
    shutil.copyfile(V01 / "digits-board.csv", board)
    assert gmbench_cli("leaderboard", "add", V01 / "minimal-digits-results.json",
                       "--board", board).code == 0
    run = gmbench_cli("evaluate", ROOT / "examples" / "minimal_model.py", "--metrics",
                      "nll,copy_rate,nn_distance_ratio", "--n-samples", "360")
    assert run.code == 0, run.err
    assert run.metric("nn_distance_ratio")["protocol"] == 2
    assert run.metric("copy_rate")["protocol"] == 2  # its ideal is the data's rate since 0.3
    check = gmbench_cli("check", run.dir / "results.json", "--against", board, "--model",
                        "minimal_model")
    assert check.code == 2
    assert "nn_distance_ratio: board protocol 1, now 2" in check.err
    assert "copy_rate: board protocol 1, now 2" in check.err
    assert "Re-record the reference" in check.err and "Traceback" not in check.err


def test_every_metric_declares_a_protocol_and_target_metrics_a_lower_is_better_direction():
    for metric in METRICS.values():
        assert metric.protocol >= 1
        if metric.ideal is not None:
            assert not metric.higher_is_better
    assert {k for k, m in METRICS.items() if m.ideal is not None} >= {
        "nn_distance_ratio", "data_copying_ct", "c2st_accuracy", "density"}


# ------------------------------------------------------------------ weights identity
def _flow_model(tensors: dict, config: dict) -> torch.nn.Module:
    from gmbench_baselines.flow_mlp import CouplingFlow

    info = get_dataset("digits").info
    model = CouplingFlow(shape=info.shape, hidden=config["hidden"], layers=config["layers"],
                         alpha=config["alpha"], seed=config["seed"])
    model.load_state_dict(tensors)
    return model


@pytest.mark.slow
def test_weights_identity_follows_the_parameters(one_thread):
    """Retraining a baseline for one more epoch changes its weights identity; loading the
    same weights again does not."""
    from gmbench_baselines.flow_mlp import fit
    from gmbench_baselines.weights import load_weights

    where = ROOT / "baselines" / "flow_mlp.py"
    digits = get_dataset("digits")
    short = fit(digits, seed=0, epochs=2, device="cpu")
    longer = fit(digits, seed=0, epochs=3, device="cpu")
    a = weights_identity(_flow_model(short.tensors, short.config), model_file=where)
    b = weights_identity(_flow_model(longer.tensors, longer.config), model_file=where)
    assert a is not None and b is not None and a.source == "state_dict"
    assert a.sha256 != b.sha256
    bundled = [weights_identity(_flow_model(*load_weights("flow_mlp", "digits")), model_file=where)
               for _ in range(2)]
    assert bundled[0] == bundled[1] and bundled[0].sha256 not in (a.sha256, b.sha256)


def test_weights_identity_of_files_attributes_and_parameter_free_models(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"\x00" * 16)

    class Declared:
        weights_files = ["w.bin"]

    model_file = tmp_path / "model.py"
    first = weights_identity(Declared(), model_file=model_file)
    assert first is not None and first.source == "files" and first.files == ("w.bin",)
    weights.write_bytes(b"\x01" + b"\x00" * 15)
    assert weights_identity(Declared(), model_file=model_file).sha256 != first.sha256
    mvn = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    shifted = torch.distributions.MultivariateNormal(torch.ones(2), torch.eye(2))
    ident = weights_identity(mvn, model_file=model_file)
    assert ident is not None and ident.source == "attributes"
    assert ident != weights_identity(shifted, model_file=model_file)

    class Empty:
        def sample(self, n):
            return torch.zeros(n, 2)

    assert weights_identity(Empty(), model_file=model_file) is None


CHECKPOINT_MODEL = """
    import torch
    DATASET = "digits"
    class Categorical(torch.nn.Module):
        def __init__(self, bias):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.zeros(64, 17) + bias)
        def sample(self, n):
            idx = torch.multinomial(self.logits.softmax(-1), n, replacement=True)
            return idx.T.reshape(n, 1, 8, 8)
        def log_prob(self, x):
            lp = self.logits.log_softmax(-1)
            return lp.gather(1, x.reshape(len(x), -1).T).sum(0).double()
    def load(dataset, device):
        model = Categorical(0.0)
        with torch.no_grad():
            model.logits[0, 0] += {bump}
        return model
"""


def test_a_retrained_checkpoint_is_another_model_on_the_board(write_model, gmbench_cli,
                                                              tmp_path):
    board = tmp_path / "b.csv"
    same_file = write_model(CHECKPOINT_MODEL.format(bump=0.0), name="ckpt.py")
    ref = gmbench_cli("evaluate", same_file, "--metrics", "nll,bits_per_dim")
    again = gmbench_cli("evaluate", same_file, "--metrics", "nll,bits_per_dim")
    assert ref.results["model"]["weights_sha256"] == again.results["model"]["weights_sha256"]
    assert ref.results["model"]["weights_source"] == "state_dict"
    assert gmbench_cli("leaderboard", "add", ref.dir / "results.json", "--board",
                       board).code == 0
    retrained = write_model(CHECKPOINT_MODEL.format(bump=0.5), name="ckpt.py")
    new = gmbench_cli("evaluate", retrained, "--metrics", "nll,bits_per_dim")
    assert new.results["model"]["weights_sha256"] != ref.results["model"]["weights_sha256"]
    added = gmbench_cli("leaderboard", "add", new.dir / "results.json", "--board", board)
    assert "added 2 row(s)" in added.out  # a new identity, not a conflict
    check = gmbench_cli("check", new.dir / "results.json", "--against", board, "--model",
                        "ckpt")
    assert "the reference was another checkpoint" not in check.out  # its own rows exist now
    only_ref = tmp_path / "only-ref.csv"
    gmbench_cli("leaderboard", "add", ref.dir / "results.json", "--board", only_ref)
    check = gmbench_cli("check", new.dir / "results.json", "--against", only_ref, "--model",
                        "ckpt")
    assert "warning: the reference was another checkpoint" in check.out


# ------------------------------------------------------------------ batch independence
@pytest.mark.slow
def test_flow_baseline_metrics_do_not_depend_on_batch_size(gmbench_cli):
    """Issue 11: same seed, --batch-size 37 vs 500, flow baseline on digits: every metric
    equal within 1e-6 relative (count-based metrics within one example)."""
    runs = [gmbench_cli("evaluate", ROOT / "baselines" / "flow.py", "--dataset", "digits",
                        "--seed", "3", "--batch-size", b) for b in ("37", "500")]
    assert all(r.code == 0 for r in runs), [r.err for r in runs]
    a, b = (r.results["metrics"] for r in runs)
    assert set(a) == set(b)
    for key in a:
        x, y = a[key]["value"], b[key]["value"]
        if x is None or y is None:
            assert x is y, key
            continue
        assert x == pytest.approx(y, rel=1e-6, abs=1.5 / a[key]["n"]), key


RANDOM_IN_BOTH = """
    import math
    import torch
    DATASET = "digits"
    class Wedge:
        # density 2f on each cell (f: position inside the cell), so its value depends on the
        # dequantization noise; sample and log_prob both draw from the global RNG
        log_prob_space = "dequantized"
        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))
        def log_prob(self, y):
            torch.rand(len(y))  # the model's own randomness, not in the value
            f = (y * 17).frac().clamp_min(1e-12).reshape(len(y), -1)
            return (torch.log(2 * f) + math.log(17)).sum(1).double()
    model = Wedge()
"""


def test_gmbench_randomness_is_keyed_on_the_example_not_the_batch(write_model, gmbench_cli):
    path = write_model(RANDOM_IN_BOTH)
    runs = [gmbench_cli("evaluate", path, "--metrics", "nll,nll_train,precision,mmd",
                        "--seed", "4", "--batch-size", b, "--dequant-samples", "3")
            for b in ("7", "100", "1000")]
    assert all(r.code == 0 for r in runs), [r.err for r in runs]
    values = [{k: v["value"] for k, v in r.results["metrics"].items()} for r in runs]
    for other in values[1:]:
        for key, value in values[0].items():
            assert other[key] == pytest.approx(value, rel=1e-9), key
    # the dequantization noise is gmbench's, keyed by the example and not by the seed: another
    # seed scores every example alike (common random numbers), but draws other samples
    moved = gmbench_cli("evaluate", path, "--metrics", "nll,mmd", "--seed", "5")
    assert moved.metric("nll")["value"] == values[0]["nll"]
    assert moved.metric("mmd")["value"] != values[0]["mmd"]


# ------------------------------------------------------------------ target-valued ranking
NOISE = """
    import torch
    DATASET = "digits"
    class Noise:
        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))
    model = Noise()
"""


def test_uniform_noise_does_not_rank_first_on_the_memorization_metrics(write_model,
                                                                       gmbench_cli):
    """Issue 11: underfitting is not better: on digits, uniform noise is far from the ideal
    of nn_distance_ratio (1) and data_copying_ct (0), so it ranks below the baselines."""
    run = gmbench_cli("evaluate", write_model(NOISE), "--metrics",
                      "nn_distance_ratio,data_copying_ct")
    assert run.code == 0, run.err
    baselines = read_board(ROOT / "leaderboards" / "digits.csv")
    _, comparisons = compare_with_baselines(run.results, baselines)
    for comp in comparisons:
        assert comp.rank is not None and comp.rank > 1, (comp.metric, comp.rank, comp.ranked)
        assert comp.record.ideal is not None
    assert "◎" in run.out


def test_the_digits_board_is_recorded_with_the_current_protocols():
    rows = read_board(ROOT / "leaderboards" / "digits.csv")
    for row in rows:
        metric = METRICS[row.metric]
        assert row.protocol == metric.protocol, row.metric
        assert row.ideal == metric.ideal, row.metric
        assert row.weights_sha256 or row.model in ("truth",), row.model


def test_board_rows_of_a_results_file_carry_protocol_ideal_and_weights():
    data = read_results(V01 / "minimal-digits-results.json")
    rows = rows_from_results(data)
    assert all(r.protocol == 1 and r.weights_sha256 == "" for r in rows)
    assert math.isfinite(rows[0].value)
    assert json.loads(json.dumps(data))["schema_version"] == 2
    assert np.isfinite([r.value for r in rows if r.value is not None]).all()


# ------------------------------------------------------------------ files of gmbench 0.2
V02 = Path(__file__).resolve().parent / "data" / "v0.2"


def test_a_v02_board_reads_judges_unpaired_and_is_upgraded_on_write(tmp_path, gmbench_cli):
    """The digits board as gmbench 0.2 wrote it (23 columns: no stderr_runs, df_runs,
    per-example values or platform): it reads, a check against it falls back to the
    unpaired test and never expects reproduction, and the next write upgrades it."""
    board = tmp_path / "digits.csv"
    shutil.copyfile(V02 / "digits-board.csv", board)
    assert board.read_text().splitlines()[0] == ",".join(COLUMNS[:-5])
    old = read_board(board)
    assert old and {(r.stderr_runs, r.per_example_sha256, r.platform) for r in old} == {
        (None, "", "")}
    run = gmbench_cli("evaluate", ROOT / "baselines" / "categorical.py", "--metrics",
                      "nll,bits_per_dim", "--seed", "3")
    assert run.code == 0, run.err
    check = gmbench_cli("check", run.dir / "results.json", "--against", board, "--model",
                        "categorical", "--metrics", "nll,bits_per_dim")
    assert check.code == 0, check.out + check.err
    assert "unpaired: the reference kept no per-example values" in check.out
    assert "options differ" not in check.out  # batch_size: recorded now, unknown then
    assert "reproduced" not in check.out
    add = gmbench_cli("leaderboard", "add", run.dir / "results.json", "--board", board)
    assert add.code == 0 and "upgraded" in add.out, add.out + add.err
    assert board.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert {r.identity for r in old} <= {r.identity for r in read_board(board)}
