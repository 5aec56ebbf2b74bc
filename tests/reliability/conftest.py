"""Fixtures shared by the reliability tests: a real results file and the board holding it,
made once per module (``digits_run``, ``gate``) or for each test (``board_and_results``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MINIMAL, toy

from gmbench.cli import main
from gmbench.storage.leaderboard import add_results

INDEPENDENT = (Path(__file__).resolve().parents[2] / "examples" / "minimal_model.py").read_text()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """One small, real results.json (and the board holding it)."""
    from gmbench.cli import main

    out = tmp_path_factory.mktemp("run")
    assert main(["evaluate", str(MINIMAL), "--metrics", "nll,bits_per_dim,precision",
                 "--n-samples", "200", "--out", str(out / "r")]) == 0
    add_results(out / "board.csv", [out / "r" / "results.json"])
    return out


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> dict[str, Path]:
    """A results file of the example model on digits and a board holding it."""
    root = tmp_path_factory.mktemp("gate")
    model = root / "indep.py"
    model.write_text(INDEPENDENT)
    out = root / "run"
    assert main(["evaluate", str(model), "--metrics", "nll,bits_per_dim,copy_rate", "--out",
                 str(out), "--n-samples", "500"]) == 0
    board = root / "board.csv"
    add_results(board, [out / "results.json"])
    return {"results": out / "results.json", "board": board, "root": root}


@pytest.fixture()
def board_and_results(write_model, gmbench_cli, tmp_path):
    path = write_model(toy('NAME = "toy"'))
    run = gmbench_cli("evaluate", path, "--metrics", "nll,mmd", "--n-samples", "50")
    assert run.code == 0, run.err
    board = tmp_path / "board.csv"
    assert gmbench_cli("leaderboard", "add", run.dir / "results.json", "--board",
                       board).code == 0
    return board, run.dir / "results.json"
