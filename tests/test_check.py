"""The regression gate: the verdict rule as a pure function, and `gmbench check` end to end
on real evaluations of a small model on digits."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import gmbench
from gmbench.cli import main
from gmbench.core.direction import Direction
from gmbench.errors import BoardError
from gmbench.gate.check import Tolerance, judge, parse_tolerances
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
def test_rerun_with_another_seed_passes_paired_and_unchanged(runs, capsys):
    a = json.loads(runs["seed0"].read_text())["metrics"]
    b = json.loads(runs["seed1"].read_text())["metrics"]
    # gmbench's randomness in likelihood scoring is keyed by the example, not the seed
    assert a["nll_train"]["value"] == b["nll_train"]["value"]
    assert a["nll"]["stderr"] > 0 and b["nll_train"]["stderr"] > 0
    code, out = check(capsys, runs["seed1"], runs["board"])
    assert code == 0, out
    verdicts = [ln for ln in out.splitlines() if ln.split()[0] in ("pass", "improved")]
    assert len(verdicts) == 5  # one verdict line per metric
    assert "paired over 360 test examples" in out and "paired over 400 train examples" in out
    assert "judged with nll" in out  # bits_per_dim and perplexity are nll, transformed
    assert "0 regression(s) in 5 metric(s)" in out and "Holm's procedure over 3 test(s)" in out


def test_the_same_seed_must_reproduce_every_number(runs, capsys, tmp_path):
    code, out = check(capsys, runs["seed0"], runs["board"])
    assert code == 0, out
    assert out.count("reproduced") >= 5 and "every number must reproduce" in out
    # a code change that moves one number by 1%: not reproduced, named, exit 1
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(runs["seed0"].parent / "per_example.npz", moved / "per_example.npz")
    data = json.loads(runs["seed0"].read_text())
    data["metrics"]["perplexity"]["value"] *= 1.01
    (moved / "results.json").write_text(json.dumps(data))
    code, out = check(capsys, moved / "results.json", runs["board"])
    assert code == 1, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("NOT REPRODUCED")]
    assert "perplexity" in line and "1 not reproduced" in out and "FAIL" in out


def test_metric_made_25_percent_worse_fails(runs, capsys, tmp_path):
    bad = worsened(runs["seed1"], tmp_path / "worse.json", "nll", 1.25)
    code, out = check(capsys, bad, runs["board"])
    assert code == 1, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("REGRESSION")
               and "judged with" not in ln]  # bits_per_dim and perplexity go with nll
    assert " nll " in line and "worse by" in line
    # without the per-example file beside it, the comparison is unpaired and says why
    assert "new run's per-example values cannot be used" in out and "unpaired" in line
    assert "1 regression(s) in 5 metric(s)" in out and "FAIL" in out
    # accepted when the tolerance covers it: 25% worse is within 30% of the reference
    code, out = check(capsys, bad, runs["board"], "--tolerance", "nll=30%")
    assert code == 0, out
    # and an improvement of 25% passes
    good = worsened(runs["seed1"], tmp_path / "better.json", "nll", 0.75)
    code, out = check(capsys, good, runs["board"])
    assert code == 0 and "improved" in out


MIXED = INDEPENDENT.replace(
    "        return self.log_theta.gather(1, flat.T).sum(0).double()",
    "        exact = self.log_theta.gather(1, flat.T).sum(0).double()\n"
    "        # 95% the model, 5% the uniform distribution over all images: 0.05 nats worse\n"
    "        uniform = torch.full_like(exact, -flat.shape[1] * math.log(17))\n"
    "        return torch.logaddexp(exact + math.log(0.95), uniform + math.log(0.05))"
).replace("import torch", "import math\nimport torch", 1)


def test_a_small_likelihood_regression_is_seen_only_paired(runs, capsys, tmp_path):
    """0.05 nats worse on every test image: the test split's sampling error (0.46 nats) hides
    it from an unpaired comparison; the per-example differences show it."""
    model = tmp_path / "indep.py"
    model.write_text(MIXED)
    out_dir = tmp_path / "mixed"
    assert main(["evaluate", str(model), "--metrics", METRICS, "--seed", "1",
                 "--max-train", "400", "--out", str(out_dir)]) == 0
    code, out = check(capsys, out_dir / "results.json", runs["board"])
    assert code == 1, out
    line = next(ln for ln in out.splitlines() if ln.startswith("REGRESSION") and " nll " in ln)
    assert "paired over 360 test examples" in line
    (out_dir / "per_example.npz").unlink()
    code, out = check(capsys, out_dir / "results.json", runs["board"])
    assert code == 0, out


def test_bad_input_exits_2(runs, capsys, tmp_path):
    code, out = check(capsys, runs["seed1"], runs["board"], model="indpe")
    assert code == 2 and "Did you mean 'indep'" in out
    code, out = check(capsys, runs["seed1"], runs["board"], "--tolerance", "bpd=1")
    assert code == 2 and "bpd" in out
    code, out = check(capsys, tmp_path / "missing.json", runs["board"])
    assert code == 2 and "does not exist" in out
    code, out = check(capsys, runs["seed1"], runs["board"], "--allow", "feature-space")
    assert code == 2 and "never compared" in out
    truncated = tmp_path / "t.csv"
    text = runs["board"].read_text()
    truncated.write_text(text[: len(text) // 2])
    code, out = check(capsys, runs["seed1"], truncated)
    assert code == 2 and "truncated" in out


def test_other_data_under_the_same_name_is_not_judged(runs, capsys, tmp_path):
    data = json.loads(runs["seed1"].read_text())
    data["dataset"]["sha256"] = "0" * 64
    data["provenance"]["gmbench_version"] = "9.9.9"
    data["metrics"]["nll"]["kind"] = "lower_bound"
    path = tmp_path / "moved.json"
    path.write_text(json.dumps(data))
    code, out = check(capsys, path, runs["board"])
    assert code == 2 and "the data differ" in out and "000000000000" in out, out
    code, out = check(capsys, path, runs["board"], "--allow", "dataset")
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning:")]
    assert code == 0, out
    assert any(f"gmbench version differs: new 9.9.9, reference {gmbench.__version__}" in w
               for w in warnings)
    assert any("nll: likelihood kind differs" in w for w in warnings)
    code, out = check(capsys, runs["seed1"], runs["board"])
    assert "warning:" not in out


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> dict[str, Path]:
    """The example model's sample metrics at 500 and 1,000 samples (classifier features), at
    1,000 in pixel space and at another seed, and a board of the 1,000-sample run."""
    root = tmp_path_factory.mktemp("sampled")
    model = root / "indep.py"
    model.write_text(INDEPENDENT)
    runs = {}
    for name, extra in (("n1000", ["--n-samples", "1000"]), ("n500", ["--n-samples", "500"]),
                        ("pixels", ["--n-samples", "1000", "--feature-extractor", "pixels"]),
                        ("n1000s2", ["--n-samples", "1000", "--seed", "2"])):
        out = root / name
        assert main(["evaluate", str(model), "--metrics", "fid,mmd", "--out", str(out),
                     *extra]) == 0
        runs[name] = out / "results.json"
    runs["board"] = root / "board.csv"
    add_results(runs["board"], [runs["n1000"]])
    return runs


def test_incomparable_feature_spaces_and_sample_counts_exit_2(sampled, capsys):
    code, out = check(capsys, sampled["pixels"], sampled["board"])
    assert code == 2 and "feature spaces differ" in out and "'pixels'" in out, out
    assert "gmbench-digits" in out
    code, out = check(capsys, sampled["n500"], sampled["board"])
    assert code == 2 and "the sample counts differ: new 500, reference 1000" in out, out
    assert "and fid move with the sample count" in out
    code, out = check(capsys, sampled["n500"], sampled["board"], "--allow", "n-samples")
    assert code in (0, 1) and "sample count differs" in out
    code, out = check(capsys, sampled["n500"], sampled["board"], "--metrics", "mmd")
    assert code == 0, out  # mmd is unbiased in the sample count: judged


def test_same_weights_other_sample_distribution_fails_the_samples_test(sampled, capsys,
                                                                     tmp_path):
    code, out = check(capsys, sampled["n1000s2"], sampled["board"])
    assert code == 0 and "permutation" in out, out
    # the same fitted weights with a sampler that draws 20% of its images uniformly
    broken = tmp_path / "indep.py"
    broken.write_text(INDEPENDENT.replace(
        "        return idx.T.reshape(n, *self.shape)",
        "        noise = torch.randint_like(idx.T, self.log_theta.shape[1])\n"
        "        keep = torch.rand(n, 1) > 0.2\n"
        "        return torch.where(keep, idx.T, noise).reshape(n, *self.shape)"))
    out_dir = tmp_path / "broken"
    assert main(["evaluate", str(broken), "--metrics", "fid,mmd", "--out", str(out_dir),
                 "--n-samples", "1000", "--seed", "2"]) == 0
    code, out = check(capsys, out_dir / "results.json", sampled["board"])
    assert code == 1, out
    assert any(ln.startswith("REGRESSION") and " samples " in ln for ln in out.splitlines())


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


def _document(metrics: dict, *, seed: int) -> dict:
    return {"model": {"name": "m", "sha256": "a" * 64}, "seed": seed, "n_samples": 2000,
            "dataset": {"name": "digits", "sha256": "d" * 64}, "provenance": {},
            "metrics": metrics}


def _record(value: float | None, *, unit: str, protocol: int, reason: str = "",
            ideal: float | None = 0.0) -> dict:
    rec = {"value": value, "stderr": None if value is None else 0.05,
           "ci_low": None if value is None else value - 0.1,
           "ci_high": None if value is None else value + 0.1, "n": 360, "unit": unit,
           "higher_is_better": False, "ideal": ideal, "protocol": protocol,
           "ci_method": "not estimable (see not_estimable)" if value is None else "normal"}
    if reason:
        rec["not_estimable"] = reason
    return rec


@pytest.mark.parametrize("new_side", [True, False])
def test_a_run_that_finds_kl_knn_not_estimable_is_not_compared(new_side):
    """Whether a run's samples repeat a point more than k times (kl_knn not estimable) is
    itself random near the limit: either side not estimable is reported, never a failure;
    a likelihood that stops being estimable (the model is no longer normalised) still fails."""
    from gmbench.gate.check import check_results
    from gmbench.metrics import registered_definitions
    from gmbench.storage.leaderboard import rows_from_results

    defined = registered_definitions()
    atoms = "the samples repeat one point 7 times"
    knn_gone = _record(None, unit="nats", protocol=defined["kl_knn"].protocol, reason=atoms)
    knn = _record(0.6, unit="nats", protocol=defined["kl_knn"].protocol)
    nll = _record(30.0, unit="nats", protocol=defined["nll"].protocol, ideal=None)
    nll_gone = _record(None, unit="nats", protocol=defined["nll"].protocol, ideal=None,
                       reason="the model is not normalised")
    new = _document({"kl_knn": knn_gone if new_side else knn, "nll": nll_gone}, seed=1)
    board = rows_from_results(_document({"kl_knn": knn if new_side else knn_gone,
                                         "nll": nll}, seed=0))
    report = check_results(new, board, model="m", defined=defined)
    verdicts = {v.metric: v for v in report.verdicts}
    assert verdicts["kl_knn"].status == "not estimable"
    assert not verdicts["kl_knn"].failed
    assert (atoms in verdicts["kl_knn"].note) == new_side
    assert verdicts["nll"].status == "regression" and verdicts["nll"].failed


@pytest.mark.parametrize(("new_value", "status"), [(0.001, "improved"), (0.030, "regression")])
def test_copy_rate_is_ranked_by_its_ideal_but_only_a_rise_regresses(new_value, status):
    """copy_rate's ideal is the data's own rate (0.01): ranked by the distance from it, so the
    truth's 0.0089 beats a poor model's 0.0017; but copying less than the reference did is
    never a regression, only copying more."""
    from gmbench.gate.check import check_results
    from gmbench.metrics import registered_definitions
    from gmbench.present.compare import rank_of
    from gmbench.storage.leaderboard import rows_from_results

    defined = registered_definitions()
    ideal = defined["copy_rate"].direction.ideal
    assert ideal == 0.01
    assert rank_of(0.0089, [0.0017], direction=defined["copy_rate"].direction) == 1

    def rate(value: float) -> dict:
        rec = _record(value, unit="fraction", protocol=defined["copy_rate"].protocol,
                      ideal=ideal)
        return {**rec, "stderr": 0.001, "ci_low": value - 0.002, "ci_high": value + 0.002}

    board = rows_from_results(_document({"copy_rate": rate(0.012)}, seed=0))
    report = check_results(_document({"copy_rate": rate(new_value)}, seed=1), board,
                           model="m", defined=defined)
    (verdict,) = [v for v in report.verdicts if v.metric == "copy_rate"]
    # 0.001 is nearer the ideal's other side than 0.012 is (0.009 vs 0.002): by distance it
    # would regress; gated on rises it passes
    assert verdict.status == status
    assert verdict.worse_by == pytest.approx(new_value - 0.012)
