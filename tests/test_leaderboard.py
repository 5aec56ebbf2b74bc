"""Leaderboards: rows, dedupe, canonical bytes, locking, corruption, formula injection."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from gmbench.cli import main
from gmbench.core.direction import Direction
from gmbench.errors import BoardError
from gmbench.present.board import render_board
from gmbench.present.compare import pareto_front, rank_of
from gmbench.storage.leaderboard import (
    COLUMNS,
    add_results,
    latest_rows,
    neutralise,
    read_board,
    rows_from_results,
)

DATASET_SHA = "d" * 64


def results_dict(model: str = "m", *, seed: int = 0, sha: str | None = None,
                 metrics: dict[str, tuple[float, float, bool]] | None = None,
                 started: str = "2026-01-01T00:00:00+00:00", version: str = "0.1.0",
                 dataset_sha: str = DATASET_SHA, n_samples: int = 360) -> dict:
    """A valid ``results.json`` dictionary; ``metrics``: key -> (value, stderr, higher_better)."""
    metrics = metrics or {"nll": (100.0 + seed, 0.5, False), "precision": (0.7, 0.01, True)}
    return {
        "schema_version": 1,
        "model": {"path": f"/x/{model}.py", "sha256": sha or (model.encode().hex() * 64)[:64],
                  "name": model},
        "dataset": {"name": "digits", "kind": "image", "shape": [1, 8, 8], "levels": 17,
                    "num_classes": 10, "sha256": dataset_sha},
        "seed": seed,
        "n_samples": n_samples,
        "metrics": {k: {"value": v, "stderr": se, "ci_low": v - 1.96 * se,
                        "ci_high": v + 1.96 * se, "ci_method": "normal", "n": 360,
                        "unit": "nats" if k == "nll" else "fraction", "higher_is_better": hb,
                        "kind": "exact" if k == "nll" else None,
                        "feature_space": "data" if k == "nll" else "pixels"}
                    for k, (v, se, hb) in metrics.items()},
        "skipped": {},
        "config": {},
        "provenance": {"gmbench_version": version, "started": started},
    }


def write_results(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_rows_carry_every_column_and_round_trip_exactly(tmp_path):
    data = results_dict(metrics={"nll": (0.1 + 0.2, float("nan"), False)})
    for field in ("stderr", "ci_low", "ci_high"):
        data["metrics"]["nll"][field] = None  # results.json writes NaN as null
    board = tmp_path / "b.csv"
    add_results(board, [write_results(tmp_path / "r.json", data)])
    (row,) = read_board(board)
    assert row.value == 0.1 + 0.2  # 0.30000000000000004: no precision lost in the CSV
    assert row.stderr is None and row.n == 360 and row.higher_is_better is False
    assert (row.dataset, row.model, row.metric, row.seed, row.kind) == ("digits", "m", "nll", 0,
                                                                         "exact")
    assert row.dataset_sha256 == DATASET_SHA and row.date == "2026-01-01T00:00:00+00:00"
    assert board.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_readding_leaves_the_board_byte_identical(tmp_path):
    board = tmp_path / "b.csv"
    r0 = write_results(tmp_path / "r0.json", results_dict(seed=0))
    r1 = write_results(tmp_path / "r1.json", results_dict(seed=1))
    first = add_results(board, [r0, r1])
    before, mtime = board.read_bytes(), board.stat().st_mtime_ns
    again = add_results(board, [r1, r0, r0])
    assert (first.added, again.added, again.unchanged) == (4, 0, 6)
    assert board.read_bytes() == before and board.stat().st_mtime_ns == mtime
    assert len(read_board(board)) == 4


def test_board_bytes_do_not_depend_on_the_order_of_adding(tmp_path):
    files = [write_results(tmp_path / f"r{i}.json", results_dict(f"m{i % 3}", seed=i))
             for i in range(6)]
    add_results(tmp_path / "a.csv", files)
    for f in reversed(files):
        add_results(tmp_path / "b.csv", [f])
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_identity_is_model_dataset_metric_seed_feature_space(tmp_path):
    board = tmp_path / "b.csv"
    base = results_dict()
    add_results(board, [write_results(tmp_path / "a.json", base)])
    # a new date and a new value with the same identity: a conflict, kept unless --replace
    changed = results_dict(metrics={"nll": (90.0, 0.5, False)}, started="2026-02-01T00:00:00Z")
    path = write_results(tmp_path / "b.json", changed)
    summary = add_results(board, [path])
    assert (summary.added, summary.unchanged, len(summary.conflicts)) == (0, 0, 1)
    assert {r.metric: r.value for r in read_board(board)}["nll"] == 100.0
    add_results(board, [path], replace=True)
    assert {r.metric: r.value for r in read_board(board)}["nll"] == 90.0
    # another feature space, seed, dataset file or model file: new rows
    other_space = results_dict()
    other_space["metrics"]["precision"]["feature_space"] = "digits-classifier (sha256 abc)"
    for i, data in enumerate([other_space, results_dict(seed=5), results_dict(sha="f" * 64),
                              results_dict(dataset_sha="e" * 64)]):
        add_results(board, [write_results(tmp_path / f"n{i}.json", data)])
    assert len(read_board(board)) == 2 + 1 + 2 + 2 + 2


def _add_many(board: str, paths: list[str]) -> None:
    for p in paths:  # one locked read-modify-write per file: many chances to interleave
        add_results(board, [p])


def test_two_concurrent_adders_lose_no_rows(tmp_path):
    board = str(tmp_path / "b.csv")
    groups = []
    for proc in range(2):
        groups.append([str(write_results(tmp_path / f"p{proc}_{i}.json",
                                         results_dict(f"model{proc}", seed=i)))
                       for i in range(25)])
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_add_many, args=(board, g)) for g in groups]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    rows = read_board(board)
    assert len(rows) == 2 * 25 * 2
    assert {(r.model, r.seed) for r in rows} == {(f"model{p}", i) for p in range(2)
                                                 for i in range(25)}
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_cli_add_and_show(tmp_path, capsys):
    a = write_results(tmp_path / "a.json", results_dict("alpha", metrics={
        "nll": (100.0, 0.5, False), "precision": (0.70, 0.01, True)}))
    b = write_results(tmp_path / "b.json", results_dict("beta", metrics={
        "nll": (90.0, 0.5, False), "precision": (0.60, 0.01, True)}))
    c = write_results(tmp_path / "c.json", results_dict("gamma", metrics={
        "nll": (95.0, 0.5, False), "precision": (0.50, 0.01, True)}))
    board = tmp_path / "b.csv"
    assert main(["leaderboard", "add", str(a), str(b), str(c), "--board", str(board)]) == 0
    assert "added 6 row(s)" in capsys.readouterr().out
    assert main(["leaderboard", "show", "--board", str(board), "--sort", "precision",
                 "--pareto", "nll,precision"]) == 0
    out = capsys.readouterr().out
    names = ("alpha", "beta", "gamma")
    lines = {next(m for m in names if m in ln): ln for ln in out.splitlines()
             if any(m in ln for m in names)}
    assert list(lines) == ["alpha", "beta", "gamma"]  # precision: higher first
    front = {m for m, ln in lines.items() if ln.startswith("*")}
    assert front == {"alpha", "beta"}  # gamma is beaten by beta on both metrics
    # one format per column: 5 significant digits of its largest value, the spread alike
    assert "100.00 ±0.98" in out and " 90.00 ±0.98" in out
    assert main(["leaderboard", "show", "--board", str(board), "--sort", "nl"]) == 2
    assert "Did you mean 'nll'" in capsys.readouterr().err


@pytest.mark.parametrize("points, higher, front", [
    ({"a": (1, 1), "b": (2, 2), "c": (0, 3)}, (True, True), {"b", "c"}),
    ({"a": (1, 1), "b": (2, 2), "c": (0, 3)}, (False, False), {"a", "c"}),
    ({"a": (1, 1), "b": (2, 2), "c": (0, 3)}, (False, True), {"c"}),
    ({"a": (1, 1), "b": (1, 1)}, (True, True), {"a", "b"}),  # ties dominate nobody
])
def test_pareto_front(points, higher, front):
    assert pareto_front(points, [Direction(h) for h in higher]) == front


def test_pareto_front_and_ranks_judge_target_valued_metrics_by_distance_from_the_ideal():
    """A ratio of 0.9 beats 1.5 when the ideal is 1 (distance 0.1 < 0.5), whatever 'higher'."""
    target = Direction(False, ideal=1.0)
    points = {"near": (0.9, 1.0), "far-above": (1.5, 1.0), "far-below": (0.2, 1.0)}
    assert pareto_front(points, [target, Direction(False)]) == {"near"}
    assert rank_of(0.9, [1.5, 0.2, 1.05], direction=target) == 2
    assert rank_of(1.5, [0.9, 0.2], direction=target) == 2
    assert rank_of(3.0, [0.9, 1.5], direction=target) == 3


def test_latest_row_per_model_and_metric_is_shown():
    old = rows_from_results(results_dict(started="2026-01-01T00:00:00+00:00"))
    new = rows_from_results(results_dict(metrics={"nll": (80.0, 0.5, False)}, seed=3,
                                         started="2026-03-01T00:00:00+00:00"))
    chosen = latest_rows(old + new)
    assert chosen[("digits", "m", "nll")].value == 80.0
    assert chosen[("digits", "m", "precision")].value == 0.7  # only in the older run
    shown = render_board(old + new)  # each seed its own line
    assert " 80.00 ±0.98" in shown and "100.00 ±0.98" in shown  # one format per column


def _of_protocol(doc: dict, protocol: int) -> dict:
    """``doc`` with every metric measured under ``protocol``."""
    for rec in doc["metrics"].values():
        rec["protocol"] = protocol
    return doc


def test_the_evaluate_table_neither_ranks_against_nor_names_best_rows_of_another_protocol():
    """Rows of an older protocol version of a metric (its definition changed since) are not
    compared with, as ``gmbench check`` refuses to: no rank against them, never the best
    baseline, and a note says why; a baseline's row of the run's protocol is preferred to a
    more recent one of another."""
    from gmbench.present.compare import compare_with_baselines
    from gmbench.present.table import render_table

    metrics = {"nll": (90.0, 0.5, False), "precision": (0.7, 0.01, True)}
    run = _of_protocol(results_dict("m", metrics=metrics), 2)
    old = _of_protocol(results_dict("old", metrics={"nll": (50.0, 0.5, False),
                                                    "precision": (0.9, 0.01, True)}), 1)
    new = _of_protocol(results_dict("new", metrics={"nll": (95.0, 0.5, False),
                                                    "precision": (0.6, 0.01, True)}), 2)
    stale = _of_protocol(results_dict("new", metrics={"nll": (10.0, 0.5, False),
                                                      "precision": (0.99, 0.01, True)},
                                      started="2026-06-01T00:00:00+00:00"), 1)
    rows = [r for doc in (old, new, stale) for r in rows_from_results(doc)]
    _, comparisons = compare_with_baselines(run, rows)
    for comp in comparisons:
        assert (comp.rank, comp.ranked) == (1, 2), comp.metric  # against new's current row
        assert comp.best() is not None and comp.best()[1].value in (95.0, 0.6)
        assert comp.other_protocol == {"old"}
    table = render_table(run, baselines=rows, board="boards/digits.csv")
    assert "old" not in table.split("\n")[3] and " 1/2 " in table.split("\n")[3]
    assert "not ranked against: old's nll (protocol 1; this run: 2), old's precision" in table
    # only rows of another protocol: no rank at all, and the note says why
    alone = render_table(run, baselines=rows_from_results(old), board="b.csv")
    assert "1/2" not in alone and "old 50" not in alone
    assert ("every baseline was measured under another protocol version of the metric (this "
            "run: protocol 2; the board: 1)") in " ".join(alone.split())


HYPERLINK = '=HYPERLINK("http://x","y")'


def test_formula_cells_are_neutralised(tmp_path, capsys):
    data = results_dict(HYPERLINK, metrics={"+cmd|' /C calc'!A0": (1.0, 0.1, True)})
    data["metrics"]["+cmd|' /C calc'!A0"]["unit"] = "@SUM(1+1)"
    board = tmp_path / "b.csv"
    assert main(["leaderboard", "add", str(write_results(tmp_path / "r.json", data)),
                 "--board", str(board)]) == 0
    with open(board, newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["model"] == "'" + HYPERLINK
    assert row["metric"] == "'+cmd|' /C calc'!A0"
    assert row["unit"] == "'@SUM(1+1)"
    # no cell of the file starts a formula; numbers stay numbers
    cells = [c for line in csv.reader(board.open(newline="")) for c in line]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")]
    assert float(row["value"]) == 1.0
    assert neutralise(neutralise(HYPERLINK)) == neutralise(HYPERLINK)
    # re-adding keeps one row; negative numbers are not mangled
    data["metrics"]["+cmd|' /C calc'!A0"].update(value=-1.0, ci_low=-1.5, ci_high=-0.5)
    add_results(board, [write_results(tmp_path / "r2.json", data)], replace=True)
    assert read_board(board)[0].value == -1.0
    # `check --model` finds the model by its raw or its stored name
    for name in (HYPERLINK, "'" + HYPERLINK):
        assert main(["check", str(tmp_path / "r2.json"), "--against", str(board),
                     "--model", name]) == 0


def _valid_board(tmp_path: Path) -> Path:
    board = tmp_path / "b.csv"
    add_results(board, [write_results(tmp_path / "r.json", results_dict())])
    return board


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[: len(t) - 30], "truncated"),              # cut inside the last row
    (lambda t: t[: t.index("\n") + 40] + "\n", "fields"),   # a row cut short, newline intact
    (lambda t: "", "empty"),
    (lambda t: "name,score\nx,1\n", "not a gmbench leaderboard"),
    (lambda t: t.replace(",100.0,", ",abc,", 1), "not a valid value"),
    (lambda t: t.replace(",false,", ",maybe,", 1), "not a valid value"),
])
def test_corrupt_or_truncated_board_exits_2(tmp_path, capsys, damage, message):
    board = _valid_board(tmp_path)
    damaged = damage(board.read_text())
    board.write_text(damaged)
    with pytest.raises(BoardError, match=message):
        read_board(board)
    results = write_results(tmp_path / "new.json", results_dict(seed=9))
    for argv in (["leaderboard", "show", "--board", str(board)],
                 ["leaderboard", "add", str(results), "--board", str(board)],
                 ["check", str(results), "--against", str(board), "--model", "m"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("gmbench: error:") and message in err
    assert board.read_text() == damaged  # a failed add leaves the board alone


def test_truncated_results_file_exits_2(tmp_path, capsys):
    path = write_results(tmp_path / "r.json", results_dict())
    path.write_text(path.read_text()[:100])
    assert main(["leaderboard", "add", str(path), "--board", str(tmp_path / "b.csv")]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "b.csv").exists()


def test_damaged_results_values_exit_2(tmp_path, capsys):
    data = results_dict()
    data["metrics"]["nll"]["value"] = "abc"
    path = write_results(tmp_path / "r.json", data)
    assert main(["leaderboard", "add", str(path), "--board", str(tmp_path / "b.csv")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "damaged" in err
    del data["model"]["name"]
    data["metrics"]["nll"]["value"] = 1.0
    write_results(path, data)
    assert main(["leaderboard", "add", str(path), "--board", str(tmp_path / "b.csv")]) == 2


def test_board_saved_by_a_spreadsheet_with_bom_and_crlf_reads(tmp_path):
    board = _valid_board(tmp_path)
    text = board.read_text()
    board.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert read_board(board) == read_board(_valid_board(tmp_path / "fresh"))


BOARDS = sorted((Path(__file__).resolve().parents[1] / "leaderboards").glob("*.csv"))


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.stem)
def test_committed_boards_show_in_120_columns_with_references_apart(board):
    rows = read_board(board)
    text = render_board(rows, pareto=("precision", "recall") if any(
        r.metric == "recall" for r in rows) else None)
    assert max(len(line) for line in text.splitlines()) <= 120
    wide = render_board(rows, width=None)
    assert max(len(line) for line in wide.splitlines()) > 120  # --wide: everything, one table
    for line in text.splitlines():
        if "(ref)" in line and not line.startswith(("values", "  ")):
            assert not line.startswith("*"), line  # a reference is never on a front
    if any(r.model == "memorizer" for r in rows):
        assert "memorizer (ref)" in text


def test_show_separates_sample_counts_and_seeds_and_prints_bounds_as_bounds():
    runs = [rows_from_results(results_dict("m", seed=s, n_samples=n, metrics={
        "fid": (f, 0.5, False), "tv_lower_bound": (0.3, 0.1, False)},
        started=f"2026-0{s + 1}-01T00:00:00+00:00")) for s, n, f in ((0, 2000, 2331.5),
                                                                     (1, 10000, 6.76))]
    text = render_board([r for run in runs for r in run])
    lines = [ln for ln in text.splitlines() if ln.startswith("  m ")]
    assert len(lines) == 2  # each run its own line: the two seeds and sample counts
    assert "2000" in lines[0] and "10000" in lines[1]
    assert "2331.5 ±1.0" in lines[0] and "   6.8 ±1.0" in lines[1]  # one format per column
    assert lines[0].endswith("≥0.30000") and lines[1].endswith("≥0.30000")  # a bound, no ±
    assert "runs differ in their number of samples (2000, 10000)" in " ".join(text.split())


def test_boards_without_the_reference_column_read_memorizer_and_truth_as_references(tmp_path):
    """A board written before the ``reference`` column (the committed example board is one)
    reads; its rows of the bundled reference models are references by name, the rest not;
    the next write adds the column."""
    from gmbench.storage.leaderboard import COLUMNS, COLUMNS_V3, format_board, parse_board

    rows = rows_from_results(results_dict("memorizer")) + rows_from_results(results_dict("m"))
    text = format_board(rows)
    header, *lines = text.splitlines()
    assert header.split(",")[-1] == "reference"
    old = "\n".join([",".join(COLUMNS_V3)] + [ln.rsplit(",", 1)[0] for ln in lines]) + "\n"
    read = parse_board(old)
    assert {r.model: bool(r.reference) for r in read} == {"memorizer": True, "m": False}
    example = read_board(Path(__file__).resolve().parents[1] / "examples"
                         / "minimal_model-digits.csv")
    assert example and not any(r.reference for r in example)
    board = tmp_path / "b.csv"
    board.write_text(old)
    assert main(["leaderboard", "add", str(write_results(
        tmp_path / "r.json", results_dict("n"))), "--board", str(board)]) == 0
    assert board.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert {r.model for r in read_board(board) if r.reference} == {"memorizer"}
