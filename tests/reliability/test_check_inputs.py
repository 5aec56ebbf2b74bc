"""What `gmbench check` accepts and how it judges: a gated metric missing from the results, a
direction or ideal edited in a results file, a value outside its own interval, tolerances that
are not finite, warnings when the sample count or evaluation options differ, differences of
float rounding on a metric without variance, and an exit status that still gives the verdict
when the reader of its output leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cli_errors import assert_clear_error
from helpers import ROOT, _check, _edited, assert_clear_error_text

from gmbench.storage.leaderboard import add_results


def test_a_gated_metric_missing_from_the_results_fails(gate, capsys):
    dropped = _edited(gate, "dropped.json", lambda d: d["metrics"].pop("nll"))
    code, out = _check(capsys, dropped, gate["board"])
    assert code == 1 and "1 gated metric(s) missing" in out and "FAIL" in out
    empty = _edited(gate, "empty.json", lambda d: d.__setitem__("metrics", {}))
    code, out = _check(capsys, empty, gate["board"])
    assert code == 1 and "3 gated metric(s) missing" in out
    # gating only what was evaluated passes; naming an unknown metric is bad input
    code, out = _check(capsys, dropped, gate["board"], "--metrics", "bits_per_dim, copy_rate")
    assert code == 0 and "0 regression(s) in 2 metric(s)" in out
    code, out = _check(capsys, dropped, gate["board"], "--metrics", "bits_per_dimm")
    assert code == 2 and "did you mean" in out.lower()


@pytest.mark.parametrize("edit", [
    lambda rec: rec.update(higher_is_better=True),
    lambda rec: rec.update(ideal=3.0),
])
def test_an_edited_direction_is_refused_not_judged_backwards(gate, capsys, edit):
    """A 50-nat nll regression with `higher_is_better` flipped to true used to pass."""
    def worse(d: dict) -> None:
        rec = d["metrics"]["nll"]
        for f in ("value", "ci_low", "ci_high"):
            rec[f] += 50
        edit(rec)
    code, out = _check(capsys, _edited(gate, "flipped.json", worse), gate["board"])
    assert_clear_error_text(code, out, "nll", "was edited")


def test_a_value_outside_its_own_interval_is_refused_in_results_and_boards(gate, capsys):
    def outside(d: dict) -> None:
        rec = d["metrics"]["nll"]
        rec["value"] = rec["ci_high"] + 1.0
    bad = _edited(gate, "outside.json", outside)
    code, out = _check(capsys, bad, gate["board"])
    assert_clear_error_text(code, out, "outside its own 95% interval")
    board = gate["root"] / "outside.csv"
    lines = gate["board"].read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    row = next(i for i, line in enumerate(lines) if ",nll," in line)
    cells = lines[row].rstrip("\n").split(",")
    cells[header.index("value")] = str(float(cells[header.index("ci_high")]) + 1.0)
    lines[row] = ",".join(cells) + "\n"
    board.write_text("".join(lines))
    code, out = _check(capsys, gate["results"], board)
    assert_clear_error_text(code, out, "outside its own 95% interval", f"line {row + 1}")


def test_infinite_tolerance_is_refused(board_and_results, gmbench_cli):
    board, results = board_and_results
    assert_clear_error(gmbench_cli("check", results, "--against", board, "--model", "toy",
                                   "--tolerance", "nll=1e999"), "finite")


def test_a_check_warns_when_the_sample_count_or_options_differ(gate, capsys):
    def edit(d: dict) -> None:
        d["n_samples"] = d["config"]["n_samples"] = 2000
        d["config"]["dequant_samples"] = 4
    code, out = _check(capsys, _edited(gate, "counts.json", edit), gate["board"])
    assert "sample count differs: new 2000, reference 500" in out
    assert "evaluation options differ" in out and '"dequant_samples":4' in out.replace(" ", "")


def test_differences_of_float_rounding_do_not_fail_a_zero_variance_metric(gate, capsys):
    def nudge(rel: float):
        def edit(d: dict) -> None:
            rec = d["metrics"]["copy_rate"]
            rec.update(value=0.25, ci_low=0.25, ci_high=0.25, stderr=0.0)
            d["metrics"]["copy_rate"] = rec
            d["_rel"] = rel
        return edit
    board = gate["root"] / "zero.csv"
    add_results(board, [_edited(gate, "zero.json", nudge(0.0))])
    for rel, code_wanted in ((1e-9, 0), (1e-3, 1)):
        def edit(d: dict, rel: float = rel) -> None:
            nudge(0.0)(d)
            d["metrics"]["copy_rate"].update(value=0.25 * (1 + rel), ci_low=0.25 * (1 + rel),
                                             ci_high=0.25 * (1 + rel))
        code, out = _check(capsys, _edited(gate, f"z{rel}.json", edit), board)
        assert code == code_wanted, (rel, out)


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
