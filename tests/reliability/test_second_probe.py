"""Cases found by a second round of probes (issue 12), one test per class: what a model hands
back (dtypes, tensors without data, values beyond float32), what it changes in the process
(working directory, streams, signal handlers, ``sys.path``, the default device, the shared
dataset), what a file or flag can claim (impossible board rows, unbounded reads, symbolic
links, names with line breaks), and how comparisons rank values that are noise around an
ideal or measured on another sample count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_errors import assert_clear_error

from gmbench.datasets import get_dataset

ROOT = Path(__file__).resolve().parents[2]


TOY = """
    import torch
    DATASET = "gauss-2"
    class M:
        def sample(self, n):
            return {sample}
        def log_prob(self, x):
            return {log_prob}
    model = M()
"""
GOOD_SAMPLE = "torch.randn(n, 2)"
GOOD_LP = "torch.distributions.Normal(0., 1.).log_prob(x).sum(1)"


def toy(*lines: str) -> str:
    """The good toy model with extra module-level lines (``NAME = ...``)."""
    return TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP) + "".join(
        f"    {line}\n" for line in lines)


# ------------------------------------------------------------------ what the model returns
@pytest.mark.parametrize("log_prob, needle", [
    ("torch.zeros(len(x), dtype=torch.complex64)", "complex64"),
    ("torch.zeros(len(x), dtype=torch.bool)", "bool"),
    ("['a'] * len(x)", "<U1"),
])
def test_log_probs_that_are_not_real_numbers_are_refused(write_model, gmbench_cli, log_prob,
                                                         needle):
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=log_prob))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "nll"), "`log_prob`", needle)


def test_boolean_samples_are_refused_not_read_as_levels(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return torch.rand(n, 1, 8, 8) > 0.5
        model = M()
    """)
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "fid", "--n-samples", "50"),
                       "dtype bool")


def test_samples_beyond_float32_are_refused_not_made_infinite(write_model, gmbench_cli):
    path = write_model(TOY.format(sample="torch.full((n, 2), 1e300, dtype=torch.float64)",
                                  log_prob=GOOD_LP))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "float32")


@pytest.mark.parametrize("sample", ["torch.empty(n, 2, device='meta')",
                                    "torch.randn(n, 2).to_sparse()"])
def test_meta_and_sparse_tensors(write_model, gmbench_cli, sample):
    path = write_model(TOY.format(sample=sample, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50")
    if "meta" in sample:
        assert_clear_error(run, "meta tensor")
    else:  # a sparse tensor holds values: read densely
        assert run.code == 0, run.err


def test_conditional_labels_are_the_models_own_copy(write_model, gmbench_cli):
    source = """
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return torch.randint(0, 17, (n, 1, 8, 8))
            def sample_conditional(self, labels):
                out = torch.zeros(len(labels), 1, 8, 8, dtype=torch.long) + labels.view(-1, 1, 1, 1)
                {mutation}
                return out
        model = M()
    """
    args = ("--metrics", "cas", "--n-samples", "200")
    clean = gmbench_cli("evaluate", write_model(source.format(mutation="pass")), *args)
    dirty = gmbench_cli("evaluate", write_model(source.format(mutation="labels[:] = 0")), *args)
    assert clean.code == 0 and dirty.code == 0, dirty.err
    assert dirty.metric("cas")["value"] == clean.metric("cas")["value"]


# ------------------------------------------------------------------ what the model changes
def test_process_state_is_restored_after_model_code(write_model, gmbench_cli, tmp_path,
                                                    monkeypatch):
    elsewhere, start = tmp_path / "elsewhere", tmp_path / "start"
    elsewhere.mkdir()
    start.mkdir()
    monkeypatch.chdir(start)
    path = write_model(f"""
        import io, os, signal, sys, torch
        DATASET = "gauss-2"
        def load(dataset, device):
            os.chdir({str(elsewhere)!r})
            sys.stdout = io.StringIO()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            sys.path.clear()
            torch.set_default_device("meta")
            class M:
                def sample(self, n):
                    return torch.randn(n, 2, device="cpu")
            return M()
    """)
    cwd, stdout, handler, path_before = (os.getcwd(), sys.stdout,
                                         signal.getsignal(signal.SIGTERM), list(sys.path))
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50",
                      "--out", "relative-out")
    assert run.code == 0, run.err
    assert os.getcwd() == cwd and sys.stdout is stdout
    assert signal.getsignal(signal.SIGTERM) is handler and sys.path == path_before
    assert torch.get_default_device() == torch.device("cpu")
    assert (start / "relative-out" / "results.json").is_file()  # not under elsewhere/
    assert not (elsewhere / "relative-out").exists()


def test_posix_exit_is_refused_like_os_exit(write_model, gmbench_cli):
    path = write_model("""
        import posix, torch
        DATASET = "gauss-2"
        class M:
            def sample(self, n):
                posix._exit(0)
        model = M()
    """)
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "os._exit(0)")


@pytest.mark.parametrize("member", [
    "log_prob_space = property(lambda self: 1 / 0)",
    "__getattr__ = lambda self, name: (_ for _ in ()).throw(RuntimeError('no ' + name))",
])
def test_members_that_raise_on_access_are_a_clear_error(write_model, gmbench_cli, member):
    path = write_model(f"""
        import torch
        DATASET = "gauss-2"
        class M:
            {member}
            def sample(self, n):
                return torch.randn(n, 2)
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50")
    assert_clear_error(run, "ZeroDivisionError" if "property" in member else "RuntimeError: no ")


@pytest.mark.parametrize("weights", ["WEIGHTS = 5", "WEIGHTS = [object()]"])
def test_malformed_weights_declarations(write_model, gmbench_cli, weights):
    path = write_model(toy(weights))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "WEIGHTS")


def test_meta_parameters_cannot_be_hashed_and_say_so(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.empty(2, device="meta"))
            def sample(self, n):
                return torch.randn(n, 2)
        def load(dataset, device):
            return M()
    """)
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "`w`", "meta")


def test_a_model_writing_into_the_shared_dataset_is_caught(write_model, gmbench_cli):
    path = write_model("""
        import torch
        from gmbench.datasets import get_dataset
        DATASET = "gauss-2"
        class M:
            def sample(self, n):
                get_dataset("gauss-2").test.x[:5] = 0.0  # the shared, cached arrays
                return torch.randn(n, 2)
        model = M()
    """)
    before = get_dataset("gauss-2").sha256
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "changed while the model ran")
    assert get_dataset("gauss-2").sha256 == before  # the cache was dropped and reloaded


def test_a_stray_thread_does_not_keep_the_command_alive(tmp_path):
    model = tmp_path / "threads.py"
    model.write_text("import threading, time, torch\nDATASET = 'gauss-2'\n"
                     "class M:\n    def sample(self, n):\n"
                     "        threading.Thread(target=time.sleep, args=(600,)).start()\n"
                     "        return torch.randn(n, 2)\nmodel = M()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    proc = subprocess.run([sys.executable, "-m", "gmbench", "evaluate", str(model), "--metrics",
                           "mmd", "--n-samples", "50", "--quiet", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "left 1 thread(s) running" in proc.stderr
    assert (tmp_path / "o" / "results.json").is_file()


# ------------------------------------------------------------------ flags and files
def test_a_user_folder_named_like_an_output_file_is_never_replaced(write_model, gmbench_cli,
                                                                     tmp_path):
    out = tmp_path / "run"
    (out / "report.html").mkdir(parents=True)
    (out / "report.html" / "notes.txt").write_text("mine")
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50", "--out", out)
    assert_clear_error(run, "report.html")
    assert (out / "report.html" / "notes.txt").read_text() == "mine"


def test_out_through_a_symbolic_link_writes_into_its_folder(write_model, gmbench_cli,
                                                              tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50", "--out", link)
    assert run.code == 0, run.err
    assert link.is_symlink() and (real / "results.json").is_file()
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50", "--out",
                      dangling)
    assert_clear_error(run, "symbolic link")
    assert not (tmp_path / "nowhere").exists()


def test_a_long_name_keeps_the_dataset_in_the_default_folder(write_model, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_model(toy('NAME = "m" * 300'))
    from gmbench.cli import main
    assert main(["evaluate", str(path), "--metrics", "mmd", "--n-samples", "50", "--quiet"]) == 0
    (folder,) = (tmp_path / "gmbench-out").iterdir()
    assert folder.name == "m" * 100 + "-gauss-2"


def test_unbounded_dequant_samples_is_refused(write_model, gmbench_cli):
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "nll", "--dequant-samples", "1000000")
    assert run.code == 2 and "--dequant-samples" in run.err and "Traceback" not in run.err


def test_inception_weights_naming_a_folder(gmbench_cli, tmp_path):
    run = gmbench_cli("evaluate", ROOT / "examples" / "minimal_model.py", "--metrics", "fid",
                      "--feature-extractor", "inception-v3-compat", "--inception-weights",
                      tmp_path)
    assert_clear_error(run, "is a folder")


def test_dequant_samples_on_a_data_space_model_is_recorded_as_one(write_model, gmbench_cli):
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "nll", "--dequant-samples", "8")
    assert run.code == 0 and "one draw is used" in run.err, run.err
    assert run.results["config"]["dequant_samples"] == 1


@pytest.fixture()
def board_and_results(write_model, gmbench_cli, tmp_path):
    path = write_model(toy('NAME = "toy"'))
    run = gmbench_cli("evaluate", path, "--metrics", "nll,mmd", "--n-samples", "50")
    assert run.code == 0, run.err
    board = tmp_path / "board.csv"
    assert gmbench_cli("leaderboard", "add", run.dir / "results.json", "--board",
                       board).code == 0
    return board, run.dir / "results.json"


@pytest.mark.parametrize("column, value, needle", [
    ("stderr", "-1.0", "stderr"), ("n", "-5", "'n'"), ("protocol", "0", "protocol"),
    ("seed", "-3", "seed"), ("ci_low", "99.0", "exceeds ci_high"),
])
def test_impossible_board_rows_are_refused(board_and_results, gmbench_cli, column, value,
                                           needle):
    import csv
    board, _ = board_and_results
    rows = list(csv.reader(board.open(newline="")))
    rows[1][rows[0].index(column)] = value
    with board.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    before = board.read_bytes()
    assert_clear_error(gmbench_cli("leaderboard", "show", "--board", board), needle)
    assert board.read_bytes() == before


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["metrics"]["nll"].update(stderr=-1.0), "stderr"),
    (lambda d: d["metrics"]["nll"].update(ci_low=1e9), "exceeds ci_high"),
    (lambda d: d.update(seed=-1), "seed"),
])
def test_impossible_results_are_refused(board_and_results, gmbench_cli, edit, needle):
    board, results = board_and_results
    doc = json.loads(results.read_text())
    edit(doc)
    results.write_text(json.dumps(doc))
    assert_clear_error(gmbench_cli("check", results, "--against", board, "--model", "toy"),
                       needle)


def test_deeply_nested_and_endless_files_are_refused(gmbench_cli, board_and_results, tmp_path):
    board, _ = board_and_results
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert_clear_error(gmbench_cli("check", deep, "--against", board, "--model", "toy"),
                       "nests JSON too deeply")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_clear_error(gmbench_cli("check", fifo, "--against", board, "--model", "toy"),
                       "not a regular file")
    assert_clear_error(gmbench_cli("leaderboard", "show", "--board", fifo), "not a regular file")
    assert_clear_error(gmbench_cli("evaluate", fifo), "not a regular file")


def test_infinite_tolerance_is_refused(board_and_results, gmbench_cli):
    board, results = board_and_results
    assert_clear_error(gmbench_cli("check", results, "--against", board, "--model", "toy",
                                   "--tolerance", "nll=1e999"), "finite")


def test_check_keeps_its_verdict_when_the_reader_leaves(board_and_results, tmp_path):
    """`gmbench check ... | head -1`: the exit status still says whether a metric regressed."""
    board, results = board_and_results
    doc = json.loads(results.read_text())
    doc["metrics"]["nll"]["value"] += 50.0
    doc["metrics"]["nll"]["ci_low"] += 50.0
    doc["metrics"]["nll"]["ci_high"] += 50.0
    for i in range(3000):  # verdict lines beyond a pipe's buffer: the writes after `head`
        doc["metrics"][f"extra_{i}"] = doc["metrics"]["mmd"]  # left must fail
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(doc))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    script = (f"{sys.executable} -m gmbench check {worse} --against {board} --model toy "
              "| head -c 1; exit ${PIPESTATUS[0]}")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_name_with_a_line_break_stays_on_its_line(board_and_results, gmbench_cli, tmp_path):
    board, results = board_and_results
    doc = json.loads(results.read_text())
    doc["model"]["name"] = "evil\ntoy  1.0  spoofed"
    doc["model"]["sha256"] = "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    assert gmbench_cli("leaderboard", "add", other, "--board", board).code == 0
    run = gmbench_cli("leaderboard", "show", "--board", board)
    assert run.code == 0
    assert not any(line.startswith("toy  1.0") for line in run.out.splitlines())
    assert "evil\\ntoy" in run.out


# ------------------------------------------------------------------ ranks
@pytest.mark.parametrize("key", ["mmd", "mmd_multiscale", "kid", "kl_knn", "kl_exact"])
def test_noise_below_an_ideal_of_zero_does_not_rank_above_the_truth(key):
    """Unbiased and Monte Carlo divergence estimates scatter around 0 for a perfect model: a
    negative value is noise, farther from perfect than a smaller positive one."""
    from gmbench.metrics import get_metric
    from gmbench.present.compare import rank_of

    direction = get_metric(key).direction
    assert rank_of(-0.002, [0.0005], direction=direction) == 2
    assert rank_of(0.0001, [0.0005, -0.002], direction=direction) == 1


def test_float32_rounding_ties():
    from gmbench.core.direction import Direction
    from gmbench.present.compare import rank_of

    value = 0.123456789
    rounded = float(np.float32(value))
    assert rank_of(value, [rounded], direction=Direction(True)) == 1
    assert rank_of(rounded, [value], direction=Direction(True)) == 1


def test_baselines_on_another_sample_count_are_not_ranked(board_and_results, gmbench_cli,
                                                           write_model):
    board, results = board_and_results
    path = write_model(toy('NAME = "toy2"'))
    run = gmbench_cli("evaluate", path, "--metrics", "nll,mmd", "--n-samples", "60",
                      "--boards", board.parent)
    assert run.code == 0, run.err
    from gmbench.present.compare import compare_with_baselines
    from gmbench.storage.leaderboard import read_board

    _, comps = compare_with_baselines(run.results, read_board(board))
    by_key = {c.metric: c for c in comps}
    assert by_key["mmd"].mismatched == {"toy"}  # 50 samples vs 60
    assert by_key["nll"].mismatched == frozenset()  # the test split, whatever the samples


def test_kl_exact_below_zero_is_not_estimable(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        class M:  # the truth's log-density plus 1 nat: not normalised
            def log_prob(self, x):
                cov = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
                mvn = torch.distributions.MultivariateNormal(torch.zeros(2), cov)
                return mvn.log_prob(x) + 1.0
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "kl_exact")
    assert run.code == 0, run.err
    rec = run.metric("kl_exact")
    assert rec["value"] is None and "normalised" in rec["not_estimable"]
    assert rec["value_if_estimable"] == pytest.approx(-1.0, abs=1e-4)


def test_one_train_example_has_no_interval_and_says_so(gmbench_cli):
    run = gmbench_cli("evaluate", ROOT / "examples" / "minimal_model.py", "--metrics",
                      "nll,nll_train,generalization_gap", "--max-train", "1")
    assert run.code == 0, run.err
    assert run.metric("generalization_gap")["ci_low"] is None
    assert "no interval: too few train examples" in run.out


def test_a_dangling_board_link_creates_no_folders(board_and_results, gmbench_cli, tmp_path):
    _, results = board_and_results
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "missing" / "deeper" / "board.csv")
    assert_clear_error(gmbench_cli("leaderboard", "add", results, "--board", link),
                       "symbolic link")
    assert not (tmp_path / "missing").exists()


def test_json_stdout_stays_json_when_the_model_prints(write_model, gmbench_cli):
    path = write_model("""
        import torch
        print("hello at import")
        DATASET = "gauss-2"
        class M:
            def sample(self, n):
                print("hello from sample")
                return torch.randn(n, 2)
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["metrics"]["mmd"]["value"] is not None
    assert "hello from sample" in run.err and "hello at import" in run.err


@pytest.mark.parametrize("options, needle", [
    ({"batch_size": -5}, "batch_size"), ({"batch_size": 0}, "batch_size"),
    ({"max_train": -3}, "max_train"), ({"n_samples": "100"}, "n_samples"),
    ({"n_samples": True}, "n_samples"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"dataset": 5}, "dataset"), ({"metrics": "nll"}, "metrics"), ({"metrics": []}, "metrics"),
])
def test_the_api_checks_its_options_like_the_command_line(options, needle):
    import gmbench

    with pytest.raises(gmbench.GmbenchError, match=needle):
        gmbench.evaluate(ROOT / "examples" / "minimal_model.py", progress=False, **options)
