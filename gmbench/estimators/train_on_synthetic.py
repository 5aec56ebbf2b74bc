"""Classification Accuracy Score: the fixed classifier, the support gate, and the estimates.

CAS (Ravuri and Vinyals 2019) trains a classifier on generated, labelled samples and tests it
on real data. gmbench's protocol (version 2):

* **Classifier** (:class:`ClassifierSpec`): a one-hidden-layer ReLU perceptron on the flattened
  data scaled to ``[0, 1]`` (discrete data: level ``k`` becomes ``k / (levels - 1)``;
  continuous data: standardized with the real training set's mean and deviation), trained
  from a seeded initialization with Adam for a fixed number of steps; no augmentation, no
  early stopping.
* **Labels.** A conditional model's samples carry the classes it was asked for. An
  unconditional model's samples get pseudo-labels from a labeller (the dataset's bundled
  classifier) **only where the labeller can be trusted**: inside the support of the real
  training data, i.e. within the k-nearest-neighbour ball (k = 5, the Kynkäänniemi/Naeem
  manifold estimate) of one of the sample's nearest training points in the evaluation's
  feature space. Elsewhere the label is drawn uniformly at random (:func:`support_gate`).
  Without the gate, pseudo-label CAS measures the labeller, not the samples: a classifier
  trained on uniform noise labelled by a good classifier learns that classifier's decision
  function from the noise (distillation) and scores far above chance on real data (0.49-0.68
  on digits with protocol 1).
* **Interval.** The same classifier is trained on the full synthetic set and, in the same
  pass, on ``replicates`` bootstrap resamples of it (Poisson multiplicities as loss weights,
  each from its own initialization; :func:`gmbench.estimators.mlp.train_parallel_mlp`). The value
  is the full classifier's accuracy on the real test split; its variance adds the spread of
  the replicates' accuracies (the randomness of the samples and of training, which is what
  changes between runs) and the binomial variance over test examples.

References:
    Ravuri, Vinyals. "Classification Accuracy Score for Conditional Generative Models."
    NeurIPS 2019. https://arxiv.org/abs/1905.10887
    Kynkäänniemi et al. "Improved Precision and Recall Metric for Assessing Generative
    Models." NeurIPS 2019 (the k-NN support estimate).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from gmbench.estimators.hypothesis import welch_df
from gmbench.estimators.mlp import predict_parallel, train_parallel_mlp
from gmbench.estimators.uncertainty import Estimate

__all__ = [
    "ClassifierSpec",
    "FitResult",
    "balanced_labels",
    "fit_and_score",
    "inside_support",
    "support_gate",
]


@dataclass(frozen=True)
class ClassifierSpec:
    """The fixed CAS classifier.

    Attributes:
        hidden: width of the hidden layer (Linear + ReLU), then a linear layer to the logits.
        epochs: passes over the training set ...
        min_steps: ... but at least this many optimizer steps (small training sets, e.g. the
            360 examples of digits, would otherwise get a handful of steps).
        batch_size: examples per step; reshuffled every epoch (seeded).
        lr: Adam learning rate (betas 0.9, 0.999; no weight decay, no schedule).
        replicates: bootstrap replicates trained beside the full classifier for the interval.
    """

    hidden: int = 256
    epochs: int = 10
    min_steps: int = 500
    batch_size: int = 256
    lr: float = 1e-3
    replicates: int = 8

    def steps(self, n: int) -> int:
        return max(self.epochs * math.ceil(n / self.batch_size), self.min_steps)

    def describe(self) -> dict[str, object]:
        return {"architecture": f"MLP D -> {self.hidden} -> classes (ReLU)", **asdict(self),
                "optimizer": "Adam", "augmentation": "none",
                "input": "flattened data scaled to [0, 1] (continuous: standardized)"}


def balanced_labels(n: int, num_classes: int, *, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, each class ``floor(n / C)`` or ``ceil(n / C)`` times, in seeded order."""
    return rng.permutation(np.arange(n) % num_classes)


def inside_support(neighbour_dist: np.ndarray, neighbour_idx: np.ndarray,
                   train_radius: np.ndarray) -> np.ndarray:
    """Whether each sample lies inside the k-NN ball of one of its listed nearest training
    points: ``(m, K)`` distances and indices of those points, ``(N,)`` their radii; returns
    ``(m,)`` bool."""
    return (neighbour_dist <= train_radius[neighbour_idx]).any(axis=1)


def support_gate(labels: np.ndarray, inside: np.ndarray, num_classes: int, *,
                 rng: np.random.Generator) -> np.ndarray:
    """Keep the labeller's label where the sample is inside the data's support; elsewhere a
    label drawn uniformly at random, so that off-support samples carry no information about
    the labeller."""
    random = rng.integers(0, num_classes, size=len(labels))
    return np.where(inside, labels, random).astype(np.int64)


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit_and_score`.

    Attributes:
        correct: ``(n_test,)`` whether the full classifier is right on each test example.
        replicate_accuracy: ``(R,)`` test accuracy of each bootstrap replicate.
    """

    correct: np.ndarray
    replicate_accuracy: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    def variance(self) -> float:
        """Variance of the accuracy: the replicates' spread plus the binomial variance over
        test examples."""
        p, n = self.accuracy, len(self.correct)
        rep = float(np.var(self.replicate_accuracy, ddof=1)) \
            if len(self.replicate_accuracy) > 1 else 0.0
        return rep + p * (1 - p) / n

    def degrees_of_freedom(self) -> float | None:
        """Degrees of freedom of :meth:`variance` (Welch–Satterthwaite): the replicates' part
        has ``R - 1``, the binomial part is known (``None``: many)."""
        r = len(self.replicate_accuracy)
        if r < 2:
            return None
        rep = float(np.var(self.replicate_accuracy, ddof=1))
        if rep <= 0:
            return None
        p, n = self.accuracy, len(self.correct)
        return welch_df(math.sqrt(rep), r - 1, math.sqrt(p * (1 - p) / n), None)

    def estimate(self) -> Estimate:
        p, se = self.accuracy, math.sqrt(self.variance())
        return Estimate.normal(p, se, low=0.0, high=1.0, n=len(self.correct),
                        method=f"normal: spread of {len(self.replicate_accuracy)} bootstrap-retrained "
                        "classifiers (samples and training) + binomial over test examples")


def fit_and_score(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                  num_classes: int, seed: int, spec: ClassifierSpec = ClassifierSpec(),
                  replicates: int | None = None, device: str = "cpu") -> FitResult:
    """Train the classifier on ``(x, y)`` and ``replicates`` bootstrap resamples of it in one
    pass; score all of them on the test set.

    Args:
        x: ``(n, D)`` inputs (already scaled); y: ``(n,)`` labels in ``[0, num_classes)``.
        x_test, y_test: the real test split, scaled the same way.
        num_classes: number of classes.
        seed: seeds the initializations, the resampling and the minibatch order.
        spec: the classifier.
        replicates: bootstrap replicates (default ``spec.replicates``; 0 for none).
        device: where to train.
    """
    r = spec.replicates if replicates is None else replicates
    rng = np.random.default_rng(seed)
    weights = np.ones((1 + r, len(x)), dtype=np.float32)
    weights[1:] = rng.poisson(1.0, size=(r, len(x)))
    net = train_parallel_mlp(x, y, classes=num_classes, hidden=spec.hidden, weights=weights,
                             steps=spec.steps(len(x)), seed=seed, batch_size=spec.batch_size,
                             lr=spec.lr, device=device)
    pred = predict_parallel(net, x_test, device=device)  # (1 + R, n_test)
    correct = pred == np.asarray(y_test)[None]
    return FitResult(correct=correct[0], replicate_accuracy=correct[1:].mean(axis=1))
