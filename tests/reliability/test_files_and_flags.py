"""Files and flags (issue 12): every file gmbench reads is validated, every write is all or
nothing and keeps what it replaces intact, names are safe for paths and terminals, and every
bad flag is one clear error line with exit status 2."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_errors import assert_clear_error

from gmbench.storage.leaderboard import add_results, read_board

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "examples" / "minimal_model.py"
V01 = ROOT / "tests" / "data" / "v0.1"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """One small, real results.json (and the board holding it)."""
    from gmbench.cli import main

    out = tmp_path_factory.mktemp("run")
    assert main(["evaluate", str(MINIMAL), "--metrics", "nll,bits_per_dim,precision",
                 "--n-samples", "200", "--out", str(out / "r")]) == 0
    add_results(out / "board.csv", [out / "r" / "results.json"])
    return out


# ------------------------------------------------------------------ results files
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


def test_an_altered_feature_cache_entry_is_recomputed_with_a_warning(gmbench_cli):
    from gmbench.features.cache import cache_dir

    first = gmbench_cli("evaluate", MINIMAL, "--metrics", "fid", "--n-samples", "100")
    assert first.code == 0, first.err
    entries = sorted(cache_dir().glob("digits-test-*.safetensors"))
    assert entries, list(cache_dir().iterdir())
    raw = bytearray(entries[0].read_bytes())
    raw[-8:] = b"\x00\x01\x02\x03\x04\x05\x06\x07"  # a few feature bytes changed on disk
    entries[0].write_bytes(bytes(raw))
    second = gmbench_cli("evaluate", MINIMAL, "--metrics", "fid", "--n-samples", "100")
    assert second.code == 0, second.err
    assert "do not match the content hash" in second.err
    assert second.metric("fid")["value"] == first.metric("fid")["value"]


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


# ------------------------------------------------------------------ boards
def test_board_writes_keep_the_link_the_mode_and_refuse_read_only_boards(digits_run,
                                                                       gmbench_cli, tmp_path):
    results = V01 / "minimal-digits-results.json"
    real = tmp_path / "real.csv"
    shutil.copyfile(digits_run / "board.csv", real)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    real.chmod(0o600)
    run = gmbench_cli("leaderboard", "add", results, "--board", link)
    assert run.code == 0, run.err
    assert link.is_symlink() and link.resolve() == real
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert len(read_board(real)) > len(read_board(digits_run / "board.csv"))
    frozen = tmp_path / "frozen.csv"
    shutil.copyfile(digits_run / "board.csv", frozen)
    frozen.chmod(0o444)
    before = frozen.read_bytes()
    assert_clear_error(gmbench_cli("leaderboard", "add", results, "--board", frozen),
                       "read-only")
    assert frozen.read_bytes() == before and stat.S_IMODE(frozen.stat().st_mode) == 0o444


def test_duplicate_rows_already_on_a_board_are_reported(digits_run, gmbench_cli, tmp_path):
    board = tmp_path / "dup.csv"
    lines = (digits_run / "board.csv").read_text().splitlines(keepends=True)
    board.write_text("".join(lines + lines[1:2]))  # one data row twice
    run = gmbench_cli("leaderboard", "add", V01 / "minimal-digits-results.json",
                      "--board", board)
    assert run.code == 0, run.err
    assert "held 1 row(s) repeating another row's identity" in run.out
    assert len(read_board(board)) == len(lines) - 1 + 5


def test_pareto_on_a_board_of_several_datasets(gmbench_cli, tmp_path, write_model):
    board = tmp_path / "mixed.csv"
    shutil.copyfile(ROOT / "leaderboards" / "digits.csv", board)
    add_results(board, [V01 / "minimal-digits-results.json"])
    gauss = write_model("""
        import torch
        DATASET = "gauss-2"
        model = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    """)
    run = gmbench_cli("evaluate", gauss, "--metrics", "cross_entropy,mmd", "--n-samples", "200")
    add_results(board, [run.dir / "results.json"])
    show = gmbench_cli("leaderboard", "show", "--board", board, "--pareto", "precision,recall")
    assert show.code == 0, show.err
    assert "gauss-2" in show.out and "digits" in show.out


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


# ------------------------------------------------------------------ flags and inputs
@pytest.mark.parametrize("args, needle", [
    (("--n-samples", "1"), "--n-samples 1 is too few"),
    (("--n-samples", "2", "--metrics", "fid"), "--n-samples 2 is too few"),
    (("--n-samples", "1000000000"), "--n-samples 1000000000"),
    (("--device", "meta"), "--device 'meta' is not supported"),
    (("--device", "tpu7"), "is not a device"),
    (("--metrics", ""), "--metrics is empty"),
    (("--metrics", "fid,nl"), "Did you mean 'nll'"),
])
def test_bad_flags_are_one_clear_line(gmbench_cli, args, needle):
    assert_clear_error(gmbench_cli("evaluate", MINIMAL, *args), needle)


def test_cpu_zero_is_the_cpu(gmbench_cli):
    run = gmbench_cli("evaluate", MINIMAL, "--device", "cpu:0", "--metrics", "nll")
    assert run.code == 0, run.err
    assert run.results["provenance"]["device"] == "cpu"


def test_unreadable_or_odd_model_paths(gmbench_cli, tmp_path):
    assert_clear_error(gmbench_cli("evaluate", tmp_path), "is a directory")
    if os.geteuid() != 0:
        secret = tmp_path / "secret.py"
        secret.write_text("model = None\n")
        secret.chmod(0o000)
        assert_clear_error(gmbench_cli("evaluate", secret), "cannot be read")


def test_output_cut_short_by_a_closed_pipe_is_not_a_traceback():
    proc = subprocess.run(f"{sys.executable} -m gmbench.cli metrics | head -1", shell=True,
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
