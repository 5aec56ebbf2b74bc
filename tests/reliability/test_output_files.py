"""The files gmbench writes and reads back: an output folder that is a file, a user's folder, the
working directory or a symbolic link; results.json and results.csv written all or nothing when a
write fails or the process is killed; model names that could choose where files go or what the
terminal does; results files that are damaged, impossible, deeply nested, endless or start with
a byte-order mark; an altered feature cache entry; and output cut short by a closed pipe."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from cli_errors import assert_clear_error
from helpers import GOOD_LP, GOOD_SAMPLE, LEVELS, MINIMAL, ROOT, TOY, toy


# ------------------------------------------------------------------ the output folder
def test_a_user_folder_named_like_an_output_file_is_never_replaced(write_model, gmbench_cli,
                                                                     tmp_path):
    out = tmp_path / "run"
    (out / "report.html").mkdir(parents=True)
    (out / "report.html" / "notes.txt").write_text("mine")
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50", "--out", out)
    assert_clear_error(run, "report.html")
    assert (out / "report.html" / "notes.txt").read_text() == "mine"


def test_results_save_never_replaces_a_run_with_metrics_it_lacks(tmp_path):
    """As `gmbench evaluate --out` refuses it: `save` onto a fuller run stops, unless
    `overwrite=True`; saving the same run again is fine."""
    import json

    import gmbench
    from gmbench.run.outputs import OutputError

    class Normal:
        def sample(self, n):
            return torch.randn(n, 2, dtype=torch.float64) * 2

        def log_prob(self, x):
            return torch.distributions.Normal(0.0, 2.0).log_prob(
                torch.as_tensor(x, dtype=torch.float64)).sum(-1)

    def run(metrics: list[str], seed: int) -> gmbench.Results:
        return gmbench.evaluate(Normal(), dataset="toy2d-gmm8", metrics=metrics, seed=seed,
                                n_samples=200, threads=1, progress=False)

    def held() -> set[str]:
        return set(json.loads((tmp_path / "run" / "results.json").read_text())["metrics"])

    full = run(["nll", "mmd"], 0)
    full.save(tmp_path / "run")
    full.save(tmp_path / "run")
    subset = run(["nll"], 1)
    with pytest.raises(OutputError, match=r"\(mmd\).*overwrite=True"):
        subset.save(tmp_path / "run")
    assert held() == {"nll", "mmd"}
    subset.save(tmp_path / "run", overwrite=True)
    assert held() == {"nll"}


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


def test_out_is_refused_when_it_is_a_file_holds_foreign_files_or_cannot_be_written(
        gmbench_cli, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert_clear_error(gmbench_cli("evaluate", MINIMAL, "--metrics", "nll", "--out", a_file),
                       "is a file")
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("# precious")
    assert_clear_error(gmbench_cli("evaluate", MINIMAL, "--metrics", "nll", "--out", project),
                       "did not write", "train.py")
    assert (project / "train.py").read_text() == "# precious"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        assert_clear_error(gmbench_cli("evaluate", MINIMAL, "--metrics", "nll", "--out",
                                       locked / "out"), "cannot write")


def test_the_working_directory_is_refused_as_the_output_folder(write_model, gmbench_cli,
                                                               tmp_path, monkeypatch):
    path = write_model(f"""
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return {LEVELS}
        model = M()
    """)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", ".."):
        run = gmbench_cli("evaluate", path, "--n-samples", "300", "--metrics", "copy_rate",
                          "--out", out)
        assert_clear_error(run, "is the current folder or one holding it")
    assert work.is_dir() and Path.cwd() == work


# ------------------------------------------------------------------ all-or-nothing outputs
def _state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() \
        else {}


@pytest.mark.parametrize("failing_call", range(1, 6))
def test_a_failure_at_any_write_step_leaves_the_old_or_the_new_run(monkeypatch, tmp_path,
                                                                   failing_call):
    from gmbench.run import outputs

    out = tmp_path / "run"
    outputs.write_run(out, {"results.json": b"old json", "results.csv": b"old csv"})
    old = _state(out)
    new_files = {"results.json": b"new json", "results.csv": b"new csv",
                 "samples.png": b"png"}
    calls = {"n": 0}
    real_rename, real_open = os.rename, open

    def counted(fn):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == failing_call:
                raise OSError(28, "No space left on device")
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(outputs.os, "rename", counted(real_rename))
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)  # the two-rename path
    monkeypatch.setattr("builtins.open", counted(real_open))
    with contextlib.suppress(outputs.OutputError):
        outputs.write_run(out, new_files)
    monkeypatch.undo()
    assert _state(out) in (old, new_files)
    outputs.write_run(out, new_files)  # and the next run completes normally
    assert _state(out) == new_files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left behind


KILLER = """
import os, signal, sys
from gmbench.run import outputs
count = {{"n": 0}}
real = os.rename
def rename(a, b):
    count["n"] += 1
    if count["n"] == {at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(a, b)
outputs.os.rename = rename
outputs._exchange = lambda a, b: False
outputs.write_run(sys.argv[1], {{"results.json": b"new json", "results.csv": b"new csv"}})
"""


@pytest.mark.parametrize("at", [1, 2, 3])
def test_a_killed_process_leaves_a_complete_run_that_the_next_run_restores(tmp_path, at):
    from gmbench.run import outputs

    out = tmp_path / "run"
    outputs.write_run(out, {"results.json": b"old json", "results.csv": b"old csv"})
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(at=at))
    proc = subprocess.run([sys.executable, str(script), str(out)], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    outputs.recover(out)
    assert _state(out) in ({"results.json": b"old json", "results.csv": b"old csv"},
                           {"results.json": b"new json", "results.csv": b"new csv"})


# ------------------------------------------------------------------ names
def test_a_model_name_cannot_choose_where_files_go_or_what_the_terminal_does(
        gmbench_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "evil.py"
    model.write_text(textwrap.dedent("""
        import torch
        NAME = "../../escaped\\x1b]0;owned\\x07\\x1b[2J"
        DATASET = "digits"
        class M:
            def log_prob(self, x):
                return torch.full((len(x),), -181.3, dtype=torch.float64)
        model = M()
    """))
    from gmbench.cli import main

    code = main(["evaluate", str(model), "--metrics", "nll"])
    assert code == 0
    written = [p for p in tmp_path.rglob("results.json")]
    assert len(written) == 1 and (tmp_path / "gmbench-out") in written[0].parents
    assert not (tmp_path.parent / "escaped").exists()
    run = gmbench_cli("evaluate", model, "--metrics", "nll")
    assert "\x1b" not in run.out + run.err and "\\x1b" in run.out


def test_a_dataset_name_is_escaped_in_the_table_as_a_model_name_is(write_model, gmbench_cli,
                                                                    tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "my data \u00e9\nv2\x1b[2J.npz"
    np.savez(data, x_train=rng.normal(size=(60, 2)).astype(np.float32),
             x_test=rng.normal(size=(40, 2)).astype(np.float32))
    run = gmbench_cli("evaluate", write_model(toy()), "--dataset", data, "--metrics", "mmd",
                      "--n-samples", "50")
    assert run.code == 0, run.err
    title = run.out.splitlines()[0]
    assert "on my data \u00e9\\nv2\\x1b[2J (seed" in title, run.out
    assert "\x1b" not in run.out


def test_a_long_name_keeps_the_dataset_in_the_default_folder(write_model, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_model(toy('NAME = "m" * 300'))
    from gmbench.cli import main
    assert main(["evaluate", str(path), "--metrics", "mmd", "--n-samples", "50", "--quiet"]) == 0
    (folder,) = (tmp_path / "gmbench-out").iterdir()
    assert folder.name == "m" * 100 + "-gauss-2"


# ------------------------------------------------------------------ files read back
@pytest.mark.parametrize("edit, field", [
    (lambda d: d["metrics"]["nll"].update(higher_is_better="false"), "higher_is_better"),
    (lambda d: d.update(metrics=[1, 2]), "metrics"),
    (lambda d: d.update(metrics=None), "metrics"),
    (lambda d: d["metrics"]["nll"].update(value="12"), "metrics.nll.value"),
    (lambda d: d.update(seed="0"), "seed"),
    (lambda d: d["metrics"]["nll"].update(protocol=0), "protocol"),
    (lambda d: d.update(schema_version=99), "schema_version"),
])
def test_a_damaged_results_file_is_refused_naming_the_field(digits_run, gmbench_cli, tmp_path,
                                                          edit, field):
    data = json.loads((digits_run / "r" / "results.json").read_text())
    edit(data)
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(data))
    board = tmp_path / "board.csv"
    shutil.copyfile(digits_run / "board.csv", board)
    before = board.read_bytes()
    assert_clear_error(gmbench_cli("check", bad, "--against", board, "--model",
                                   "minimal_model"), field)
    assert_clear_error(gmbench_cli("leaderboard", "add", bad, "--board", board), field)
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


def test_a_results_file_with_a_byte_order_mark_is_read(tmp_path):
    from gmbench.storage.results import read_results

    example = Path(__file__).resolve().parents[1] / "data" / "v0.1" / "minimal-digits-results.json"
    with_bom = tmp_path / "bom.json"
    with_bom.write_bytes(b"\xef\xbb\xbf" + example.read_bytes())
    assert read_results(with_bom) == read_results(example)


def test_an_altered_feature_cache_entry_is_recomputed_with_a_warning(gmbench_cli, tmp_path,
                                                                     monkeypatch):
    from gmbench.features.cache import cache_dir

    # A cache of its own: the session's shared one holds other extractors' digits-test entries.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = gmbench_cli("evaluate", MINIMAL, "--metrics", "fid", "--n-samples", "100")
    assert first.code == 0, first.err
    entries = sorted(cache_dir().glob("digits-test-*.safetensors"))
    assert len(entries) == 1, list(cache_dir().iterdir())
    raw = bytearray(entries[0].read_bytes())
    raw[-8:] = b"\x00\x01\x02\x03\x04\x05\x06\x07"  # a few feature bytes changed on disk
    entries[0].write_bytes(bytes(raw))
    second = gmbench_cli("evaluate", MINIMAL, "--metrics", "fid", "--n-samples", "100")
    assert second.code == 0, second.err
    assert "do not match the content hash" in second.err
    assert second.metric("fid")["value"] == first.metric("fid")["value"]


def test_output_cut_short_by_a_closed_pipe_is_not_a_traceback():
    proc = subprocess.run(f"{sys.executable} -m gmbench.cli metrics | head -1", shell=True,
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
