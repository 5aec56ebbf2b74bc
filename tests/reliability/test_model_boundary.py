"""The boundary around model code (issue 12): nothing the model does to its inputs, its
outputs or the process can change gmbench's data or results, and every way model code can end
the process becomes a clear error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_errors import assert_clear_error

from gmbench.datasets import get_dataset


def evaluate_ok(gmbench_cli, path, *args):
    run = gmbench_cli("evaluate", path, *args)
    assert run.code == 0, run.err
    return run


GAUSS = """
    import torch
    DATASET = "gauss-2"
    class M:
        def sample(self, n):
            return torch.randn(n, 2) * 1.1
        def log_prob(self, x):
            lp = torch.distributions.Normal(0.0, 1.1).log_prob(x).sum(1).double()
            {mutation}  # after scoring: the model's own value is untouched, gmbench's data?
            return lp
    model = M()
"""


@pytest.mark.parametrize("mutation", ["x *= 2", "x[:] = 0", "x.add_(1.0)"])
def test_a_model_writing_into_its_input_changes_nothing(write_model, gmbench_cli, mutation):
    clean = evaluate_ok(gmbench_cli, write_model(GAUSS.format(mutation="pass")),
                        "--metrics", "nll,mmd,cross_entropy", "--n-samples", "500")
    dirty = evaluate_ok(gmbench_cli, write_model(GAUSS.format(mutation=mutation)),
                        "--metrics", "nll,mmd,cross_entropy", "--n-samples", "500")
    assert dirty.results["dataset"]["sha256"] == clean.results["dataset"]["sha256"]
    for key in ("mmd", "cross_entropy"):
        assert dirty.metric(key)["value"] == clean.metric(key)["value"], key
    assert get_dataset("gauss-2").sha256 == clean.results["dataset"]["sha256"]


def test_integer_inputs_are_copies_too(write_model, gmbench_cli):
    source = """
        import math, torch
        DATASET = "markov-4"
        class M:
            def sample(self, n):
                return torch.randint(0, 4, (n, 64))
            def log_prob(self, x):
                {mutation}
                return torch.full((len(x),), -64 * math.log(4.0), dtype=torch.float64)
        model = M()
    """
    args = ("--metrics", "nll,perplexity,mmd", "--n-samples", "300")
    clean = evaluate_ok(gmbench_cli, write_model(source.format(mutation="pass")), *args)
    dirty = evaluate_ok(gmbench_cli, write_model(source.format(mutation="x[:] = 3")), *args)
    assert dirty.results["dataset"]["sha256"] == clean.results["dataset"]["sha256"]
    assert dirty.metric("mmd")["value"] == clean.metric("mmd")["value"]


def test_a_model_refilling_one_output_buffer_keeps_every_sample(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        class M:
            def __init__(self):
                self.buffer = torch.empty(1000, 2)
            def sample(self, n):
                return self.buffer[:n].normal_()  # the same memory every call
        model = M()
    """)
    from gmbench.models.model import build_model, import_model_file

    module, source = import_model_file(path)
    model = build_model(module, source, get_dataset("gauss-2").info, "cpu")
    samples = model.sample(3000, seed=0)
    assert len(np.unique(samples, axis=0)) == 3000


EXITS = {
    "sys.exit(0) in load": ("import sys\ndef load(dataset, device):\n    sys.exit(0)\n",
                            "`load(dataset, device)` called sys.exit(0)"),
    "sys.exit in sample": ("import sys\nclass M:\n    def sample(self, n):\n        sys.exit(3)"
                           "\nmodel = M()\n", "`sample` called sys.exit(3)"),
    "os._exit in log_prob": ("import os, torch\nclass M:\n    def log_prob(self, x):\n"
                             "        os._exit(0)\nmodel = M()\n", "`log_prob` called os._exit(0)"),
    "os._exit at import": ("import os\nos._exit(0)\n", "called os._exit(0)"),
    "BaseException subclass": ("class Stop(BaseException):\n    pass\nclass M:\n"
                               "    def sample(self, n):\n        raise Stop('halt')\n"
                               "model = M()\n", "`sample` raised Stop: halt"),
}


@pytest.mark.parametrize("case", list(EXITS))
def test_model_code_that_ends_the_process_is_an_error_not_a_success(case, tmp_path):
    """Run in a child process: were os._exit not caught, it would end the test run."""
    source, message = EXITS[case]
    path = tmp_path / "exits.py"
    path.write_text('DATASET = "digits"\n' + source)
    proc = subprocess.run([sys.executable, "-m", "gmbench.cli", "evaluate", str(path),
                           "--out", str(tmp_path / "out"), "--metrics", "nll,mmd",
                           "--n-samples", "50"],
                          capture_output=True, text=True, timeout=300)
    metrics_needing = "needs log_prob" in proc.stderr or "needs sample" in proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert metrics_needing or message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_keyboard_interrupt_still_interrupts(write_model, gmbench_cli):
    path = write_model("""
        DATASET = "digits"
        class M:
            def sample(self, n):
                raise KeyboardInterrupt
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50")
    assert run.code == 130 and "interrupted" in run.err


def test_process_state_the_model_changes_is_restored(write_model, gmbench_cli):
    """A model file that sets float64 as the default dtype, reseeds the global generators and
    changes the thread count, at import and in every call: gmbench runs normally and the
    process is as it was."""
    path = write_model("""
        import random
        import numpy as np
        import torch
        torch.set_default_dtype(torch.float64)
        DATASET = "digits"
        class M:
            def sample(self, n):
                torch.set_default_dtype(torch.float64)
                torch.manual_seed(1); np.random.seed(1); random.seed(1)
                torch.set_num_threads(1)
                return torch.randint(0, 17, (n, 1, 8, 8))
            def log_prob(self, x):
                torch.set_grad_enabled(True)
                return torch.full((len(x),), -181.3, dtype=torch.float64)
        model = M()
    """)
    before = (torch.get_default_dtype(), torch.random.get_rng_state().clone(),
              np.random.get_state()[1].copy(), torch.get_num_threads(), torch.is_grad_enabled())
    evaluate_ok(gmbench_cli, path, "--metrics", "nll,fid,precision,cas", "--n-samples", "200")
    after = (torch.get_default_dtype(), torch.random.get_rng_state(), np.random.get_state()[1],
             torch.get_num_threads(), torch.is_grad_enabled())
    assert after[0] == before[0] == torch.float32
    assert torch.equal(after[1], before[1]) and np.array_equal(after[2], before[2])
    assert after[3:] == before[3:]


def test_loading_an_extractor_leaves_the_global_rng_alone():
    from gmbench.features.classifier import _load, classifier_for

    _load.cache_clear()
    state = torch.random.get_rng_state().clone()
    classifier_for("digits")
    assert torch.equal(torch.random.get_rng_state(), state)


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


def test_extreme_finite_log_probabilities_are_an_error_not_a_null(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        class M:
            def log_prob(self, x):
                return torch.full((len(x),), -1e308, dtype=torch.float64)
        model = M()
    """)
    assert_clear_error(gmbench_cli("evaluate", path), "-1e+308", "log space")
