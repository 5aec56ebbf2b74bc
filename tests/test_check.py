"""The regression gate: the verdict rule as a pure function, and `gmbench check` end to end
on real evaluations of a small model on digits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import gmbench
from gmbench.cli import main
from gmbench.direction import Direction
from gmbench.errors import BoardError
from gmbench.storage.check import Tolerance, judge, parse_tolerances
from gmbench.storage.leaderboard import add_results

# The independent per-pixel categorical of examples/ (digits, Laplace smoothing):
# exact likelihoods with real normal CIs over the 360 test images.
INDEPENDENT = (Path(__file__).resolve().parents[1] / "examples"
               / "minimal_model.py").read_text()
METRICS = "nll,nll_train,generalization_gap,bits_per_dim,perplexity"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """results.json of seeds 0 and 1 (``--max-train 400``: a seed-dependent train subset, so
    ``nll_train`` and ``generalization_gap`` differ between the seeds), and a board of seed 0."""
    root = tmp_path_factory.mktemp("check")
    model = root / "indep.py"
    model.write_text(INDEPENDENT)
    paths = {}
    for seed in (0, 1):
        out = root / f"seed{seed}"
        assert main(["evaluate", str(model), "--metrics", METRICS, "--seed", str(seed),
                     "--max-train", "400", "--out", str(out)]) == 0
        paths[f"seed{seed}"] = out / "results.json"
    paths["board"] = root / "board.csv"
    add_results(paths["board"], [paths["seed0"]])
    return paths


def check(capsys, results: Path, board: Path, *extra: str, model: str = "indep"
          ) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", str(results), "--against", str(board), "--model", model, *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def worsened(src: Path, dst: Path, metric: str, factor: float) -> Path:
    data = json.loads(src.read_text())
    rec = data["metrics"][metric]
    for field in ("value", "ci_low", "ci_high"):
        rec[field] *= factor
    dst.write_text(json.dumps(data))
    return dst


# ------------------------------------------------------------------ the rule, pure
@pytest.mark.parametrize("new, hib, tol, status", [
    (10.0, False, 0.0, "pass"),          # unchanged
    (10.5, False, 0.0, "pass"),          # worse by 0.5 < noise 1.96*sqrt(0.2^2+0.2^2)=0.554
    (10.6, False, 0.0, "regression"),    # worse by 0.6 > noise 0.554 and > tolerance 0
    (10.6, False, 1.0, "pass"),          # beyond the noise but within the tolerance
    (12.0, False, 1.0, "regression"),    # beyond both
    (9.4, False, 0.0, "improved"),       # better by more than the noise
    (9.4, True, 0.0, "regression"),      # the same numbers when higher is better
    (10.6, True, 0.0, "improved"),
    (None, False, 5.0, "regression"),    # no longer finite
])
def test_judge_rule(new, hib, tol, status):
    v = judge(metric="m", new=new, new_stderr=0.2, reference=10.0, reference_stderr=0.2,
              direction=Direction(hib), tolerance=tol)
    assert v.noise == pytest.approx(1.959963984540054 * math.sqrt(0.08))
    assert v.status == status
    assert v.failed == (status == "regression")


def test_judge_without_reference_is_new():
    v = judge(metric="m", new=1.0, new_stderr=0.1, reference=None, reference_stderr=0.0,
              direction=Direction(True))
    assert v.status == "new" and not v.failed


def test_tolerances_parse_absolute_relative_and_default():
    tol = parse_tolerances(["fid=2.5", "precision=5%", "*=1e-3"])
    assert tol == {"fid": Tolerance(2.5), "precision": Tolerance(5.0, relative=True),
                   "*": Tolerance(1e-3)}
    assert tol["precision"].of(-0.8) == pytest.approx(0.04)
    for bad in ("fid", "fid=abc", "=3"):
        with pytest.raises(BoardError, match="KEY=VALUE"):
            parse_tolerances([bad])
    with pytest.raises(BoardError, match="negative, infinite and nan values are refused"):
        parse_tolerances(["fid=-1"])


# ------------------------------------------------------------------ end to end
def test_rerun_with_another_seed_passes(runs, capsys):
    a = json.loads(runs["seed0"].read_text())["metrics"]
    b = json.loads(runs["seed1"].read_text())["metrics"]
    assert a["nll_train"]["value"] != b["nll_train"]["value"]  # the seeds really differ
    assert a["nll"]["stderr"] > 0 and b["nll_train"]["stderr"] > 0
    code, out = check(capsys, runs["seed1"], runs["board"])
    assert code == 0, out
    verdicts = [ln for ln in out.splitlines() if ln.split()[0] in ("pass", "improved")]
    assert len(verdicts) == 5  # one verdict line per metric
    assert "0 regression(s) in 5 metric(s)" in out


def test_metric_made_25_percent_worse_fails(runs, capsys, tmp_path):
    bad = worsened(runs["seed1"], tmp_path / "worse.json", "bits_per_dim", 1.25)
    code, out = check(capsys, bad, runs["board"])
    assert code == 1, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("REGRESSION")]
    assert "bits_per_dim" in line and "worse by" in line
    assert "1 regression(s) in 5 metric(s)" in out and "FAIL" in out
    # accepted when the tolerance covers it: 25% worse is within 30% of the reference
    code, out = check(capsys, bad, runs["board"], "--tolerance", "bits_per_dim=30%")
    assert code == 0, out
    # and an improvement of 25% passes
    good = worsened(runs["seed1"], tmp_path / "better.json", "bits_per_dim", 0.75)
    code, out = check(capsys, good, runs["board"])
    assert code == 0 and "improved" in out


def test_bad_input_exits_2(runs, capsys, tmp_path):
    code, out = check(capsys, runs["seed1"], runs["board"], model="indpe")
    assert code == 2 and "Did you mean 'indep'" in out
    code, out = check(capsys, runs["seed1"], runs["board"], "--tolerance", "bpd=1")
    assert code == 2 and "bpd" in out
    code, out = check(capsys, tmp_path / "missing.json", runs["board"])
    assert code == 2 and "does not exist" in out
    truncated = tmp_path / "t.csv"
    text = runs["board"].read_text()
    truncated.write_text(text[: len(text) // 2])
    code, out = check(capsys, runs["seed1"], truncated)
    assert code == 2 and "truncated" in out


def test_provenance_differences_are_warned(runs, capsys, tmp_path):
    data = json.loads(runs["seed1"].read_text())
    data["dataset"]["sha256"] = "0" * 64
    data["provenance"]["gmbench_version"] = "9.9.9"
    data["metrics"]["nll"]["kind"] = "lower_bound"
    path = tmp_path / "moved.json"
    path.write_text(json.dumps(data))
    code, out = check(capsys, path, runs["board"])
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning:")]
    assert code == 0
    assert any("dataset sha256 differs" in w for w in warnings)
    assert any(f"gmbench version differs: new 9.9.9, reference {gmbench.__version__}" in w
               for w in warnings)
    assert any("nll: likelihood kind differs" in w for w in warnings)
    code, out = check(capsys, runs["seed1"], runs["board"])
    assert "warning:" not in out


def test_uncertainty_of_a_rate_at_zero_comes_from_its_interval():
    """copy_rate 0 of 360 has stderr 0 but a Clopper-Pearson interval [0, 0.0102]: one copied
    sample (1/360) is within the noise, not a regression."""
    from gmbench.storage.leaderboard import rows_from_results

    def run(value: float, stderr: float | None, low: float, high: float) -> dict:
        return {"model": {"name": "m", "sha256": "a" * 64}, "seed": 0, "n_samples": 360,
                "dataset": {"name": "digits", "sha256": "d" * 64}, "provenance": {},
                "metrics": {"copy_rate": {"value": value, "stderr": stderr, "ci_low": low,
                                          "ci_high": high, "n": 360, "unit": "fraction",
                                          "higher_is_better": False}}}

    (ref,) = rows_from_results(run(0.0, 0.0, 0.0, 0.010195))
    (new,) = rows_from_results(run(1 / 360, math.sqrt(1 / 360 * 359 / 360 / 360), 7.0e-5, 0.0154))
    (no_se,) = rows_from_results(run(1.0, None, 0.8, 1.2))
    assert ref.sigma == pytest.approx(0.010195 / 2 / 1.959963984540054)
    assert new.sigma == pytest.approx((0.0154 - 7.0e-5) / 2 / 1.959963984540054)  # > stderr
    assert no_se.sigma == pytest.approx(0.2 / 1.959963984540054)
    v = judge(metric="copy_rate", new=new.value, new_stderr=new.sigma, reference=ref.value,
              reference_stderr=ref.sigma, direction=Direction(False))
    assert v.status == "pass" and v.worse_by == pytest.approx(1 / 360)
