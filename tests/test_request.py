"""A run's request: one definition behind ``gmbench evaluate``, ``gmbench sweep``,
``gmbench.evaluate`` and ``gmbench.sweep``."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

import gmbench
from gmbench.cli import build_parser
from gmbench.run.request import COMMANDS, OptionError, RunRequest, request_options
from gmbench.run.sweeps import Job, finished

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "examples" / "minimal_model.py"


def _flags(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    flags = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    return (flags | {a.dest for a in parser._actions if not a.option_strings}) - {"--help"}


def _documented(kind: str) -> set[str]:
    """The flags docs/sweeps.md lists as ``evaluate only`` or ``sweep only``."""
    text = (ROOT / "docs" / "sweeps.md").read_text()
    item = re.search(rf"^- {kind} only: (.+?)(?=^- |^$)", text, re.M | re.S)
    assert item, f"docs/sweeps.md lists no '{kind} only' options"
    return set(re.findall(r"`(--[a-z-]+)`", item.group(1)))


def test_evaluate_and_sweep_offer_the_same_options_but_the_documented_ones():
    evaluate, sweep = _flags("evaluate") - {"model"}, _flags("sweep") - {"models"}
    assert evaluate - sweep == _documented("evaluate")
    assert sweep - evaluate == _documented("sweep")
    # the documented sweep-only options are the sweep's own, not an evaluation's
    every_field = {f"--{f.name.replace('_', '-')}" for f in fields(RunRequest)}
    assert not (_documented("sweep") - {"--seeds", "--datasets"}) & every_field


@pytest.mark.parametrize("command", COMMANDS)
def test_every_request_option_reaches_the_request(command):
    """Each option a command offers lands in the request's field of its name."""
    parser = build_parser()
    for f in request_options(command):
        flag = f"--{f.name.replace('_', '-')}"
        option = f.metadata["option"]
        value = {"metrics": "nll,fid", "memory": "7K"}.get(f.name, "7")
        base = ["evaluate", "m.py"] if command == "evaluate" else [
            "sweep", "m.py", "--datasets", "digits", "--board", "b.csv"]
        args = parser.parse_args([*base, flag] if option.switch else [*base, flag, value])
        from gmbench.run.request import given
        got = getattr(RunRequest(**given(args, command)), f.name)
        expected = {"metrics": ("nll", "fid"), "memory": 7 * 1024}.get(
            f.name, True if option.switch else 7 if option.parse is int
            else 7.0 if option.parse is float else "7")
        assert got == expected and type(got) is type(expected), f.name


@pytest.mark.parametrize("name", [f.name for f in fields(RunRequest)
                                  if f.metadata.get("option") and
                                  f.metadata["option"].low is not None])
def test_a_whole_number_below_its_limit_is_refused_alike_by_the_api_and_the_command(
        name, gmbench_cli):
    low = next(f for f in fields(RunRequest) if f.name == name).metadata["option"].low
    with pytest.raises(OptionError, match=rf"^{name} must be a whole number of at least {low}, "
                                          rf"got {low - 1}\.$"):
        RunRequest(**{name: low - 1}).check()
    flag = f"--{name.replace('_', '-')}"
    command = "evaluate" if "evaluate" in next(
        f for f in fields(RunRequest) if f.name == name).metadata["option"].commands else "sweep"
    run = gmbench_cli(command, str(MINIMAL), flag, str(low - 1), *(
        ["--datasets", "digits", "--board", "b.csv"] if command == "sweep" else []))
    assert run.code == 2
    assert f"{flag} must be a whole number of at least {low}, got {low - 1}" in run.err


def test_limits_types_and_recorded_options():
    with pytest.raises(OptionError, match="dequant_samples must be at most 1024"):
        RunRequest(dequant_samples=1025).check()
    with pytest.raises(OptionError, match="seed must be at most"):
        RunRequest(seed=2**63).check()
    with pytest.raises(OptionError, match="unknown option.*n_sample\\b"):
        RunRequest().with_options(n_sample=3)
    with pytest.raises(OptionError, match="metrics must be a non-empty list"):
        RunRequest(metrics="nll").check()
    request = RunRequest(metrics=iter(["nll"]), n_samples=__import__("numpy").int64(50))
    assert request.metrics == ("nll",) and type(request.n_samples) is int
    assert list(RunRequest().config()) == ["seed", "n_samples", "batch_size",
                                           "dequant_samples", "max_train", "device",
                                           "feature_extractor", "inception_weights"]


def test_a_sweep_passes_every_evaluation_option_and_resumes_on_the_whole_request(tmp_path):
    """``--dequant-samples``, ``--max-train`` and ``--batch-size`` (which 0.2's sweep could
    not pass) reach the evaluation's recorded config; a finished run whose recorded options
    differ from the request is evaluated again."""
    kwargs = dict(board=tmp_path / "b.csv", out=tmp_path / "runs", metrics=["nll"],
                  runner="serial", progress=False)
    report = gmbench.sweep([MINIMAL], "digits", "0", batch_size=7, max_train=50,
                           dequant_samples=2, **kwargs)
    assert report.count("done") == 1
    doc = json.loads(next((tmp_path / "runs").glob("*/results.json")).read_text())
    assert doc["config"]["batch_size"] == 7 and doc["config"]["max_train"] == 50
    summary = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert summary["options"]["batch_size"] == 7 and summary["options"]["metrics"] == ["nll"]
    again = dict(batch_size=7, max_train=50, dequant_samples=2)
    assert gmbench.sweep([MINIMAL], "digits", "0", **again, **kwargs).count("skipped") == 1
    assert gmbench.sweep([MINIMAL], "digits", "0", **{**again, "max_train": 60},
                         **kwargs).count("done") == 1
    job = Job(RunRequest(model=str(MINIMAL), dataset="digits", seed=0, max_train=60,
                         batch_size=7, dequant_samples=2, metrics=("nll",)),
              report.outcomes[0].job.folder)
    assert finished(job, tmp_path / "runs")
    assert not finished(Job(RunRequest(model=str(MINIMAL), dataset="digits", seed=1),
                            job.folder), tmp_path / "runs")


def test_an_empty_metric_list_is_refused_by_every_command_that_takes_one(gmbench_cli, tmp_path):
    board = ["--board", str(tmp_path / "b.csv"), "--datasets", "digits"]
    for args in (["evaluate", str(MINIMAL)], ["sweep", str(MINIMAL), *board],
                 ["check", str(tmp_path / "r.json"), "--against", "b.csv", "--model", "m"]):
        run = gmbench_cli(*args, "--metrics", "")
        assert run.code == 2 and "--metrics is empty" in run.err, (args, run.err)
