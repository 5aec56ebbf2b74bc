"""Classification Accuracy Score metrics: ``cas`` and ``cas_ratio`` (SPEC section 4).

Wiring only; the classifier and estimates live in :mod:`gmbench.cas`. With
``sample_conditional`` the model is asked for a balanced set of classes and those requested
classes are the labels (true CAS, ``labels: "conditional"``); otherwise ``ev.samples`` are
labelled by :func:`pseudo_labels` (``labels: "pseudo"``). The classifier trained on ``n``
generated examples is tested on the whole real test split; ``cas_ratio`` divides by the same
classifier (same seed) trained on ``n`` real training examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gmbench import cas
from gmbench.features import PixelFeatures
from gmbench.metrics.registry import Measurement, Metric, register
from gmbench.rng import child_seed

if TYPE_CHECKING:
    from gmbench.datasets import Dataset
    from gmbench.evaluation import Evaluation

__all__ = ["SPEC", "majority_vote", "pseudo_labels"]

SPEC = cas.ClassifierSpec()
PSEUDO_VOTES = 10  # kNN fallback: majority of the 10 nearest training examples


def labelled(dataset: Dataset) -> str | None:
    if dataset.info.num_classes is None or dataset.train.y is None or dataset.test.y is None:
        return "needs a labelled dataset"
    return None


def pseudo_labels(ev: Evaluation) -> tuple[np.ndarray, str]:
    """Class labels for ``ev.samples`` and how they were obtained.

    The dataset's bundled classifier (:func:`gmbench.extractors.classifier_for`) when its
    weights exist; otherwise the majority vote of the 10 nearest real training examples in
    the evaluation's feature space (a kNN classifier on the training set).
    """
    from gmbench.extractors import classifier_available, classifier_for

    if classifier_available(ev.info.name):
        clf = classifier_for(ev.info.name, device=ev.config.device)
        return (np.asarray(clf.predict(ev.samples), dtype=np.int64),
                f"bundled classifier {clf.name} (sha256 {clf.sha256[:12]}, test accuracy "
                f"{clf.test_accuracy:.4f})")
    from gmbench.metrics.memorization import nearest_train

    _, idx = nearest_train(ev, "samples", "features")  # (m, 10)
    votes = np.asarray(ev.dataset.train.y)[idx[:, :PSEUDO_VOTES]]  # (m, k)
    return majority_vote(votes, int(ev.info.num_classes)), (
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


def _inputs(ev: Evaluation, x: np.ndarray) -> np.ndarray:
    """Classifier inputs ``(n, D)``: scaled to [0, 1], or standardized for continuous data."""
    flat = PixelFeatures(ev.info)(x)
    if ev.info.is_discrete:
        return flat
    def moments() -> tuple[np.ndarray, np.ndarray]:
        real = PixelFeatures(ev.info)(ev.dataset.train.x)
        return real.mean(0), real.std(0) + 1e-6

    mean, std = ev.memo("cas/standardize", moments)
    return (flat - mean) / std


@dataclass(frozen=True)
class _CasRun:
    correct_synthetic: np.ndarray
    correct_real: np.ndarray
    details: dict[str, Any]


def _synthetic(ev: Evaluation) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    if "sample_conditional" in ev.model.capabilities:
        labels = cas.balanced_labels(ev.n_samples, int(ev.info.num_classes),
                                     rng=ev.rng("cas", "labels"))
        x = ev.model.sample_conditional(labels, seed=child_seed(ev.seed, "cas", "samples"),
                                        batch_size=max(ev.config.batch_size, 1000))
        return x, labels, {"labels": "conditional",
                           "label_source": "requested classes, balanced"}
    labels, how = pseudo_labels(ev)
    return ev.samples, labels, {"labels": "pseudo", "label_source": how}


def _run(ev: Evaluation) -> _CasRun:
    device = ev.config.device
    x_syn, y_syn, details = _synthetic(ev)
    n = len(x_syn)
    train = ev.dataset.train
    n_real = min(n, len(train))
    pick = np.sort(ev.rng("cas", "real-subset").choice(len(train), n_real, replace=False))
    seed = child_seed(ev.seed, "cas", "classifier")
    num_classes = int(ev.info.num_classes)
    x_test = _inputs(ev, ev.dataset.test.x)
    y_test = np.asarray(ev.dataset.test.y)
    correct = {}
    for name, x, y in (("synthetic", x_syn, y_syn),
                       ("real", train.x[pick], np.asarray(train.y)[pick])):
        net = cas.train_classifier(_inputs(ev, x), y, num_classes=num_classes, seed=seed,
                                   spec=SPEC, device=device)
        correct[name] = cas.predict(net, x_test, device=device) == y_test
    details.update({
        "classifier": SPEC.describe(),
        "n_train_synthetic": n,
        "n_train_real": n_real,
        "steps": SPEC.steps(n),
        "synthetic_label_histogram": np.bincount(y_syn, minlength=num_classes).tolist(),
        "real_accuracy": float(correct["real"].mean()),
        "test_split": f"all {len(y_test)} real test examples",
        "seeded": "initialization and shuffling from the run seed; both classifiers share it",
    })
    return _CasRun(correct["synthetic"], correct["real"], details)


def _cas_run(ev: Evaluation) -> _CasRun:
    return ev.memo("cas/run", lambda: _run(ev))


def _cas(ev: Evaluation) -> Measurement:
    r = _cas_run(ev)
    return Measurement(cas.accuracy_estimate(r.correct_synthetic), feature_space="data",
                       details={**r.details, "chance": 1.0 / int(ev.info.num_classes)})


def _cas_ratio(ev: Evaluation) -> Measurement:
    r = _cas_run(ev)
    est = cas.cas_ratio_estimate(r.correct_synthetic, r.correct_real,
                                 rng=ev.rng("cas_ratio"))
    return Measurement(est, feature_space="data", details={
        **r.details, "ratio": "cas / accuracy of the same classifier trained on n real "
                              "training examples; paired bootstrap over test examples"})


for _metric in (
    Metric("cas", "cas", "accuracy on real test data of a fixed MLP trained on labelled "
           "samples (conditional, else pseudo-labels)", (), True, "accuracy", _cas,
           applies=labelled, needs_any=("sample", "sample_conditional")),
    Metric("cas_ratio", "cas", "cas / accuracy of the same classifier trained on as many "
           "real training examples", (), True, "ratio", _cas_ratio, applies=labelled,
           needs_any=("sample", "sample_conditional")),
):
    register(_metric)
