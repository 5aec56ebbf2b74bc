"""The regression gate's documented false-alarm rate and power come from one command
(``python benchmarks/gate_calibration.py``), whose figures are committed in
``benchmarks/results/gate_calibration.json``: the docs (``docs/gate.md``) quote exactly them, they were
measured on the committed digits board, and they meet the acceptance."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "benchmarks" / "results" / "gate_calibration.json"


def _calibration():
    spec = importlib.util.spec_from_file_location("gate_calibration",
                                                  ROOT / "benchmarks" / "gate_calibration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_quotes_the_committed_figures():
    figures = json.loads(FIGURES.read_text())
    readme = (ROOT / "docs" / "gate.md").read_text()
    start = readme.index("<!-- gate-calibration: python benchmarks/gate_calibration.py --readme -->")
    end = readme.index("<!-- /gate-calibration -->")
    quoted = readme[start:end].split("\n", 1)[1].strip("\n") + "\n"
    assert quoted == _calibration().readme_block(figures), (
        "docs/gate.md's figures differ from benchmarks/results/gate_calibration.json: paste "
        "the output of `python benchmarks/gate_calibration.py --readme`")


def test_the_figures_were_measured_on_the_committed_board_and_meet_the_acceptance():
    figures = json.loads(FIGURES.read_text())
    board = ROOT / figures["board"]
    # the numbers the gate reads (values, standard errors between runs, per-example files,
    # weights, options): a re-recording that reproduces them keeps the calibration
    assert figures["board_fingerprint"] == _calibration().board_fingerprint(board), (
        "the digits board's numbers changed since the gate was calibrated: re-run "
        "`python benchmarks/gate_calibration.py --reproduce` and update docs/gate.md")
    for key in ("false_alarms_board", "false_alarms_pair"):
        assert figures[key]["alarms"] <= figures[key]["allowed"], key
    assert figures["false_alarms_board"]["runs"] >= 44
    assert figures["false_alarms_pair"]["runs"] >= 200
    for case in figures["power"].values():
        assert case["failed_at"] >= case["acceptance"], case
    assert not figures["reproduction"]["failing"]
