"""Cases found by a third round of probes (issue 12), one test per class: a log_prob that is not
normalised (it used to rank first), stored files that do not say what they hold, gates that pass
on nothing, model code that changes the process around it, and results files that claim a
direction or an interval the metric does not have."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_errors import assert_clear_error

import gmbench
from gmbench.cli import main
from gmbench.datasets import get_dataset
from gmbench.errors import ModelError
from gmbench.estimators.montecarlo import importance_mass
from gmbench.metrics.likelihood import MASS_ROUNDING_TOL
from gmbench.storage.leaderboard import add_results


# ------------------------------------------------------------------ normalisation
def _gaussian_log_q(x: np.ndarray, scale: float) -> np.ndarray:
    """log N(x; 0, scale^2 I) in 2-d: a normalised density with a closed form."""
    return -0.5 * (x ** 2).sum(1) / scale ** 2 - math.log(2 * math.pi * scale ** 2)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_normalised_but_wrong_densities_are_never_flagged(scale):
    """False alarms over 100 seeds of 10,000 draws of the 8-Gaussian ring against normalised
    Gaussians: a narrow one (q/p has a heavy right tail at the ring's empty centre), a
    matched one and a wide one (mass outside the ring). The bound holds for any tail."""
    truth = get_dataset("toy2d-gmm8").truth
    alarms = 0
    for seed in range(100):
        x = truth.sample(10_000, np.random.default_rng(seed))
        _, bound, _ = importance_mass(_gaussian_log_q(x, scale) - truth.log_prob(x))
        alarms += bound > 1 + MASS_ROUNDING_TOL
    assert alarms == 0


@pytest.mark.parametrize("weight, offset", [(0.0, 0.05), (0.1, 0.3)])
def test_an_offset_log_density_near_the_truth_is_detected(weight, offset):
    """Power, where a cheat would otherwise rank first: the truth itself, or the truth mixed
    with a wide Gaussian (``q = 0.9 p + 0.1 g``), plus a constant. Far from the truth q/p is
    too heavy-tailed for 10,000 draws to see a small offset (the normalised Gaussians above
    score lower bounds below 1): the check protects the top of a board, not all of it."""
    truth = get_dataset("toy2d-gmm8").truth
    hits = 0
    for seed in range(40):
        x = truth.sample(10_000, np.random.default_rng(seed))
        log_p = truth.log_prob(x)
        log_q = np.logaddexp(math.log1p(-weight) + log_p,
                             math.log(weight) + _gaussian_log_q(x, 3.0)) if weight else log_p
        _, bound, _ = importance_mass(log_q + offset - log_p)
        hits += bound > 1 + MASS_ROUNDING_TOL
    assert hits / 40 >= 0.9


def test_importance_mass_bound_by_hand_and_overflow_is_infinite():
    # 1,000 weights of 1: capped at 10 they are 0.1 each, variance 0; the bound is
    # 10 (0.1 - 7 ln(2 / 1e-4) / (3 * 999))
    mean, bound, n = importance_mass(np.zeros(1000))
    assert (mean, n) == (1.0, 1000)
    assert bound == pytest.approx(10 * (0.1 - 7 * math.log(2e4) / (3 * 999)))
    mean, bound, _ = importance_mass(np.where(np.arange(1000) == 3, 800.0, 0.0))
    assert mean == math.inf and bound < 1  # one huge weight is capped: no proof of excess mass
    _, bound, _ = importance_mass(np.full(1000, 800.0))
    assert bound > 9  # every weight huge: the mass is far above 1


def test_discrete_mass_over_distinct_test_points_is_checked_without_a_truth():
    """digits has no ground truth: a model putting mass ``total / n`` on each distinct test
    image (and almost none elsewhere) sums to ``total`` over the test split; an exact
    log-mass may exceed 1 by rounding only, a stochastic one by Markov's inequality's
    1 / MASS_DELTA."""
    test = get_dataset("digits").test.x
    seen = {row.tobytes() for row in test}
    n_distinct = len(seen)

    class OnTest:
        NAME = "on-test"

        def __init__(self, total: float, kind: str) -> None:
            self.log_mass, self.log_prob_kind = math.log(total / n_distinct), kind

        def log_prob(self, x):
            inside = [row.tobytes() in seen for row in x.numpy().astype(test.dtype)]
            return torch.tensor([self.log_mass if i else -1e4 for i in inside],
                                dtype=torch.float64)

    def nll(total: float, kind: str) -> float | None:
        return gmbench.evaluate(OnTest(total, kind), dataset="digits", metrics=["nll"],
                                progress=False)["nll"].value

    assert nll(2.0, "exact") is None
    assert nll(2.0, "lower_bound") == pytest.approx(-math.log(2 / n_distinct))
    assert nll(2e4, "estimate") is None  # one example above 0 is allowed to an estimate
    assert nll(1.0, "exact") == pytest.approx(-math.log(1 / n_distinct))


def test_constant_and_naive_models_are_refused_by_the_mass_over_the_whole_space():
    """A constant log-mass (bits/dim 1.000 on digits) and an independent Bernoulli that
    ignores 15 of the 17 levels (nll 24.6) both ranked first: over the whole space of 17^64
    images their masses are about 3e59 and 1e46, which 512 uniform draws show."""
    x = get_dataset("digits").train.x.reshape(-1, 64)
    on = torch.tensor((x > 0).mean(0).clip(0.01, 0.99))

    class Constant:
        def log_prob(self, x):
            return torch.full((len(x),), -64 * math.log(2), dtype=torch.float64)

    class Bernoulli:
        def log_prob(self, x):
            b = (x.reshape(len(x), -1) > 0).double()
            return (b * on.log() + (1 - b) * (1 - on).log()).sum(1)

    for cheat in (Constant(), Bernoulli()):
        res = gmbench.evaluate(cheat, dataset="digits", progress=False,
                               metrics=["nll", "nll_train", "generalization_gap",
                                        "bits_per_dim", "perplexity"])
        for key in res:
            assert res[key].value is None, (type(cheat).__name__, key)
            assert "over all 17^64 points" in res[key].details["not_estimable"]


class _Shifted:
    """The ground truth of a generated dataset, with ``offset`` nats added to its log_prob."""

    def __init__(self, dataset: str, offset: float, kind: str = "exact") -> None:
        self.truth = get_dataset(dataset).truth
        self.offset = offset
        self.log_prob_kind = kind
        self._rng = np.random.default_rng(0)

    def sample(self, n):
        return torch.as_tensor(self.truth.sample(n, self._rng))

    def log_prob(self, x):
        return torch.as_tensor(self.truth.log_prob(x.numpy()) + self.offset)


@pytest.mark.parametrize("dataset, metrics", [
    ("toy2d-gmm8", ["cross_entropy", "kl_exact", "tv_exact"]),
    ("markov-4", ["nll", "bits_per_dim", "entropy_gap", "kl_exact"]),
])
def test_an_unnormalised_log_prob_is_not_estimable_and_the_truth_is(dataset, metrics):
    """A model scoring the truth + 5 nats used to rank first on every likelihood metric."""
    cheat = gmbench.evaluate(_Shifted(dataset, 5.0), dataset=dataset, metrics=metrics,
                             progress=False)
    for key in metrics:
        rec = cheat[key]
        assert rec.value is None, (key, rec.value)
        assert "not normalised" in rec.details["not_estimable"], rec.details
    honest = gmbench.evaluate(_Shifted(dataset, 0.0), dataset=dataset, metrics=metrics,
                              progress=False)
    for key in metrics:
        assert honest[key].value is not None and "not_estimable" not in honest[key].details


# ------------------------------------------------------------------ the gate
INDEPENDENT = (Path(__file__).resolve().parents[2] / "examples" / "minimal_model.py").read_text()


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


def _edited(gate: dict[str, Path], name: str, edit) -> Path:  # noqa: ANN001 - a callable
    data = json.loads(gate["results"].read_text())
    edit(data)
    path = gate["root"] / name
    path.write_text(json.dumps(data))
    return path


def _check(capsys, results: Path, board: Path, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", str(results), "--against", str(board), "--model", "indep", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


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


def test_a_check_warns_when_the_sample_count_or_options_differ(gate, capsys):
    def edit(d: dict) -> None:
        d["n_samples"] = d["config"]["n_samples"] = 2000
        d["config"]["dequant_samples"] = 4
    code, out = _check(capsys, _edited(gate, "counts.json", edit), gate["board"])
    assert "sample count differs: new 2000, reference 500" in out
    assert "evaluation options differ" in out and '"dequant_samples":4' in out.replace(" ", "")


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


def assert_clear_error_text(code: int, out: str, *needles: str) -> None:
    assert code == 2 and "gmbench: error:" in out and "Traceback" not in out, out
    for needle in needles:
        assert needle in out, (needle, out)


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


# ------------------------------------------------------------------ the model boundary
DIGITS_MODEL = """
    import torch, numpy as np
    DATASET = "digits"
    {module}
    class M:
        def sample(self, n):
            {sample}
            return torch.randint(0, 17, (n, 1, 8, 8))
    model = M()
"""


def digits_model(module: str = "", sample: str = "pass") -> str:
    return DIGITS_MODEL.format(module=module, sample=sample)


@pytest.mark.parametrize("change, state", [
    ("np.seterr(all='raise')", lambda: np.geterr()),
    ("import warnings; warnings.simplefilter('error')", lambda: list(__import__("warnings").filters)),
    ("import os; os.environ['GMBENCH_BOARDS'] = '/elsewhere'; os.environ.pop('HOME', None)",
     lambda: dict(__import__("os").environ)),
    ("torch.use_deterministic_algorithms(True)",
     lambda: torch.are_deterministic_algorithms_enabled()),
    ("import sys; sys.setrecursionlimit(sys.getrecursionlimit() + 12345)",
     lambda: __import__("sys").getrecursionlimit()),
])
@pytest.mark.parametrize("where", ["module", "sample"])
def test_process_state_a_model_changes_is_restored_for_the_caller(write_model, change, state,
                                                                  where):
    """A training loop calling gmbench.evaluate gets its process back as it was."""
    before = state()
    path = write_model(digits_model(**{where: change}))
    res = gmbench.evaluate(str(path), metrics=["copy_rate"], n_samples=300, progress=False)
    assert res["copy_rate"].value is not None
    assert state() == before


def test_a_model_file_that_lowers_the_recursion_limit_still_runs(write_model, gmbench_cli):
    path = write_model(digits_model(module="import sys; sys.setrecursionlimit(60)"))
    run = gmbench_cli("evaluate", path, "--metrics", "copy_rate", "--n-samples", "300")
    assert run.code == 0 and "Traceback" not in run.err, run.err
    assert sys.getrecursionlimit() > 60


def test_a_model_that_deletes_its_working_directory_or_closes_stdout_still_finishes(
        write_model, tmp_path):
    path = write_model(digits_model(sample=(
        "import os, sys, tempfile, shutil; d = tempfile.mkdtemp(); os.chdir(d); "
        "shutil.rmtree(d); sys.stdout.close(); sys.stderr.close()")))
    proc = subprocess.run([sys.executable, "-m", "gmbench.cli", "evaluate", str(path),
                           "--metrics", "copy_rate", "--n-samples", "300", "--out",
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "copy_rate" in proc.stdout and "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["metrics"]["copy_rate"]


@pytest.mark.parametrize("patch, name", [
    ("import builtins; builtins.print = lambda *a, **k: None", "builtins.print"),
    ("import gmbench.metrics.likelihood as L; L.nll_estimate = lambda ev: None",
     "gmbench.metrics.likelihood.nll_estimate"),
])
@pytest.mark.parametrize("where", ["module", "sample"])
def test_a_model_that_patches_gmbench_or_a_builtin_is_refused(write_model, gmbench_cli, patch,
                                                              name, where):
    import builtins

    import gmbench.metrics.likelihood as likelihood

    originals = (builtins.print, likelihood.nll_estimate)
    path = write_model(digits_model(**{where: patch}))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "copy_rate", "--n-samples",
                                   "300"), name, "may not patch")
    assert (builtins.print, likelihood.nll_estimate) == originals  # put back


def test_an_exit_handler_cannot_turn_a_failed_run_into_success(write_model, tmp_path):
    path = write_model("""
        import atexit, os
        atexit.register(lambda: os._exit(0))
        DATASET = "digits"
        class M:
            def sample(self, n):
                return "not samples"
        model = M()
    """)
    proc = subprocess.run([sys.executable, "-m", "gmbench.cli", "evaluate", str(path),
                           "--metrics", "copy_rate", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "returned a str" in proc.stderr and "Traceback" not in proc.stderr
    assert "exit handler" in proc.stderr and "os._exit(0)" in proc.stderr


# ------------------------------------------------------------------ stored samples
def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)


def test_a_16_bit_png_folder_is_read_at_its_depth_not_binarised(tmp_path):
    """16-bit grey PNGs used to be binarised by an 8-bit conversion; now value / 65535."""
    digits = get_dataset("digits").test.x[:60]  # (60, 1, 8, 8) levels 0..16
    folder = tmp_path / "deep"
    folder.mkdir()
    for i, img in enumerate(digits):
        _png(folder / f"{i:03d}.png", (img[0].astype(np.uint16) * 4096 - (img[0] > 0)).astype(
            np.uint16))
    from gmbench.models.stored import read_samples

    x, _, _ = read_samples(folder, get_dataset("digits").info)
    want = (digits.astype(np.float64) * 4096 - (digits > 0)) / 65535
    assert x.dtype == np.float32 and np.allclose(x, want, atol=1e-7)
    # and through the boundary the same levels as the 8-bit originals
    res = gmbench.evaluate(samples=folder, dataset="digits", metrics=["copy_rate"],
                           progress=False)
    ref = gmbench.evaluate(samples=digits, dataset="digits", metrics=["copy_rate"],
                           progress=False)
    assert res["copy_rate"].value == ref["copy_rate"].value


@pytest.mark.parametrize("make, needle", [
    (lambda a: (np.stack([a, np.full_like(a, 128)], -1), "LA"), "transparent pixels"),
    (lambda a: (np.stack([a, a // 2, a], -1), "RGB"), "colour image"),
])
def test_png_transparency_and_colour_are_refused_for_a_grey_dataset(tmp_path, make, needle):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        arr, mode = make(np.full((8, 8), 16 * i, np.uint8))
        _png(folder / f"{i}.png", arr, mode)
    with pytest.raises(ModelError, match=needle):
        gmbench.evaluate(samples=folder, dataset="digits", progress=False)


def test_an_opaque_la_png_is_read_as_grey(tmp_path):
    folder = tmp_path / "la"
    folder.mkdir()
    digits = get_dataset("digits").test.x[:30]
    for i, img in enumerate(digits):
        grey = (img[0] * 255 // 16).astype(np.uint8)
        _png(folder / f"{i:02d}.png", np.stack([grey, np.full_like(grey, 255)], -1), "LA")
    from gmbench.models.stored import read_samples

    x, _, _ = read_samples(folder, get_dataset("digits").info)
    assert x.shape == (30, 1, 8, 8) and x.dtype == np.uint8


def test_numpy_files_that_lie_or_are_cut_are_refused_before_loading(tmp_path):
    """A header claiming 10^12 images over 256 bytes of data used to end in a MemoryError
    traceback; a cut .npz in a BadZipFile one."""
    lying = tmp_path / "huge.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((4, 1, 8, 8), np.uint8))
    header["shape"] = (10**12, 1, 8, 8)
    with open(lying, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(bytes(256))
    with pytest.raises(ModelError, match="truncated or corrupt"):
        gmbench.evaluate(samples=lying, dataset="digits", progress=False)
    cut = tmp_path / "cut.npz"
    np.savez_compressed(cut, samples=np.zeros((500, 1, 8, 8), np.uint8))
    cut.write_bytes(cut.read_bytes()[:-40])
    with pytest.raises(ModelError, match="cannot be read as a NumPy file"):
        gmbench.evaluate(samples=cut, dataset="digits", progress=False)


# ------------------------------------------------------------------ files and flags
def test_blank_lines_in_a_board_are_skipped_and_the_rows_kept(gate, tmp_path):
    from gmbench.storage.leaderboard import read_board

    text = gate["board"].read_text()
    spaced = tmp_path / "spaced.csv"
    lines = text.splitlines(keepends=True)
    spaced.write_text(lines[0] + "\n" + "".join(lines[1:]) + "\n\n")
    assert read_board(spaced) == read_board(gate["board"])


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


def test_an_empty_dataset_name_is_refused_not_replaced_by_the_default(gmbench_cli):
    run = gmbench_cli("evaluate", Path(__file__).resolve().parents[2] / "examples"
                      / "minimal_model.py", "--dataset", " ", "--metrics", "nll")
    assert_clear_error(run, "--dataset", "is empty")


def test_what_load_does_to_its_dataset_description_stays_with_the_model(write_model,
                                                                          gmbench_cli):
    """`object.__setattr__(dataset, "levels", 2)` in load() used to change gmbench's own
    description, and the model's valid samples were then refused as out of range."""
    path = write_model("""
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return torch.randint(0, 17, (n, 1, 8, 8))
        def load(dataset, device):
            object.__setattr__(dataset, "levels", 2)
            return M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "copy_rate", "--n-samples", "300")
    assert run.code == 0, run.err
    assert run.results["dataset"]["levels"] == 17 and run.metric("copy_rate")["value"] is not None


def test_a_patch_is_undone_when_the_model_then_fails(write_model, gmbench_cli):
    import builtins

    original = builtins.print
    path = write_model(digits_model(sample="import builtins; builtins.print = None; "
                                           "raise RuntimeError('broken')"))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "copy_rate"),
                       "raised RuntimeError: broken")
    assert builtins.print is original
