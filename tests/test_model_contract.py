"""The model contract (``docs/CONTRACT.md``, section 2): loading, sample signatures, seeding,
and every bad input giving exit code 2 and a one-paragraph message that names the file,
member and fix."""

from __future__ import annotations

import json
import random
import textwrap

import numpy as np
import pytest
import torch

from gmbench.datasets import get_dataset
from gmbench.models.model import build_model, import_model_file


def load(path, dataset="digits"):
    module, source = import_model_file(path)
    return build_model(module, source, get_dataset(dataset).info, "cpu")


def assert_clear_error(run, *needles):
    """Exit 2, one paragraph on stderr, no traceback, every needle mentioned."""
    assert run.code == 2, (run.out, run.err)
    assert "Traceback" not in run.err
    assert run.err.startswith("gmbench: error: ")
    assert run.err.strip().count("\n") == 0, run.err
    for needle in needles:
        assert needle in run.err, (needle, run.err)


# --------------------------------------------------------------------------- loading
def test_syntax_error_names_file_and_line(write_model, gmbench_cli):
    path = write_model("x = 1\ndef broken(:\n    pass\n", name="broken.py")
    assert_clear_error(gmbench_cli("evaluate", path), "broken.py", "line 2", "does not import")


def test_import_time_exception_names_line(write_model, gmbench_cli):
    path = write_model("import math\n\nvalue = 1 / 0\n", name="divides.py")
    assert_clear_error(gmbench_cli("evaluate", path), "ZeroDivisionError", "divides.py line 3")


def test_missing_package_says_install(write_model, gmbench_cli):
    path = write_model("import not_a_real_package_xyz\n")
    assert_clear_error(gmbench_cli("evaluate", path), "not_a_real_package_xyz", "Install")


def test_missing_file(gmbench_cli, tmp_path):
    assert_clear_error(gmbench_cli("evaluate", tmp_path / "nope.py"), "does not exist")


def test_neither_load_nor_model(write_model, gmbench_cli):
    path = write_model("X = 3\n", name="empty_model.py")
    assert_clear_error(gmbench_cli("evaluate", path), "empty_model.py", "load(dataset, device)",
                       "`model`")


def test_model_without_sample_or_log_prob(write_model, gmbench_cli):
    path = write_model("model = object()\n")
    assert_clear_error(gmbench_cli("evaluate", path), "neither `sample(n)` nor `log_prob(x)`")


class Gauss2:
    """N(0, 4 I) on toy2d-gmm8, as a class: tests pass it where its instance belongs."""

    def sample(self, n):
        return torch.randn(n, 2) * 2

    def log_prob(self, x):
        return torch.distributions.Normal(0.0, 2.0).log_prob(torch.as_tensor(x)).sum(-1)


def test_a_class_instead_of_a_model_object_says_pass_an_instance(write_model, gmbench_cli):
    import gmbench
    from gmbench.errors import ModelError

    with pytest.raises(ModelError, match=r"the class Gauss2, not a model object; pass an "
                                         r"instance: gmbench\.evaluate\(Gauss2\(\), \.\.\.\)"):
        gmbench.evaluate(Gauss2, dataset="toy2d-gmm8", metrics=["nll"], progress=False)
    path = write_model("""
        import torch
        DATASET = "toy2d-gmm8"
        class M:
            def sample(self, n):
                return torch.randn(n, 2)
        model = M
    """, name="classy.py")
    assert_clear_error(gmbench_cli("evaluate", path), "classy.py: `model` is the class M",
                       "set `model = M()`")


@pytest.mark.parametrize("member, value, kind", [("sample", "5", "an int"),
                                                 ("log_prob", "torch.zeros(3)", "a Tensor")])
def test_a_member_that_is_not_a_method_is_named(member, value, kind):
    """`sample = 5` (cached samples stored under the member's name) is an error naming it, not
    a model without `sample` whose sample metrics are all skipped."""
    import gmbench
    from gmbench.errors import ModelError

    model = Gauss2()
    setattr(model, member, eval(value))
    with pytest.raises(ModelError, match=rf"the model's `{member}` is {kind}, not a method"):
        gmbench.evaluate(model, dataset="toy2d-gmm8", progress=False)


def test_load_receives_datasetinfo_and_device(write_model):
    path = write_model("""
        import torch
        SEEN = {}
        def load(dataset, device):
            SEEN.update(name=dataset.name, shape=dataset.shape, levels=dataset.levels,
                        device=device)
            class M:
                def sample(self, n):
                    return torch.zeros(n, *dataset.shape, dtype=torch.long)
            return M()
    """)
    module, source = import_model_file(path)
    build_model(module, source, get_dataset("digits").info, "cpu")
    assert module.SEEN == {"name": "digits", "shape": (1, 8, 8), "levels": 17, "device": "cpu"}


def test_load_raising_is_reported(write_model, gmbench_cli):
    path = write_model("def load(dataset, device):\n    raise RuntimeError('no weights')\n",
                       name="loader.py")
    assert_clear_error(gmbench_cli("evaluate", path), "`load(dataset, device)` raised",
                       "no weights", "loader.py line 2")


def test_dataset_constant_and_override(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        model = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "nll")
    assert run.results["dataset"]["name"] == "gauss-2"
    assert_clear_error(gmbench_cli("evaluate", path, "--dataset", "gauss-3", "--metrics", "nll"),
                       "`log_prob`")


def test_unknown_dataset_did_you_mean(write_model, gmbench_cli):
    path = write_model("import torch\nmodel = torch.distributions.Normal(0.0, 1.0)\n")
    assert_clear_error(gmbench_cli("evaluate", path, "--dataset", "fashion_mnist"),
                       "Unknown dataset 'fashion_mnist'", "Did you mean 'fashion-mnist'?")


def test_unknown_metric_did_you_mean(write_model, gmbench_cli):
    path = write_model("import torch\nDATASET='gauss-1'\n"
                       "model = torch.distributions.MultivariateNormal(torch.zeros(1), torch.eye(1))\n")
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "bits_per_dimension"),
                       "Unknown metric", "Did you mean 'bits_per_dim'?")


# --------------------------------------------------------------------------- samples
SAMPLER = """
    import numpy as np
    import torch
    DATASET = "digits"
    class M:
        def sample(self, n):
            return {expr}
    model = M()
"""


@pytest.mark.parametrize("expr, needles", [
    ("torch.zeros(n, 64, dtype=torch.long)", ["shape (", "expected (", "reshape it to"]),
    ("torch.zeros(n + 1, 1, 8, 8, dtype=torch.long)", ["returned 5", "asked for 4"]),
    ("np.full((n, 1, 8, 8), 17)", ["integers in [17, 17]", "[0, 16]"]),
    ("np.full((n, 1, 8, 8), -1)", ["integers in [-1, -1]"]),
    ("torch.full((n, 1, 8, 8), 2.5)", ["floats in [2.5, 2.5]", "min(floor(y*17), 16)"]),
    ("torch.full((n, 1, 8, 8), float('nan'))", ["non-finite"]),
    ("np.array(['a'] * n)", ["dtype"]),
    ("{'x': 1}", ["returned a dict", "torch tensor or a numpy array"]),
])
def test_bad_samples(write_model, expr, needles):
    from gmbench.errors import ModelError

    model = load(write_model(SAMPLER.format(expr=expr)))
    with pytest.raises(ModelError) as info:
        model.sample(4, seed=0)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    assert "`sample`" in str(info.value)


def test_float_samples_map_to_levels(write_model):
    model = load(write_model(SAMPLER.format(expr="torch.linspace(0, 1, 64).repeat(n, 1).reshape(n, 1, 8, 8)")))
    x = model.sample(2, seed=0).reshape(2, -1)
    y = np.linspace(0, 1, 64, dtype=np.float32)
    np.testing.assert_array_equal(x[0], np.minimum(np.floor(y * 17), 16))
    assert x.dtype == np.int64 and x.max() == 16 and x.min() == 0


def test_sample_error_inside_model_is_reported_with_line(write_model, gmbench_cli):
    path = write_model("""
        DATASET = "digits"
        class M:
            def sample(self, n):
                raise ValueError("oops in sampler")
        model = M()
    """, name="sampler.py")
    assert_clear_error(gmbench_cli("evaluate", path),
                       "`sample` raised ValueError: oops in sampler", "sampler.py line 5")


@pytest.mark.parametrize("signature, call", [
    ("def sample(self, n):", "torch.randn(n, 2)"),
    ("def sample(self, n, *, seed=None):", "torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))"),
    ("def sample(self, sample_shape=torch.Size()):", "torch.randn(*sample_shape, 2)"),
])
def test_sample_signatures_and_seeding(write_model, signature, call):
    path = write_model(f"""
        import torch
        DATASET = "gauss-2"
        class M:
            {signature}
                return {call}
        model = M()
    """)
    model = load(path, "gauss-2")
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    a = model.sample(2500, seed=11)
    b = model.sample(2500, seed=11)
    c = model.sample(2500, seed=12)
    assert a.shape == (2500, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # batches get distinct seeds: no repeated block
    assert not np.array_equal(a[:1000], a[1000:2000])
    # the global RNG state is left as it was
    assert random.getstate() == state[0]
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])
    assert torch.equal(torch.get_rng_state(), state[2])


def test_distribution_object_is_a_model(write_model):
    path = write_model("""
        import torch
        model = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1)
    """)
    model = load(path, "gauss-2")
    assert {"sample", "log_prob"} <= model.capabilities
    x = np.zeros((3, 2), np.float32)
    np.testing.assert_allclose(model.log_prob(x, seed=0, split="test"),
                               -np.log(2 * np.pi) * np.ones(3), rtol=1e-6)


# --------------------------------------------------------------------------- log_prob
LOGPROB = """
    import torch
    DATASET = "digits"
    class M:
        def log_prob(self, x):
            out = torch.full((x.shape[0],), -100.0, dtype=torch.float64)
            {body}
            return out
    model = M()
"""


def test_nan_log_probs_say_how_many_and_where(write_model, gmbench_cli):
    path = write_model(LOGPROB.format(body="out[3] = float('nan'); out[7] = float('nan'); out[9] = -float('inf')"),
                       name="nanmodel.py")
    assert_clear_error(gmbench_cli("evaluate", path, "--batch-size", "1000"), "nanmodel.py",
                       "`log_prob`", "2 NaN (at test rows 3, 7)", "1 -inf (at test rows 9)")


def test_positive_log_mass_names_dequantized(write_model, gmbench_cli):
    path = write_model(LOGPROB.format(body="out += 150.0"))
    assert_clear_error(gmbench_cli("evaluate", path), "positive log-probability",
                       'log_prob_space = "dequantized"')


def test_log_prob_wrong_shape(write_model, gmbench_cli):
    path = write_model(LOGPROB.format(body="out = out[:, None].repeat(1, 64)"))
    assert_clear_error(gmbench_cli("evaluate", path), "returned shape", "Sum over the event")


def test_bad_log_prob_space_and_kind(write_model, gmbench_cli):
    path = write_model(textwrap.dedent(LOGPROB.format(body="")) + "model.log_prob_space = 'pixels'\n")
    assert_clear_error(gmbench_cli("evaluate", path), "`log_prob_space` is 'pixels'")
    path = write_model(textwrap.dedent(LOGPROB.format(body="")) + "model.log_prob_kind = 'elbo'\n")
    assert_clear_error(gmbench_cli("evaluate", path), "`log_prob_kind` is 'elbo'", "lower_bound")
    path = write_model(textwrap.dedent(LOGPROB.format(body="")).replace('"digits"', '"gauss-2"')
                       + "model.log_prob_space = 'dequantized'\n")
    assert_clear_error(gmbench_cli("evaluate", path), "only for discrete data")


def test_lower_bound_kind_is_labelled(write_model, gmbench_cli):
    path = write_model(textwrap.dedent(LOGPROB.format(body="")) + "model.log_prob_kind = 'lower_bound'\n")
    run = gmbench_cli("evaluate", path)
    assert run.code == 0
    assert {r["kind"] for r in run.results["metrics"].values()} == {"lower_bound"}
    assert "lower_bound" in run.out


# --------------------------------------------------------------------------- selection
def test_missing_capability_skipped_by_default_fails_when_asked(write_model, gmbench_cli):
    path = write_model(LOGPROB.format(body=""))
    run = gmbench_cli("evaluate", path)
    assert run.code == 0
    assert "nll" in run.results["metrics"]
    sample_metrics = [k for k, why in run.results["skipped"].items() if "needs sample" in why]
    if sample_metrics:  # present once sample metrics are registered
        assert "skipped:" in run.out and sample_metrics[0] in run.out
    path2 = write_model("""
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return torch.zeros(n, 1, 8, 8, dtype=torch.long)
        model = M()
    """)
    assert_clear_error(gmbench_cli("evaluate", path2, "--metrics", "nll"), "'nll'",
                       "needs log_prob", "Drop it from --metrics")


def test_same_seed_same_results(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "digits"
        class Noisy:
            log_prob_kind = "estimate"
            def sample(self, n):
                return torch.randint(0, 17, (n, 1, 8, 8))
            def log_prob(self, x):
                # a stochastic estimate, as an IWAE would give
                return -180.0 - torch.rand(x.shape[0], dtype=torch.float64)
        model = Noisy()
    """)
    runs = [gmbench_cli("evaluate", path, "--seed", s) for s in ("5", "5", "6")]
    values = [{k: v["value"] for k, v in r.results["metrics"].items()} for r in runs]
    assert values[0] == values[1]
    assert json.dumps(runs[0].results["metrics"]) == json.dumps(runs[1].results["metrics"])
    # another seed draws other samples; the likelihood's own noise is keyed by the examples,
    # not the seed (common random numbers): two runs compare example by example
    assert values[0]["mmd"] != values[2]["mmd"]
    assert values[0]["nll"] == values[2]["nll"]


def test_cuda_without_a_gpu_is_a_clear_error(write_model, gmbench_cli):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    path = write_model(SAMPLER.format(expr="torch.zeros(n, 1, 8, 8, dtype=torch.long)"))
    assert_clear_error(gmbench_cli("evaluate", path, "--device", "cuda"), "--device cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_same_likelihood(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        def load(dataset, device):
            return torch.distributions.MultivariateNormal(
                torch.zeros(2, device=device), torch.eye(2, device=device))
    """)
    cpu = gmbench_cli("evaluate", path, "--metrics", "nll").metric("nll")["value"]
    gpu = gmbench_cli("evaluate", path, "--metrics", "nll", "--device", "cuda")
    assert gpu.metric("nll")["value"] == pytest.approx(cpu, rel=1e-5)


def test_dequantized_inputs_stay_inside_their_cell(write_model):
    """y = (x + u) / L never reaches the next cell, even where float32 would round up."""
    path = write_model("""
        import torch
        DATASET = "fashion-mnist"
        SEEN = []
        class CellCheck:
            log_prob_space = "dequantized"
            def log_prob(self, y):
                SEEN.append(y)
                return torch.zeros(len(y), dtype=torch.float64)
        model = CellCheck()
    """)
    from gmbench.datasets import DatasetInfo

    module, source = import_model_file(path)
    info = DatasetInfo("fashion-mnist", "image", (1, 28, 28), 256, 10)
    model = build_model(module, source, info, "cpu")
    x = np.full((4000, 1, 28, 28), 255, dtype=np.uint8)
    x[::2] = 254
    model.log_prob(x, seed=0, split="test", batch_size=1000)
    y = torch.cat(module.SEEN)
    cell = torch.from_numpy(x).long()
    assert y.dtype == torch.float32
    assert bool((y >= cell / 256).all()) and bool((y < (cell + 1) / 256.0).all())
    assert float(y.max()) < 1.0


def test_written_files_get_ordinary_permissions(write_model, gmbench_cli):
    import os
    import stat

    path = write_model(SAMPLER.format(expr="torch.zeros(n, 1, 8, 8, dtype=torch.long)"))
    run = gmbench_cli("evaluate", path, "--metrics", "copy_rate")
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((run.dir / "results.json").stat().st_mode)
    assert mode == 0o666 & ~umask


def test_a_binomial_distribution_works_unchanged_on_digits():
    """torch.distributions.Binomial samples whole numbers as floats: read as the 17 levels,
    and its log_prob (a mass on the levels) is the nll, exactly."""
    import gmbench
    from gmbench.datasets import get_dataset

    probs = torch.linspace(0.1, 0.9, 64).reshape(1, 8, 8)
    dist = torch.distributions.Independent(torch.distributions.Binomial(16, probs=probs), 3)
    run = gmbench.evaluate(dist, dataset="digits", metrics=["nll", "mmd"], progress=False,
                           n_samples=2000)
    test = torch.as_tensor(get_dataset("digits").test.x, dtype=torch.float64)
    expected = -dist.log_prob(test.float()).double().mean().item()
    assert run.document["metrics"]["nll"]["value"] == pytest.approx(expected, rel=1e-6)
    assert run.document["metrics"]["mmd"]["value"] > 0.1  # its samples: a poor model
