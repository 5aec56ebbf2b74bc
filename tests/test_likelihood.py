"""Likelihood metrics against closed forms (issue 2's acceptance values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gmbench.datasets import get_dataset

UNIFORM_DIGITS = """
    import math
    import torch
    DATASET = "digits"

    class Uniform:
        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))

        def log_prob(self, x):
            return torch.full((x.shape[0],), -64 * math.log(17.0), dtype=torch.float64)

    model = Uniform()
"""

UNIFORM_CUBE_DENSITY = """
    import torch
    DATASET = "digits"

    class UnitCube:
        log_prob_space = "dequantized"

        def log_prob(self, y):
            assert y.dtype.is_floating_point and float(y.min()) >= 0 and float(y.max()) < 1
            return torch.zeros(y.shape[0], dtype=torch.float64)

    model = UnitCube()
"""


def test_uniform_digits_closed_forms(write_model, gmbench_cli):
    run = gmbench_cli("evaluate", write_model(UNIFORM_DIGITS))
    assert run.code == 0, run.err
    m = run.results["metrics"]
    assert m["bits_per_dim"]["value"] == pytest.approx(math.log2(17), abs=1e-6)
    assert m["perplexity"]["value"] == pytest.approx(17, abs=1e-6)
    assert m["nll"]["value"] == pytest.approx(64 * math.log(17), abs=1e-6)
    assert m["nll"]["kind"] == "exact"
    assert m["generalization_gap"]["value"] == pytest.approx(0, abs=1e-9)
    assert m["nll"]["n"] == len(get_dataset("digits").test)
    assert m["nll_train"]["n"] == len(get_dataset("digits").train)


@pytest.mark.parametrize("k", [1, 4])
def test_dequantized_unit_cube_scores_the_same(write_model, gmbench_cli, k):
    run = gmbench_cli("evaluate", write_model(UNIFORM_CUBE_DENSITY), "--dequant-samples", k)
    assert run.code == 0, run.err
    rec = run.metric("bits_per_dim")
    assert rec["value"] == pytest.approx(math.log2(17), abs=1e-6)
    assert rec["log_prob_space"] == "dequantized"
    assert rec["dequant_samples"] == k
    assert ("log-mean-exp" in rec["dequant_estimator"]) == (k > 1)


def test_importance_weighted_dequantization_is_tighter(write_model, gmbench_cli):
    """For a non-uniform density, log-mean-exp over K draws can only lower the NLL (Jensen)."""
    path = write_model("""
        import torch
        DATASET = "digits"
        class Tilted:
            log_prob_space = "dequantized"
            def log_prob(self, y):
                # density proportional to exp(3y) per dimension on [0, 1)
                a = 3.0
                return (a * y - torch.log(torch.tensor((torch.e ** a - 1) / a))).flatten(1).sum(1).double()
        model = Tilted()
    """)
    one = gmbench_cli("evaluate", path, "--metrics", "nll").metric("nll")["value"]
    many = gmbench_cli("evaluate", path, "--metrics", "nll", "--dequant-samples", "8")
    assert many.metric("nll")["value"] < one


def test_uniform_markov8_perplexity(write_model, gmbench_cli):
    path = write_model("""
        import math
        import torch
        DATASET = "markov-8"
        class Uniform:
            def log_prob(self, x):
                return torch.full((x.shape[0],), -64 * math.log(8.0), dtype=torch.float64)
        model = Uniform()
    """)
    run = gmbench_cli("evaluate", path)
    assert run.code == 0, run.err
    assert run.metric("perplexity")["value"] == pytest.approx(8, abs=1e-6)
    assert run.metric("perplexity")["per"] == "token"


@pytest.mark.parametrize("v", [4, 16])
def test_true_markov_chain(write_model, gmbench_cli, v):
    path = write_model(f"""
        import torch
        from gmbench.datasets import get_dataset
        DATASET = "markov-{v}"
        class Truth:
            def __init__(self):
                self.chain = get_dataset(DATASET).truth
            def log_prob(self, x):
                return torch.from_numpy(self.chain.log_prob(x.numpy()))
        model = Truth()
    """)
    run = gmbench_cli("evaluate", path)
    assert run.code == 0, run.err
    chain = get_dataset(f"markov-{v}").truth
    gap = run.metric("entropy_gap")
    assert gap["ci_low"] <= 0 <= gap["ci_high"]
    assert gap["entropy"] == pytest.approx(chain.entropy)
    # Per-token perplexity of the 64-token block: exp(H(X_1..X_64) / 64), which is
    # exp(entropy rate) up to the start-up term (H(pi) - h) / 64.
    ppl = run.metric("perplexity")
    assert ppl["ci_low"] <= math.exp(chain.entropy / 64) <= ppl["ci_high"]
    assert abs(math.log(ppl["value"]) - chain.entropy_rate) < 0.02


def test_multivariate_normal_needs_no_adapter(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        model = torch.distributions.MultivariateNormal(
            torch.zeros(2), covariance_matrix=torch.tensor([[1.0, 0.5], [0.5, 1.0]]))
    """)
    run = gmbench_cli("evaluate", path)
    assert run.code == 0, run.err
    m = run.results["metrics"]
    h = 0.5 * (2 * (1 + math.log(2 * math.pi)) + math.log(0.75))
    assert m["cross_entropy"]["ci_low"] <= h <= m["cross_entropy"]["ci_high"]
    assert m["entropy_gap"]["ci_low"] <= 0 <= m["entropy_gap"]["ci_high"]
    assert (run.dir / "samples.png").is_file()

    from gmbench.models.model import build_model, import_model_file

    module, source = import_model_file(path)
    model = build_model(module, source, get_dataset("gauss-2").info, "cpu")
    a, b = model.sample(7, seed=3), model.sample(7, seed=3)
    assert a.shape == (7, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_nll_ci_is_the_normal_interval(write_model, gmbench_cli):
    """stderr and CI equal the textbook formulas over per-example values."""
    path = write_model("""
        import torch
        DATASET = "gauss-3"
        model = torch.distributions.MultivariateNormal(torch.zeros(3), torch.eye(3) * 1.5)
    """)
    rec = gmbench_cli("evaluate", path, "--metrics", "nll").metric("nll")
    x = get_dataset("gauss-3").test.x.astype(np.float64)
    per = 0.5 * (x**2).sum(1) / 1.5 + 1.5 * math.log(2 * math.pi * 1.5)
    se = per.std(ddof=1) / math.sqrt(len(per))
    assert rec["value"] == pytest.approx(per.mean(), rel=1e-6)
    assert rec["stderr"] == pytest.approx(se, rel=1e-4)
    assert rec["ci_high"] - rec["ci_low"] == pytest.approx(2 * 1.959964 * se, rel=1e-4)
