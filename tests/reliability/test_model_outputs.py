"""What a model returns or declares: log-probabilities that are not real numbers, samples that are
booleans, meta or sparse tensors or beyond the float range, one output buffer refilled on every
call, weights declarations that cannot be read or hashed, members, names and weights that raise
when read, exception messages too long to print, and log-densities that are not normalised, with
the importance-mass check that refuses them without flagging normalised models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cli_errors import assert_clear_error
from helpers import GOOD_LP, GOOD_SAMPLE, TOY, toy

import gmbench
from gmbench.datasets import get_dataset
from gmbench.errors import ModelError
from gmbench.estimators.montecarlo import importance_mass
from gmbench.metrics.likelihood import MASS_ROUNDING_TOL


# ------------------------------------------------------------------ what the model returns
@pytest.mark.parametrize("log_prob, needle", [
    ("torch.zeros(len(x), dtype=torch.complex64)", "complex64"),
    ("torch.zeros(len(x), dtype=torch.bool)", "bool"),
    ("['a'] * len(x)", "<U1"),
])
def test_log_probs_that_are_not_real_numbers_are_refused(write_model, gmbench_cli, log_prob,
                                                         needle):
    path = write_model(TOY.format(sample=GOOD_SAMPLE, log_prob=log_prob))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "nll"), "`log_prob`", needle)


def test_boolean_samples_are_refused_not_read_as_levels(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return torch.rand(n, 1, 8, 8) > 0.5
        model = M()
    """)
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "fid", "--n-samples", "50"),
                       "dtype bool")


def test_samples_beyond_float32_are_refused_not_made_infinite(write_model, gmbench_cli):
    path = write_model(TOY.format(sample="torch.full((n, 2), 1e300, dtype=torch.float64)",
                                  log_prob=GOOD_LP))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "float32")


@pytest.mark.parametrize("sample", ["torch.empty(n, 2, device='meta')",
                                    "torch.randn(n, 2).to_sparse()"])
def test_meta_and_sparse_tensors(write_model, gmbench_cli, sample):
    path = write_model(TOY.format(sample=sample, log_prob=GOOD_LP))
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50")
    if "meta" in sample:
        assert_clear_error(run, "meta tensor")
    else:  # a sparse tensor holds values: read densely
        assert run.code == 0, run.err


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


def test_numbers_beyond_the_float_range_are_not_estimable_not_a_traceback(write_model,
                                                                           gmbench_cli):
    tiny = write_model("""
        import torch
        DATASET = "digits"
        class M:
            def log_prob(self, x):
                return torch.full((len(x),), -1e5, dtype=torch.float64)
        model = M()
    """)
    run = gmbench_cli("evaluate", tiny, "--metrics", "nll,perplexity")
    assert run.code == 0, run.err
    assert run.metric("nll")["value"] == pytest.approx(1e5)
    assert run.metric("perplexity")["value"] is None
    huge = write_model("""
        import torch
        DATASET = "digits"
        log_prob_space = "dequantized"
        class M:
            log_prob_space = "dequantized"
            def log_prob(self, x):
                return torch.full((len(x),), 1000.0, dtype=torch.float64)
        model = M()
    """)
    run = gmbench_cli("evaluate", huge, "--metrics", "nll")
    assert run.code == 0, run.err
    assert "sums to more than e^" in run.metric("nll")["not_estimable"]


# ------------------------------------------------------------------ what the model declares and raises
@pytest.mark.parametrize("member", [
    "log_prob_space = property(lambda self: 1 / 0)",
    "__getattr__ = lambda self, name: (_ for _ in ()).throw(RuntimeError('no ' + name))",
])
def test_members_that_raise_on_access_are_a_clear_error(write_model, gmbench_cli, member):
    path = write_model(f"""
        import torch
        DATASET = "gauss-2"
        class M:
            {member}
            def sample(self, n):
                return torch.randn(n, 2)
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50")
    assert_clear_error(run, "ZeroDivisionError" if "property" in member else "RuntimeError: no ")


@pytest.mark.parametrize("weights", ["WEIGHTS = 5", "WEIGHTS = [object()]"])
def test_malformed_weights_declarations(write_model, gmbench_cli, weights):
    path = write_model(toy(weights))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "WEIGHTS")


def test_meta_parameters_cannot_be_hashed_and_say_so(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.empty(2, device="meta"))
            def sample(self, n):
                return torch.randn(n, 2)
        def load(dataset, device):
            return M()
    """)
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "`w`", "meta")


def test_an_object_whose_name_or_weights_raise_gets_a_model_error():
    class Named:
        @property
        def NAME(self):  # noqa: N802 - the contract's attribute
            raise RuntimeError("config not loaded")

        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))

    class Broken(torch.nn.Module):
        def state_dict(self, *a, **k):
            raise RuntimeError("custom state_dict failed")

        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))

    with pytest.raises(ModelError, match="reading `NAME` raised RuntimeError"):
        gmbench.evaluate(Named(), dataset="digits", progress=False, metrics=["copy_rate"])
    with pytest.raises(ModelError, match="hashing the model's weights.*custom state_dict"):
        gmbench.evaluate(Broken(), dataset="digits", progress=False, metrics=["copy_rate"])


def test_a_huge_exception_message_is_cut(write_model, gmbench_cli):
    path = write_model("""
        DATASET = "digits"
        class M:
            def sample(self, n):
                raise ValueError("x" * 200_000)
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "copy_rate")
    assert_clear_error(run, "200000 characters in all")
    assert len(run.err) < 5000


# ------------------------------------------------------------------ normalisation
def test_kl_exact_below_zero_is_not_estimable(write_model, gmbench_cli):
    path = write_model("""
        import torch
        DATASET = "gauss-2"
        class M:  # the truth's log-density plus 1 nat: not normalised
            def log_prob(self, x):
                cov = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
                mvn = torch.distributions.MultivariateNormal(torch.zeros(2), cov)
                return mvn.log_prob(x) + 1.0
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "kl_exact")
    assert run.code == 0, run.err
    rec = run.metric("kl_exact")
    assert rec["value"] is None and "normalised" in rec["not_estimable"]
    assert rec["value_if_estimable"] == pytest.approx(-1.0, abs=1e-4)


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
