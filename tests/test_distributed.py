"""Sweeps and sharded evaluations (issue 15): serially in-process and on a local Ray with 2
CPUs (nothing beyond this machine); the Ray tests are skipped where Ray is not installed
(CI installs the ``ray`` extra)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import gmbench
from gmbench.run.sweeps import SweepError, parse_seeds, plan
from gmbench.storage.leaderboard import IDENTITY, read_board

ROOT = Path(__file__).resolve().parents[1]
BASELINES = [ROOT / "baselines" / f"{name}.py" for name in ("ppca", "categorical", "vae")]
METRICS = ["nll", "fid", "precision", "recall"]
VALUE_COLUMNS = ("value", "stderr", "ci_low", "ci_high")



def _ray_or_skip():
    try:
        import ray as ray_module
    except ImportError:
        pytest.skip('needs Ray: pip install "gmbench[ray]" (CI installs it)')
    return ray_module


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: 2 CPUs, no dashboard, no usage statistics."""
    ray_module = _ray_or_skip()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray_module.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray_module
    ray_module.shutdown()


def _rows(board: Path) -> list[dict[str, str]]:
    with board.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _comparable(rows: list[dict[str, str]]) -> dict[tuple, dict[str, str]]:
    """Rows by identity, without the date (when the run happened)."""
    keyed = {}
    for row in rows:
        key = tuple(row[c] for c in IDENTITY)
        assert key not in keyed, f"row written twice: {key}"
        keyed[key] = {c: v for c, v in row.items() if c != "date"}
    return keyed


def assert_same_rows(a: Path, b: Path) -> None:
    """Same identities and columns; values within float32 rounding (a Ray worker runs on one
    thread, whose kernels may round differently from two)."""
    ra, rb = _comparable(_rows(a)), _comparable(_rows(b))
    assert ra.keys() == rb.keys()
    for key, row in ra.items():
        other = rb[key]
        for column, value in row.items():
            if column in VALUE_COLUMNS and value:
                assert float(value) == pytest.approx(float(other[column]), rel=1e-6), (key,
                                                                                      column)
            else:
                assert value == other[column], (key, column)


@pytest.fixture(scope="module")
def reference_board(tmp_path_factory) -> Path:
    """The rows of serial ``gmbench evaluate`` + ``gmbench leaderboard add`` of the three
    digits baselines at seeds 0 and 1."""
    from gmbench.cli import main

    tmp = tmp_path_factory.mktemp("reference")
    board = tmp / "board.csv"
    for model in BASELINES:
        for seed in (0, 1):
            out = tmp / f"{model.stem}-{seed}"
            assert main(["evaluate", str(model), "--dataset", "digits", "--seed", str(seed),
                         "--metrics", ",".join(METRICS), "--out", str(out), "--quiet"]) == 0
            assert main(["leaderboard", "add", str(out / "results.json"), "--board",
                         str(board)]) == 0
    return board


# ------------------------------------------------------------------ the plan
@pytest.mark.parametrize(("text", "seeds"), [("0-4", [0, 1, 2, 3, 4]), ("0,3,7", [0, 3, 7]),
                                             ("0-2,10", [0, 1, 2, 10]), ("5", [5]),
                                             ("1-2,2-3", [1, 2, 3])])
def test_seeds_parse(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "0-", "1.5", "0-200000"])
def test_bad_seeds_are_refused(text):
    with pytest.raises(SweepError, match="seed"):
        parse_seeds(text)


def test_plan_names_each_run_once(tmp_path):
    twin = tmp_path / "other" / "ppca.py"
    twin.parent.mkdir()
    twin.write_text(BASELINES[0].read_text())
    jobs = plan([BASELINES[0], twin, BASELINES[0]], ["digits", "digits"], [0, 1])
    assert len(jobs) == 4  # repeated models and datasets count once
    assert len({j.folder for j in jobs}) == 4
    assert {j.folder for j in jobs} == {"baselines-ppca-digits-seed0",
                                        "baselines-ppca-digits-seed1",
                                        "other-ppca-digits-seed0", "other-ppca-digits-seed1"}


def test_plan_refuses_what_cannot_run_before_running_anything(tmp_path):
    from gmbench.errors import DatasetError

    with pytest.raises(DatasetError, match="Did you mean 'digits'"):
        plan(BASELINES, ["digitz"], [0])
    with pytest.raises(SweepError, match="not a model file"):
        plan([tmp_path / "missing.py"], ["digits"], [0])
    with pytest.raises(SweepError, match="at least one"):
        plan([], ["digits"], [0])


# ------------------------------------------------------------------ serial
def test_serial_sweep_gives_the_rows_of_evaluate_and_leaderboard_add(tmp_path,
                                                                     reference_board):
    report = gmbench.sweep(BASELINES, "digits", "0-1", board=tmp_path / "b.csv",
                           out=tmp_path / "runs", metrics=METRICS, runner="serial",
                           progress=False)
    assert report.exit_code == 0 and report.count("done") == 6 and report.runner == "serial"
    assert_same_rows(tmp_path / "b.csv", reference_board)
    summary = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert [j["status"] for j in summary["jobs"]] == ["done"] * 6
    # the same sweep again: everything is finished, nothing is evaluated or added
    before = (tmp_path / "b.csv").read_bytes()
    again = gmbench.sweep(BASELINES, "digits", "0-1", board=tmp_path / "b.csv",
                          out=tmp_path / "runs", metrics=METRICS, runner="serial",
                          progress=False)
    assert again.count("skipped") == 6 and again.count("done") == 0
    assert (tmp_path / "b.csv").read_bytes() == before


def test_a_changed_model_file_is_evaluated_again(tmp_path):
    model = tmp_path / "m.py"
    model.write_text((ROOT / "examples" / "minimal_model.py").read_text())
    kwargs = dict(board=tmp_path / "b.csv", out=tmp_path / "runs", metrics=["nll"],
                  runner="serial", progress=False)
    assert gmbench.sweep([model], "digits", "0", **kwargs).count("done") == 1
    assert gmbench.sweep([model], "digits", "0", **kwargs).count("skipped") == 1
    assert gmbench.sweep([model], "digits", "0", **{**kwargs, "metrics": ["nll", "fid"]}
                         ).count("done") == 1  # a metric the earlier run lacks
    assert gmbench.sweep([model], "digits", "0", **{**kwargs, "metrics": ["fid"],
                                                     "feature_extractor": "pixels"}
                         ).count("done") == 1  # another feature space
    model.write_text(model.read_text() + "\n# retrained\n")
    assert gmbench.sweep([model], "digits", "0", **kwargs).count("done") == 1
    assert gmbench.sweep([model], "digits", "0", rerun=True, **kwargs).count("done") == 1


def test_without_ray_the_sweep_runs_serially_and_says_how_to_install_it(tmp_path, monkeypatch,
                                                                        capsys):
    import gmbench.run.ray_runtime as rr

    monkeypatch.setattr(rr, "ray_available", lambda: False)
    report = gmbench.sweep([ROOT / "examples" / "minimal_model.py"], "digits", "0",
                           board=tmp_path / "b.csv", out=tmp_path / "runs", metrics=["nll"])
    assert report.runner == "serial" and report.exit_code == 0
    assert 'pip install "gmbench[ray]"' in capsys.readouterr().err
    with pytest.raises(SweepError, match="needs Ray"):
        gmbench.sweep([ROOT / "examples" / "minimal_model.py"], "digits", "0",
                      board=tmp_path / "b.csv", out=tmp_path / "runs2", shards=2)
    with pytest.raises(rr.RayError, match=r'pip install "gmbench\[ray\]"'):
        gmbench.evaluate(str(ROOT / "examples" / "minimal_model.py"), dataset="digits",
                         metrics=["fid"], workers=2, progress=False)


FLAKY = """
    from pathlib import Path

    NAME = "flaky"
    MARK = Path(__file__).with_suffix(".first-call-done")


    def load(dataset, device):
        if not MARK.exists():
            MARK.write_text("1")
            {action}
        from gmbench_baselines.ppca import load as load_ppca
        return load_ppca(dataset, device)
"""
RAISE = 'raise RuntimeError("out of memory on the first try")'
KILL = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"


def _flaky(tmp_path: Path, action: str) -> Path:
    path = tmp_path / "flaky.py"
    path.write_text(textwrap.dedent(FLAKY.format(action=action)))
    return path


def test_a_model_that_crashes_once_loses_nothing_and_a_rerun_completes(tmp_path, gmbench_cli):
    models = [str(BASELINES[0]), str(_flaky(tmp_path, RAISE))]
    args = ["sweep", *models, "--datasets", "digits", "--seeds", "0-1", "--metrics", "nll,fid",
            "--board", str(tmp_path / "b.csv"), "--out", str(tmp_path / "runs"), "--serial"]
    first = gmbench_cli(*args)
    assert first.code == 1
    assert ("failed: flaky.py on digits, seed 0: flaky.py: `load(dataset, device)` raised "
            "RuntimeError: out of memory on the first try") in first.out
    assert "3 evaluated, 0 already finished, 1 failed of 4" in first.out
    assert len(read_board(tmp_path / "b.csv")) == 3 * 2
    second = gmbench_cli(*args)
    assert second.code == 0 and "1 evaluated, 3 already finished, 0 failed of 4" in second.out
    rows = read_board(tmp_path / "b.csv")
    assert len(rows) == 4 * 2 == len({tuple(getattr(r, c) for c in IDENTITY) for r in rows})


def test_an_interrupted_sweep_resumes_and_writes_each_row_once(tmp_path):
    """The sweep's process is killed (SIGKILL) as soon as its first run is written; the same
    command then finishes the board, with every row exactly once."""
    board, out = tmp_path / "b.csv", tmp_path / "runs"
    argv = [sys.executable, "-m", "gmbench", "sweep", *map(str, BASELINES), "--datasets",
            "digits", "--seeds", "0-1", "--metrics", "nll,fid", "--board", str(board),
            "--out", str(out), "--serial", "--quiet"]

    def runs() -> int:  # finished run folders; a run being written is a hidden staging folder
        return sum(not p.parent.name.startswith(".") for p in out.glob("*/results.json"))

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not runs() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = runs()
    assert 1 <= written < 6
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{6 - written} evaluated" in done.stdout or written == 6
    rows = read_board(board)
    identities = [tuple(getattr(r, c) for c in IDENTITY) for r in rows]
    assert len(identities) == len(set(identities)) == 6 * 2


def test_sweep_command_errors(tmp_path, gmbench_cli):
    bad = gmbench_cli("sweep", str(BASELINES[0]), "--datasets", "digits", "--seeds", "x",
                      "--board", str(tmp_path / "b.csv"))
    assert bad.code == 2 and "not a seed or a range" in bad.err
    missing = gmbench_cli("sweep", str(tmp_path / "nope.py"), "--datasets", "digits",
                          "--board", str(tmp_path / "b.csv"))
    assert missing.code == 2 and "not a model file" in missing.err
    shards = gmbench_cli("sweep", str(BASELINES[0]), "--datasets", "digits", "--shards", "0",
                         "--board", str(tmp_path / "b.csv"))
    assert shards.code == 2 and "--workers must be a whole number of at least 1" in shards.err


# ------------------------------------------------------------------ on Ray
def test_ray_sweep_gives_the_rows_of_evaluate_and_leaderboard_add(local_ray, tmp_path,
                                                                  reference_board):
    report = gmbench.sweep(BASELINES, ["digits"], [0, 1], board=tmp_path / "b.csv",
                           out=tmp_path / "runs", metrics=METRICS, runner="ray",
                           progress=False)
    assert report.runner == "ray" and report.exit_code == 0 and report.count("done") == 6
    assert_same_rows(tmp_path / "b.csv", reference_board)
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def test_a_killed_worker_is_retried_and_loses_nothing(local_ray, tmp_path):
    flaky = _flaky(tmp_path, KILL)
    kwargs = dict(board=tmp_path / "b.csv", out=tmp_path / "runs", metrics=["nll", "fid"],
                  runner="ray", progress=False)
    # no retries: the killed evaluation fails, the others finish
    first = gmbench.sweep([BASELINES[0], flaky], "digits", "0", retries=0, **kwargs)
    assert [o.status for o in first.outcomes] == ["done", "failed"]
    assert "Ray worker failed" in first.failed[0].error
    assert len(read_board(tmp_path / "b.csv")) == 2
    # the re-run skips the finished one and completes the board
    second = gmbench.sweep([BASELINES[0], flaky], "digits", "0", **kwargs)
    assert [o.status for o in second.outcomes] == ["skipped", "done"]
    assert len(read_board(tmp_path / "b.csv")) == 4
    # with retries, Ray runs a killed evaluation again within the same sweep
    flaky.with_suffix(".first-call-done").unlink()
    third = gmbench.sweep([flaky], "digits", "1", retries=1, **kwargs)
    assert [o.status for o in third.outcomes] == ["done"]
    assert len(read_board(tmp_path / "b.csv")) == 6


@pytest.mark.parametrize("n_samples", [2000, 2500])
def test_sharded_evaluation_equals_one_process(local_ray, one_thread, n_samples):
    """Two workers draw and extract the blocks of 1,000 samples (2,500: an uneven split) and
    the metrics computed from what they gather equal a one-process run's. Each worker has one
    thread, as the one-process run here: the extractor's float32 kernels round differently
    on one thread and on two (features 4e-7 relative apart, which `kl_knn` turns into 2e-6),
    while how the samples are batched changes no bit."""
    model = str(BASELINES[2])
    metrics = ["fid", "kid", "precision", "recall", "density", "coverage", "inception_score",
               "nn_distance_ratio", "copy_rate", "kl_knn", "mmd", "nll"]
    one = gmbench.evaluate(model, dataset="digits", seed=5, metrics=metrics,
                           n_samples=n_samples, progress=False)
    two = gmbench.evaluate(model, dataset="digits", seed=5, metrics=metrics,
                           n_samples=n_samples, progress=False, workers=2)
    assert two.document["provenance"]["shards"] == 2
    for key in metrics:
        a, b = one[key], two[key]
        assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high),
                                                               rel=1e-6, abs=1e-9), key


def test_sharded_sweep(local_ray, tmp_path):
    report = gmbench.sweep([BASELINES[0]], "digits", "0", board=tmp_path / "b.csv",
                           out=tmp_path / "runs", metrics=["fid", "nll"], runner="ray",
                           shards=2, progress=False)
    assert report.exit_code == 0, report.describe()
    doc = json.loads((tmp_path / "runs" / "ppca-digits-seed0" / "results.json").read_text())
    assert doc["provenance"]["shards"] == 2


# ------------------------------------------------------------------ the shard split
@pytest.mark.parametrize(("n", "shards"), [(2000, 2), (2500, 2), (2500, 4), (999, 3),
                                           (10_000, 3), (10_000, 1)])
def test_shards_cover_every_sampling_block_once_in_order(n, shards):
    import math

    from gmbench.run.shards import shard_blocks

    ranges = shard_blocks(n, shards, 1000)
    blocks = math.ceil(n / 1000)
    assert [b for first, stop in ranges for b in range(first, stop)] == list(range(blocks))
    assert len(ranges) == min(shards, blocks)
    sizes = [stop - first for first, stop in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_the_shards_samples_are_the_one_process_samples():
    import numpy as np

    from gmbench.models.model import SAMPLE_BLOCK
    from gmbench.run.shards import shard_blocks

    model = gmbench.load_model(BASELINES[2], dataset="digits")
    full = model.sample(2500, seed=7)
    parts = [model.sample(2500, seed=7, blocks=r) for r in shard_blocks(2500, 2, SAMPLE_BLOCK)]
    np.testing.assert_array_equal(np.concatenate(parts), full)


SLEEPY = """
import time
import torch

class Sleepy:
    def sample(self, n):
        time.sleep(300)
        return torch.zeros(n, 1, 8, 8)

def load(dataset, device):
    return Sleepy()
"""


@pytest.mark.parametrize("runner", ["serial", "ray"])
@pytest.mark.parametrize("isolate", [False, True])
def test_a_sleeping_model_is_stopped_by_its_timeout_in_a_sweep(tmp_path, request, runner,
                                                                isolate):
    """``--timeout`` (with or without ``--isolate``) fails the sleeping model's evaluation with
    the limit named, and the sweep goes on to the others (serially and on Ray)."""
    if runner == "ray":
        request.getfixturevalue("local_ray")
    sleepy = tmp_path / "sleepy.py"
    sleepy.write_text(SLEEPY)
    started = time.monotonic()
    report = gmbench.sweep([sleepy, BASELINES[1]], "digits", "0", board=tmp_path / "b.csv",
                           out=tmp_path / "runs", metrics=["fid"], runner=runner,
                           progress=False, timeout=3, isolate=isolate)
    assert report.count("done") == 1 and report.count("failed") == 1
    failure = report.failed[0]
    assert failure.job.label.startswith("sleepy.py")
    assert "`sample` did not finish within the time limit (--timeout 3 s)" in failure.error
    assert time.monotonic() - started < 240


def test_a_sweep_over_your_own_dataset_resumes(tmp_path, points_and_gauss):
    """Its runs are found finished by the dataset's contents (the path names the dataset by
    its stem); a rewritten file is evaluated again."""
    own, model = points_and_gauss()
    kwargs = dict(board=tmp_path / "b.csv", out=tmp_path / "runs", metrics=["nll"],
                  runner="serial", progress=False)
    assert gmbench.sweep([model], [str(own)], "0-1", **kwargs).count("done") == 2
    assert gmbench.sweep([model], [str(own)], "0-1", **kwargs).count("skipped") == 2
    points_and_gauss(1.0)
    assert gmbench.sweep([model], [str(own)], "0-1", **kwargs).count("done") == 2


def test_a_second_sweep_into_the_same_folder_is_refused(tmp_path):
    import fcntl

    out = tmp_path / "runs"
    out.mkdir()
    fd = os.open(out / ".sweep.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a sweep running in another process
    try:
        with pytest.raises(SweepError, match="another sweep is writing to"):
            gmbench.sweep([BASELINES[0]], "digits", "0", board=tmp_path / "b.csv", out=out,
                          metrics=["nll"], runner="serial", progress=False)
    finally:
        os.close(fd)
    report = gmbench.sweep([BASELINES[0]], "digits", "0", board=tmp_path / "b.csv", out=out,
                           metrics=["nll"], runner="serial", progress=False)
    assert report.count("done") == 1


# ------------------------------------------------------------------ what the board can hold
TOY = """
    import math, torch
    DATASET = "toy2d-gmm8"
    class M:
        def sample(self, n, *, seed=0):
            g = torch.Generator().manual_seed(seed)
            return torch.randn(n, 2, generator=g, dtype=torch.float64) * {scale}
        def log_prob(self, x):
            x = torch.as_tensor(x, dtype=torch.float64)
            return (-0.5 * (x / {scale}) ** 2).sum(1) - 2 * math.log({scale} * (2 * math.pi) ** 0.5)
    model = M()
"""
# one model file for several checkpoint folders: the weights it loads are a plain number
CHECKPOINT = """
    import numpy as np, torch
    from pathlib import Path
    DATASET = "toy2d-gmm8"{declared}
    class M:
        def __init__(self, scale):
            self.scale = float(scale)
        def sample(self, n, *, seed=0):
            g = torch.Generator().manual_seed(seed)
            return torch.randn(n, 2, generator=g, dtype=torch.float64) * self.scale
    def load(dataset, device):
        return M(np.load(Path(__file__).parent / "scale.npy"))
"""
TOY_SWEEP = dict(metrics=["mmd"], n_samples=200, runner="serial", progress=False, threads=1)


def _toy(path: Path, scale: float = 2.0, source: str = TOY) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source.format(scale=scale)))
    return path


def _checkpoints(tmp_path: Path, declared: str = "") -> list[Path]:
    import numpy as np

    models = []
    for name, scale in (("ckpt1", 2.0), ("ckpt2", 4.0)):
        models.append(_toy(tmp_path / name / "model.py",
                           source=CHECKPOINT.replace("{declared}", declared)))
        np.save(tmp_path / name / "scale.npy", np.array(scale))
    return models


def test_model_files_of_one_name_are_named_as_their_folders_on_the_board(tmp_path):
    models = [_toy(tmp_path / "a" / "m.py", 2.0), _toy(tmp_path / "b" / "m.py", 3.0)]
    report = gmbench.sweep(models, "toy2d-gmm8", [0], board=tmp_path / "b.csv",
                           out=tmp_path / "runs", **TOY_SWEEP)
    assert report.exit_code == 0 and report.count("done") == 2
    rows = read_board(tmp_path / "b.csv")
    assert sorted(r.model for r in rows) == ["a-m", "b-m"]  # not both "m": two lines in show
    assert any("a-m" in note and "b-m" in note for note in report.notes)
    assert {j.folder for j in plan(models, ["toy2d-gmm8"], [0])} == {
        "a-m-toy2d-gmm8-seed0", "b-m-toy2d-gmm8-seed0"}


def test_board_names_keep_a_declared_name_and_rename_only_clashes(tmp_path):
    from gmbench.run.sweeps import board_names

    a, b = _toy(tmp_path / "a" / "m.py"), _toy(tmp_path / "b" / "m.py")
    named = _toy(tmp_path / "c" / "m.py", source=TOY.replace("DATASET", 'NAME = "mine"; DATASET'))
    ckpts = [_toy(tmp_path / f"ckpt{i}" / "model.py") for i in (1, 2)]  # "ckpt1", "ckpt2"
    assert board_names([a, b, named, *ckpts]) == {a: "a-m", b: "b-m"}
    assert board_names([a]) == {}


def test_checkpoints_whose_weights_are_not_hashed_are_not_merged_silently(tmp_path):
    """Two checkpoint folders with one model file (the same bytes) whose weights gmbench cannot
    hash have one board identity: the second is reported failed, with what to declare, and
    not counted done while its rows are dropped."""
    models = _checkpoints(tmp_path)
    kwargs = dict(board=tmp_path / "b.csv", out=tmp_path / "runs", **TOY_SWEEP)
    report = gmbench.sweep(models, "toy2d-gmm8", [0], **kwargs)
    assert report.exit_code == 1 and report.count("done") == 1
    failed = report.failed[0]
    assert failed.board_conflict and "WEIGHTS" in failed.error
    assert "ckpt1-model-toy2d-gmm8-seed0" in failed.error
    assert "re-run the same command" not in report.describe()  # a retry changes nothing
    assert {r.model for r in read_board(tmp_path / "b.csv")} == {"ckpt1"}
    assert gmbench.sweep(models, "toy2d-gmm8", [0], **kwargs).exit_code == 1  # still said
    # declared weights are hashed into the identity: both are on the board
    models = _checkpoints(tmp_path, declared='\n    WEIGHTS = "scale.npy"')
    report = gmbench.sweep(models, "toy2d-gmm8", [0], **kwargs)
    assert report.exit_code == 0 and report.count("done") == 2
    assert sorted({r.model for r in read_board(tmp_path / "b.csv")}) == ["ckpt1", "ckpt2"]


def test_rows_the_board_keeps_from_an_earlier_sweep_are_reported(tmp_path):
    """Another model file of the same bytes swept later onto the same board fails (its rows
    would be dropped); the same model at other options is done, with a note."""
    ckpt1, ckpt2 = _checkpoints(tmp_path)
    kwargs = dict(board=tmp_path / "b.csv", **TOY_SWEEP)
    assert gmbench.sweep(ckpt1, "toy2d-gmm8", [0], out=tmp_path / "o1", **kwargs
                         ).exit_code == 0
    second = gmbench.sweep(ckpt2, "toy2d-gmm8", [0], out=tmp_path / "o2", **kwargs)
    assert second.exit_code == 1 and second.failed[0].board_conflict
    assert "already holds rows" in second.failed[0].error and "--rerun" in second.failed[0].error
    replaced = gmbench.sweep(ckpt2, "toy2d-gmm8", [0], out=tmp_path / "o2", rerun=True,
                             **kwargs)
    assert replaced.exit_code == 0
    assert {r.model for r in read_board(tmp_path / "b.csv")} == {"ckpt2"}
    # the same model at another sample count: done, and the kept rows are named
    other = gmbench.sweep(ckpt2, "toy2d-gmm8", [0], out=tmp_path / "o2",
                          **{**kwargs, "n_samples": 300})
    assert other.exit_code == 0 and other.count("done") == 1
    assert "note:" in other.describe() and "--rerun" in other.outcomes[0].note


def test_a_sweep_never_replaces_another_model_files_run(tmp_path):
    a, b = _toy(tmp_path / "a" / "m.py", 2.0), _toy(tmp_path / "b" / "m.py", 3.0)
    kwargs = dict(board=tmp_path / "b.csv", out=tmp_path / "runs", **TOY_SWEEP)
    assert gmbench.sweep([a], "toy2d-gmm8", [0], **kwargs).count("done") == 1
    run = tmp_path / "runs" / "m-toy2d-gmm8-seed0" / "results.json"
    before = run.read_bytes()
    with pytest.raises(SweepError, match="holds the run of another model file"):
        gmbench.sweep([b], "toy2d-gmm8", [0], **kwargs)
    assert run.read_bytes() == before
    assert gmbench.sweep([a], "toy2d-gmm8", [0], **kwargs).count("skipped") == 1


def test_datasets_the_board_cannot_tell_apart_are_refused(tmp_path):
    import numpy as np

    model = _toy(tmp_path / "m.py")
    rng = np.random.default_rng(0)
    for folder, shift in (("a", 0.0), ("b", 3.0)):
        (tmp_path / folder).mkdir()
        x = rng.normal(size=(60, 2)).astype(np.float32) + shift
        np.savez(tmp_path / folder / "mine.npz", x_train=x[:40], x_test=x[40:])
    a, b = str(tmp_path / "a" / "mine.npz"), str(tmp_path / "b" / "mine.npz")
    with pytest.raises(SweepError, match="both named 'mine' but hold different data"):
        plan([model], [a, b], [0])
    assert len(plan([model], [a, str(tmp_path / "b" / ".." / "a" / "mine.npz")], [0])) == 1


def test_bad_input_is_refused_before_any_evaluation(tmp_path, gmbench_cli):
    from cli_errors import assert_clear_error

    model = _toy(tmp_path / "m.py", source=TOY + """
    import pathlib
    pathlib.Path(__file__).with_name("imported").write_text("1")
    """)
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_text("dataset,model\nx,y\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")

    def sweep(*args: object, board: Path = tmp_path / "b.csv") -> object:
        return gmbench_cli("sweep", model, "--datasets", "toy2d-gmm8", "--board", board,
                           "--out", tmp_path / "runs", "--serial", *args)

    assert_clear_error(sweep(board=corrupt), "is not a gmbench leaderboard")
    assert_clear_error(sweep("--n-samples", "5"), "--n-samples 5 is too few")
    assert_clear_error(sweep("--metrics", "nll,nosuch"), "Unknown metric 'nosuch'")
    assert_clear_error(gmbench_cli("sweep", model, "--datasets", "toy2d-gmm8", "--board",
                                   tmp_path / "b.csv", "--out", a_file, "--serial"),
                       "is a file, not a folder")
    assert not (tmp_path / "imported").exists()  # no model was even imported
    assert not (tmp_path / "runs").exists() and a_file.read_text() == "not a folder"


def test_sweep_arguments_of_the_wrong_type_are_refused_or_taken_as_one(tmp_path, monkeypatch):
    model = _toy(tmp_path / "m.py")
    monkeypatch.chdir(tmp_path)
    kwargs = dict(board="b.csv", out="runs", **TOY_SWEEP)
    one = gmbench.sweep("m.py", "toy2d-gmm8", 3, **kwargs)  # one path, one seed
    assert one.exit_code == 0 and [o.job.request.seed for o in one.outcomes] == [3]
    assert one.outcomes[0].job.request.model == str(model)
    for models, seeds, needle in [(5, [0], "models must be"), ([b"m.py"], [0], "models must be"),
                                  ("m.py", 1.5, "seeds must be"), ("m.py", [True], "seeds must"),
                                  ("m.py", [-1], "seeds must"), ("m.py", None, "seeds must")]:
        with pytest.raises(SweepError, match=needle):
            gmbench.sweep(models, "toy2d-gmm8", seeds, **kwargs)
    with pytest.raises(SweepError, match="datasets must be"):
        gmbench.sweep("m.py", [Path("toy2d-gmm8")], [0], **kwargs)
