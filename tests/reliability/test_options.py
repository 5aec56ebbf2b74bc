"""Command-line flags and API options: a bad flag or option value is one clear error, the API
checks its options like the command line and takes iterators, NumPy integers and strings where
they fit, and edge values are handled as documented (an empty dataset name, the device cpu:0,
seeds beyond 2^32, model paths that cannot be read, --dequant-samples, --max-train 1 and
--inception-weights naming a folder)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_errors import assert_clear_error
from helpers import GOOD_LP, GOOD_SAMPLE, MINIMAL, ROOT, TOY, evaluate_ok

import gmbench
from gmbench.api import OptionError


# ------------------------------------------------------------------ command-line flags
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


def test_option_messages_say_what_is_wrong(tmp_path, gmbench_cli):
    from gmbench.errors import BoardError
    from gmbench.gate.check import parse_tolerances

    for bad in ("nll=-1", "nll=inf", "nll=nan"):
        with pytest.raises(BoardError, match="negative, infinite and nan values are refused"):
            parse_tolerances([bad])
    assert_clear_error(gmbench_cli("leaderboard", "add", tmp_path / "r.json", "--board", ""),
                       "--board is empty")


def test_an_empty_dataset_name_is_refused_not_replaced_by_the_default(gmbench_cli):
    run = gmbench_cli("evaluate", Path(__file__).resolve().parents[2] / "examples"
                      / "minimal_model.py", "--dataset", " ", "--metrics", "nll")
    assert_clear_error(run, "--dataset", "is empty")


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


def test_seeds_are_not_reduced_modulo_2_32(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        model = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    """)
    a = evaluate_ok(gmbench_cli, path, "--metrics", "mmd", "--n-samples", "200", "--seed", "5")
    b = evaluate_ok(gmbench_cli, path, "--metrics", "mmd", "--n-samples", "200", "--seed",
                    str(5 + 2**32))
    assert a.metric("mmd")["value"] != b.metric("mmd")["value"]
    assert b.results["seed"] == 5 + 2**32
    assert_clear_error(gmbench_cli("evaluate", path, "--seed", "-1"), "--seed")
    assert_clear_error(gmbench_cli("evaluate", path, "--seed", str(2**64)), "--seed")


def test_unbounded_dequant_samples_is_refused(write_model, gmbench_cli):
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "nll", "--dequant-samples", "1000000")
    assert run.code == 2 and "--dequant-samples" in run.err and "Traceback" not in run.err


def test_dequant_samples_on_a_data_space_model_is_recorded_as_one(write_model, gmbench_cli):
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "nll", "--dequant-samples", "8")
    assert run.code == 0 and "one draw is used" in run.err, run.err
    assert run.results["config"]["dequant_samples"] == 1


def test_one_train_example_has_no_interval_and_says_so(gmbench_cli):
    run = gmbench_cli("evaluate", ROOT / "examples" / "minimal_model.py", "--metrics",
                      "nll,nll_train,generalization_gap", "--max-train", "1")
    assert run.code == 0, run.err
    assert run.metric("generalization_gap")["ci_low"] is None
    assert "no interval: too few train examples" in run.out


def test_inception_weights_naming_a_folder(gmbench_cli, tmp_path):
    run = gmbench_cli("evaluate", ROOT / "examples" / "minimal_model.py", "--metrics", "fid",
                      "--feature-extractor", "inception-v3-compat", "--inception-weights",
                      tmp_path)
    assert_clear_error(run, "is a folder")


# ------------------------------------------------------------------ API options
@pytest.mark.parametrize("options, needle", [
    ({"batch_size": -5}, "batch_size"), ({"batch_size": 0}, "batch_size"),
    ({"max_train": -3}, "max_train"), ({"n_samples": "100"}, "n_samples"),
    ({"n_samples": True}, "n_samples"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"dataset": 5}, "dataset"), ({"metrics": "nll"}, "metrics"), ({"metrics": []}, "metrics"),
])
def test_the_api_checks_its_options_like_the_command_line(options, needle):
    import gmbench

    with pytest.raises(gmbench.GmbenchError, match=needle):
        gmbench.evaluate(ROOT / "examples" / "minimal_model.py", progress=False, **options)


def test_api_options_as_iterators_numpy_integers_or_none(write_model):
    class Levels:
        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))

    res = gmbench.evaluate(Levels(), dataset="digits", progress=False,
                           metrics=map(str.strip, ["copy_rate", " mmd"]),
                           n_samples=np.int64(300), seed=np.int32(3))
    assert sorted(res.metrics) == ["copy_rate", "mmd"] and res.document["seed"] == 3
    for option in ("device", "feature_extractor"):
        with pytest.raises(OptionError, match=f"{option} must be a string"):
            gmbench.evaluate(Levels(), dataset="digits", progress=False, **{option: None})
    with pytest.raises(OptionError, match="metrics must be a non-empty list"):
        res.check(Path("unused.csv"), metrics="mmd")
