"""Classification Accuracy Score metrics: ``cas`` and ``cas_ratio`` (``docs/CONTRACT.md``,
section 4).

Wiring only; the protocol, classifier and estimates live in :mod:`gmbench.estimators.train_on_synthetic`. With
``sample_conditional`` the model is asked for a balanced set of classes and those requested
classes are the labels (true CAS, ``labels: "conditional"``); otherwise ``ev.samples`` are
labelled by :func:`pseudo_labels` behind the support gate (``labels: "pseudo"``). The
classifier trained on ``n`` generated examples is tested on the whole real test split;
``cas_ratio`` divides by the same classifier trained on ``n`` real training examples (a fixed
subset and seed, cached: it does not depend on the model or the run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gmbench.core.files import sha256_bytes
from gmbench.core.rng import child_seed
from gmbench.estimators import train_on_synthetic as cas
from gmbench.estimators.prdc import kth_neighbor_radius
from gmbench.estimators.uncertainty import Estimate
from gmbench.features.extractors import ClassifierFeatures, PixelFeatures
from gmbench.metrics.context import Context
from gmbench.metrics.memorization import nearest_train
from gmbench.metrics.metric import Measurement, Metric, register

if TYPE_CHECKING:
    from gmbench.datasets import Dataset

__all__ = ["CLASSIFIER", "majority_vote", "pseudo_labels"]

CLASSIFIER = cas.ClassifierSpec()
PSEUDO_VOTES = 10  # kNN fallback: majority of the 10 nearest training examples


def labelled(dataset: Dataset) -> str | None:
    if dataset.info.num_classes is None or dataset.train.y is None or dataset.test.y is None:
        return "needs a labelled dataset"
    return None


REFERENCE_SEED = 0  # the real-data reference classifier does not depend on the run
SUPPORT_K = 5  # samples inside the k-NN ball of a training point keep their pseudo-label


def _train_radius(ev: Context) -> np.ndarray:
    """``(N,)`` distance of every training point to its ``SUPPORT_K``-th nearest other training
    point in the evaluation's feature space; model-independent, cached beside the features."""
    train = ev.features("train")
    return ev.model_independent(f"train-knn{SUPPORT_K}-radius", lambda: {
        "radius": kth_neighbor_radius(train, k=SUPPORT_K, dtype=torch.float32)},
        rows=len(train))["radius"]


def _num_classes(ev: Context) -> int:
    assert ev.info.num_classes is not None  # `labelled` lets only labelled datasets through
    return int(ev.info.num_classes)


def pseudo_labels(ev: Context) -> tuple[np.ndarray, str]:
    """The labeller's class for each of ``ev.samples`` and what the labeller was.

    The argmax of the dataset's bundled classifier (its logits from the evaluation's feature
    pass when that classifier is the feature extractor); otherwise the majority vote of the 10
    nearest real training examples in the evaluation's feature space.
    """
    from gmbench.features.classifier import classifier_available, classifier_for

    if isinstance(ev.extractor, ClassifierFeatures):
        clf = ev.extractor.classifier
        return (ev.logits("samples").argmax(1).astype(np.int64),
                f"bundled classifier {clf.name} (sha256 {clf.sha256[:12]}, test accuracy "
                f"{clf.test_accuracy:.4f}; logits from the feature pass)")
    if classifier_available(ev.info.name):
        clf = classifier_for(ev.info.name, device=ev.config.device, sha256=ev.dataset.sha256)
        return (np.asarray(clf.predict(ev.samples), dtype=np.int64),
                f"bundled classifier {clf.name} (sha256 {clf.sha256[:12]}, test accuracy "
                f"{clf.test_accuracy:.4f})")
    _, idx = nearest_train(ev, "samples", "features")  # (m, 10)
    votes = np.asarray(ev.dataset.train.y)[idx[:, :PSEUDO_VOTES]]  # (m, k)
    return majority_vote(votes, _num_classes(ev)), (
        f"kNN vote ({PSEUDO_VOTES} nearest training examples in {ev.feature_space}); "
        "bundled classifier not available")


def majority_vote(votes: np.ndarray, num_classes: int) -> np.ndarray:
    """Most frequent label per row of ``votes`` ``(m, k)`` (neighbours nearest first); ties go
    to the class whose first vote comes earliest (the nearer neighbour)."""
    m, k = votes.shape
    rows = np.arange(m)
    counts = np.zeros((m, num_classes), dtype=np.int64)
    np.add.at(counts, (rows[:, None], votes), 1)
    first = np.full((m, num_classes), k, dtype=np.int64)
    for j in reversed(range(k)):
        first[rows, votes[:, j]] = j
    return (counts * (k + 1) - first).argmax(1).astype(np.int64)


def _inputs(ev: Context, x: np.ndarray) -> np.ndarray:
    """Classifier inputs ``(n, D)``: scaled to [0, 1], or standardized for continuous data."""
    flat = PixelFeatures(ev.info)(x)
    if ev.info.is_discrete:
        return flat

    def moments() -> tuple[np.ndarray, np.ndarray]:
        real = PixelFeatures(ev.info)(ev.dataset.train.x)
        return real.mean(0), real.std(0) + 1e-6

    mean, std = ev.memo("cas/standardize", moments)
    return (flat - mean) / std


def _synthetic(ev: Context) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    num_classes = _num_classes(ev)
    if "sample_conditional" in ev.model.capabilities:
        labels = cas.balanced_labels(ev.n_samples, num_classes, rng=ev.rng("cas", "labels"))
        x = ev.model.sample_conditional(labels, seed=child_seed(ev.seed, "cas", "samples"))
        return x, labels, {"labels": "conditional",
                           "label_source": "requested classes, balanced"}
    labels, how = pseudo_labels(ev)
    dist, idx = nearest_train(ev, "samples", "features")
    inside = cas.inside_support(dist, idx, _train_radius(ev))
    gated = cas.support_gate(labels, inside, num_classes, rng=ev.rng("cas", "gate"))
    return ev.samples, gated, {
        "labels": "pseudo",
        "label_source": how,
        "support_gate": (f"a sample keeps its pseudo-label only inside the {SUPPORT_K}-NN ball "
                         f"of one of its {idx.shape[1]} nearest training points in "
                         f"{ev.feature_space}; elsewhere its label is uniformly random"),
        "supported_fraction": float(inside.mean()),
    }


def _reference(ev: Context, n: int) -> np.ndarray:
    """Per test example, whether the same classifier trained on ``n`` real training examples
    (a fixed subset, fixed seed: model- and run-independent, cached) is right, ``(n_test,)``."""
    train = ev.dataset.train
    num_classes = _num_classes(ev)

    def compute() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(child_seed(REFERENCE_SEED, "cas", "reference-subset"))
        pick = np.sort(rng.choice(len(train), n, replace=False))
        fit = cas.fit_and_score(_inputs(ev, train.x[pick]), np.asarray(train.y)[pick],
                                _inputs(ev, ev.dataset.test.x), np.asarray(ev.dataset.test.y),
                                num_classes=num_classes, spec=CLASSIFIER, replicates=0,
                                seed=child_seed(REFERENCE_SEED, "cas", "reference"),
                                device=ev.config.device)
        return {"correct": fit.correct.astype(np.uint8)}

    spec_hash = sha256_bytes(repr(CLASSIFIER).encode())[:16]
    arrays = ev.model_independent(f"cas-reference-n{n}-{spec_hash}", compute,
                                  rows=len(ev.dataset.test))
    return arrays["correct"].astype(bool)


@dataclass(frozen=True)
class _CasRun:
    fit: cas.FitResult
    reference_correct: np.ndarray
    details: dict[str, Any]


def _run(ev: Context) -> _CasRun:
    x_syn, y_syn, details = _synthetic(ev)
    n = len(x_syn)
    n_real = min(n, len(ev.dataset.train))
    num_classes = _num_classes(ev)
    x_test = _inputs(ev, ev.dataset.test.x)
    y_test = np.asarray(ev.dataset.test.y)
    fit = cas.fit_and_score(_inputs(ev, x_syn), y_syn, x_test, y_test,
                            num_classes=num_classes, spec=CLASSIFIER,
                            seed=child_seed(ev.seed, "cas", "classifier"),
                            device=ev.config.device)
    reference = _reference(ev, n_real)
    details.update({
        "classifier": CLASSIFIER.describe(),
        "n_train_synthetic": n,
        "n_train_real": n_real,
        "steps": CLASSIFIER.steps(n),
        "synthetic_label_histogram": np.bincount(y_syn, minlength=num_classes).tolist(),
        "replicate_accuracy": fit.replicate_accuracy.tolist(),
        "real_accuracy": float(reference.mean()),
        "test_split": f"all {len(y_test)} real test examples",
        "seeded": "initializations, resampling and shuffling from the run seed; the real "
                  "reference classifier uses a fixed seed and subset",
    })
    return _CasRun(fit, reference, details)


def _cas_run(ev: Context) -> _CasRun:
    return ev.memo("cas/run", lambda: _run(ev))


def _cas(ev: Context) -> Measurement:
    r = _cas_run(ev)
    return Measurement(r.fit.estimate(), feature_space="data",
                       details={**r.details, "chance": 1.0 / _num_classes(ev),
                                "df_runs": r.fit.degrees_of_freedom()})


def _cas_ratio(ev: Context) -> Measurement:
    r = _cas_run(ev)
    ref = float(r.reference_correct.mean())
    acc = r.fit.estimate()
    value, se = acc.value / ref, acc.stderr / ref
    est = Estimate.normal(value, se, n=acc.n, low=0.0, method=
                   "normal: the cas interval divided by the reference accuracy (fixed)")
    return Measurement(est, feature_space="data", details={
        **r.details, "ratio": "cas / accuracy of the same classifier trained on n real "
                              "training examples (a fixed subset and seed: the same for every "
                              "run and model)"})


for _metric in (
    Metric(key="cas", description="accuracy on real test data of a fixed MLP trained on labelled samples "
                       "(conditional, else support-gated pseudo-labels)",
           needs_any=("sample", "sample_conditional"), higher_is_better=True, protocol=3,
           unit="accuracy", compute=_cas, applies=labelled, bounds=(0.0, 1.0)),
    Metric(key="cas_ratio", description="cas / accuracy of the same classifier trained on as many real "
                       "training examples",
           needs_any=("sample", "sample_conditional"), higher_is_better=True, protocol=3,
           unit="ratio", compute=_cas_ratio, applies=labelled, judged_with="cas",
           bounds=(0.0, math.inf)),
):
    register(_metric)
