"""Reading and writing board CSV files: impossible values in a row, rows repeating or contradicting
one evaluation, a rerun that reproduces every number, blank lines, symbolic links, file modes
and read-only boards, dangling links, names with line breaks, and boards holding several
datasets."""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from cli_errors import assert_clear_error
from helpers import ROOT, V01, _check, _edited

from gmbench.cli import main
from gmbench.storage.leaderboard import add_results, read_board


# ------------------------------------------------------------------ rows
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


def test_duplicate_rows_already_on_a_board_are_reported(digits_run, gmbench_cli, tmp_path):
    board = tmp_path / "dup.csv"
    lines = (digits_run / "board.csv").read_text().splitlines(keepends=True)
    board.write_text("".join(lines + lines[1:2]))  # one data row twice
    run = gmbench_cli("leaderboard", "add", V01 / "minimal-digits-results.json",
                      "--board", board)
    assert run.code == 0, run.err
    assert "held 1 row(s) repeating another row's identity" in run.out
    assert len(read_board(board)) == len(lines) - 1 + 5


def test_conflicting_rows_of_one_evaluation_are_reported_by_show_and_check(gate, capsys):
    lines = gate["board"].read_text().splitlines(keepends=True)
    row = next(line for line in lines if ",nll," in line)
    cells = row.split(",")
    header = lines[0].split(",")
    for column in ("value", "ci_low", "ci_high"):
        cells[header.index(column)] = str(float(cells[header.index(column)]) + 1)
    merged = gate["root"] / "merged.csv"
    merged.write_text("".join(lines) + ",".join(cells))
    code, out = _check(capsys, gate["results"], merged)
    assert "indep/nll (seed 0): 2 rows of one evaluation disagree" in out
    capsys.readouterr()
    assert main(["leaderboard", "show", "--board", str(merged)]) == 0
    assert "2 rows of one evaluation disagree" in capsys.readouterr().out


def test_re_adding_a_rerun_that_reproduces_every_number_is_not_a_conflict(gate, capsys):
    later = _edited(gate, "later.json",
                    lambda d: d["provenance"].update(started="2099-01-01T00:00:00+00:00"))
    summary = add_results(gate["board"], [later])
    assert (summary.added, summary.unchanged, summary.conflicts) == (0, 3, ())


def test_blank_lines_in_a_board_are_skipped_and_the_rows_kept(gate, tmp_path):
    from gmbench.storage.leaderboard import read_board

    text = gate["board"].read_text()
    spaced = tmp_path / "spaced.csv"
    lines = text.splitlines(keepends=True)
    spaced.write_text(lines[0] + "\n" + "".join(lines[1:]) + "\n\n")
    assert read_board(spaced) == read_board(gate["board"])


# ------------------------------------------------------------------ links and modes
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


def test_a_dangling_board_link_creates_no_folders(board_and_results, gmbench_cli, tmp_path):
    _, results = board_and_results
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "missing" / "deeper" / "board.csv")
    assert_clear_error(gmbench_cli("leaderboard", "add", results, "--board", link),
                       "symbolic link")
    assert not (tmp_path / "missing").exists()


# ------------------------------------------------------------------ showing a board
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
