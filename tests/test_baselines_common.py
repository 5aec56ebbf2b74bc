"""Every bundled baseline family, on every dataset it declares, through the same checks (as
``tests/metrics/test_common.py`` runs every metric): it loads as a user's model file does,
its datasets exist, it samples and/or scores within the contract, its weights have a
training record with the command that made them, and its board has its rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from gmbench_baselines import BASELINES
from gmbench_baselines.training.settings import SETTINGS, training_settings

from gmbench.api import load_model
from gmbench.core.background import thread_budget
from gmbench.core.rng import COMMON_SEED
from gmbench.datasets import get_dataset
from gmbench.storage.leaderboard import read_board

ROOT = Path(__file__).resolve().parents[1]
CASES = [(b.name, d) for b in BASELINES.values() for d in b.datasets]


@pytest.fixture(scope="module")
def models():
    cache: dict = {}

    def load(family: str, dataset: str):
        if (family, dataset) not in cache:
            with thread_budget(1):
                cache[family, dataset] = load_model(ROOT / "baselines" / f"{family}.py",
                                                    dataset=get_dataset(dataset))
        return cache[family, dataset]
    return load


@pytest.mark.parametrize(("family", "dataset"), CASES)
def test_it_loads_and_samples_or_scores_within_the_contract(family, dataset, models):
    model = models(family, dataset)  # a dataset that does not exist is a DatasetError
    info = get_dataset(dataset).info
    assert model.capabilities & {"sample", "log_prob", "token_log_prob"}, family
    if "sample" in model.capabilities:
        x = model.sample(16, seed=0)  # validated by the boundary: shape, levels, finite
        assert x.shape == (16, *info.shape)
        assert np.array_equal(x, model.sample(16, seed=0)), "the same seed, the same samples"
    if "log_prob" in model.capabilities:
        test = get_dataset(dataset).test.x[:8]
        lp = model.log_prob(test, seed=COMMON_SEED, split="test", batch_size=8)
        assert lp.shape == (8,) and np.isfinite(lp).all()
        if model.log_prob_space == "data" and info.is_discrete \
                and model.log_prob_kind != "estimate":
            assert (lp <= 1e-9).all(), "a probability mass is at most 1"
    if "token_log_prob" in model.capabilities:  # text: windows of the first test document
        doc = get_dataset(dataset).test.documents[0]
        width = min(model.text.context_length, 64)
        windows = doc[:4 * width].reshape(4, width).astype(np.int64)
        lp = model.token_log_prob(windows)
        assert lp.shape == windows.shape and np.isfinite(lp).all() and (lp <= 0).all()


@pytest.mark.parametrize(("family", "dataset"), CASES)
def test_its_weights_have_a_training_record_and_its_board_its_rows(family, dataset):
    baseline = BASELINES[family]
    if baseline.weights is not None:
        record = ROOT / "baselines" / "weights" / f"{baseline.weights}-{dataset}.json"
        assert record.is_file(), f"{family} on {dataset}: no training record {record.name}"
        doc = json.loads(record.read_text())
        # the entry point of today, or its 0.1 name (still a working shim)
        assert re.match(rf"python -m (gmbench_baselines\.training\.train|baselines\.train) "
                        rf"--family {baseline.weights} --dataset {dataset}\b",
                        doc["command"]), doc["command"]
        # a run stopped by its time budget says so (docs/baselines.md gives its epochs)
        if "complete" in doc:
            assert doc["complete"] == (doc["epochs_done"] >= doc["planned_epochs"]), record.name
    rows = [r for r in read_board(ROOT / "leaderboards" / f"{dataset}.csv")
            if r.model == family]
    assert rows, f"leaderboards/{dataset}.csv has no row of {family}"


TRAINED = sorted({(b.weights, d) for b in BASELINES.values() for d in b.datasets
                  if b.weights in SETTINGS})


@pytest.mark.parametrize(("family", "dataset"), TRAINED)
def test_its_settings_are_those_its_weights_were_trained_with(family, dataset):
    """The one table of training settings (``baselines/training/settings.py``) gives the
    architecture and planned epochs each committed weights file records: retraining with the
    recorded command trains the same network for as long."""
    doc = json.loads((ROOT / "baselines" / "weights" / f"{family}-{dataset}.json").read_text())
    plan = training_settings(family, get_dataset(dataset).info)
    assert {k: doc["config"].get(k) for k in plan.arch} == dict(plan.arch)
    assert doc["config"].get("components", None) == plan.extra.get("components")
    assert doc.get("planned_epochs", doc["epochs"]) == plan.epochs
