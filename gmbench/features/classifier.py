"""The bundled classifiers: one small convolutional network per image dataset.

Each classifier is trained by the project on its dataset's train split
(``python -m gmbench.features.train_classifier --dataset NAME``) and ships in this package as
``<dataset>.safetensors`` (weights, loaded without pickle) beside ``<dataset>.json`` (its
architecture, test accuracy, weights sha256 and how it was trained). Its penultimate layer is
the feature space of every sample metric on that dataset; its logits give the Inception Score
and pseudo-labels.

Example::

    clf = classifier_for("fashion-mnist")
    labels = clf.predict(x)        # (n,) int64, x in the dataset's representation
    feats = clf.features(x)        # (n, 128) float32
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmbench.core.errors import GmbenchError
from gmbench.core.files import sha256_file
from gmbench.core.generators import private_generators
from gmbench.features.net import ARCHITECTURES, Architecture, ConvClassifier

__all__ = [
    "BUNDLED_DATASETS",
    "SHARED",
    "Shared",
    "BundledClassifier",
    "ExtractorError",
    "classifier_available",
    "classifier_for",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLED_DATASETS = tuple(sorted(ARCHITECTURES))
# Images per forward pass. On a CPU the network runs in the channels-last layout (oneDNN's
# own for convolutions and pooling): 2x the throughput of the default layout on 60,000
# Fashion-MNIST images, features equal to within float32 round-off (6e-6 absolute); of
# batches of 64, 128 and 256 images, 256 was fastest here. Outputs do not depend on the batch
# size beyond round-off (bitwise on Fashion-MNIST, 5e-6 on digits). A GPU wants large batches.
BATCH_CPU = 256
BATCH_GPU = 1000


@dataclass(frozen=True)
class Shared:
    """A bundled dataset scored in another's feature space: the network of ``source``'s
    classifier on this dataset's images (integers ``0..levels-1`` scaled to ``[0, 1]`` as
    always), with its accuracy on this dataset's test split under ``accuracy_key`` in the
    source's record (written by ``python -m gmbench.features.train_classifier --dataset
    SOURCE``)."""

    source: str
    levels: int
    accuracy_key: str


# binarized MNIST in the MNIST classifier's space: its pixels are 0 or 1, the extremes of
# MNIST's intensities, so the two datasets' FIDs are in one space
SHARED = {"mnist-binarized": Shared("mnist", 2, "test_accuracy_binarized")}


class ExtractorError(GmbenchError):
    """A feature extractor that is unknown, untrained, or whose weights are missing or corrupt."""


def _paths(dataset: str, directory: Path) -> tuple[Path, Path]:
    if dataset in SHARED and directory == WEIGHTS_DIR:
        dataset = SHARED[dataset].source
    return directory / f"{dataset}.safetensors", directory / f"{dataset}.json"


def classifier_dirs() -> list[Path]:
    """Where classifiers are looked up: this package (the bundled ones), then the folder
    ``$GMBENCH_CLASSIFIERS`` (classifiers you trained for your own datasets with
    ``python -m gmbench.features.train_classifier --dataset PATH``)."""
    extra = os.environ.get("GMBENCH_CLASSIFIERS")
    return [WEIGHTS_DIR] + ([Path(extra).expanduser()] if extra else [])


def _where(dataset: str) -> Path | None:
    return next((d for d in classifier_dirs() if classifier_available(dataset, d)), None)


def classifier_available(dataset: str, directory: Path | None = None) -> bool:
    """Whether trained weights for ``dataset`` exist (in ``directory``, default: any of
    :func:`classifier_dirs`)."""
    if directory is None:
        return _where(dataset) is not None
    weights, record = _paths(dataset, directory)
    return weights.is_file() and record.is_file()


@dataclass(frozen=True, eq=False)
class BundledClassifier:
    """A trained :class:`~gmbench.features.net.ConvClassifier` and its record.

    Inputs ``x`` are ``(n, *shape)`` in the dataset's representation: integers
    ``0..levels-1`` (any integer dtype) are scaled by ``1 / (levels - 1)``; floating arrays
    are taken as already scaled to ``[0, 1]``.

    Attributes:
        dataset: dataset name.
        levels: discrete levels of the dataset's pixels.
        net: the network, in eval mode, on ``device``.
        record: the JSON record (test accuracy, training settings, ...).
        sha256: sha256 of the weights file.
        device: where it runs.
    """

    dataset: str
    levels: int
    net: ConvClassifier
    record: dict[str, Any] = field(repr=False)
    sha256: str = ""
    device: str = "cpu"

    @property
    def name(self) -> str:
        """``gmbench-<the dataset it was trained on>``: the feature space's name (shared by
        the datasets scored in it)."""
        return f"gmbench-{self.record.get('dataset', self.dataset)}"

    @property
    def feature_dim(self) -> int:
        return self.net.arch.hidden

    @property
    def test_accuracy(self) -> float:
        return float(self.record["test_accuracy"])

    def _as_input(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The network's input shape, in the data's own dtype (converted batch by batch by
        :meth:`_scaled`: a float copy of all 60,000 training images is 188 MB)."""
        t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
        return t.reshape(t.shape[0], *self.net.arch.in_shape)

    def _scaled(self, t: torch.Tensor) -> torch.Tensor:
        """Float32 in ``[0, 1]``: integer levels divided by ``levels - 1``."""
        if t.dtype.is_floating_point:
            return t.to(torch.float32)
        return t.to(torch.float32) / (self.levels - 1)

    @torch.no_grad()
    def extract(self, x: np.ndarray | torch.Tensor, *, batch_size: int | None = None
                ) -> dict[str, np.ndarray]:
        """One pass: ``{"features": (n, hidden) float32, "logits": (n, classes) float32}``,
        ``batch_size`` images at a time (default: the device's, :data:`BATCH_CPU` or
        :data:`BATCH_GPU`)."""
        t = self._as_input(x)
        if batch_size is None:
            batch_size = BATCH_CPU if self.device == "cpu" else BATCH_GPU
        n, hidden, classes = t.shape[0], self.net.arch.hidden, self.net.arch.num_classes
        # written in place, batch by batch: small per-batch tensors kept in a list between
        # the large, short-lived activations fragmented the heap (peak memory 2-4x)
        feats = np.empty((n, hidden), np.float32)
        logits = np.empty((n, classes), np.float32)
        for i in range(0, n, batch_size):
            batch = self._scaled(t[i:i + batch_size]).to(self.device)
            if self.device == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            f, lg = self.net(batch)
            feats[i:i + len(f)] = f.cpu().numpy()
            logits[i:i + len(f)] = lg.cpu().numpy()
        return {"features": feats, "logits": logits}

    def features(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Penultimate-layer features, ``(n, hidden)`` float32."""
        return self.extract(x)["features"]

    def logits(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class logits, ``(n, num_classes)`` float32."""
        return self.extract(x)["logits"]

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Predicted labels, ``(n,)`` int64."""
        return self.logits(x).argmax(1).astype(np.int64)


def _missing_message(dataset: str, directory: Path) -> str:
    return (
        f"No trained classifier for '{dataset}' in {directory}: the sample-quality feature "
        f"extractor for this dataset has not been trained yet. Train it with `python -m "
        f"gmbench.features.train_classifier --dataset {dataset}` (needs the dataset's train split; "
        "add --device cuda if you have a GPU), which writes the weights into the package, or "
        "choose another feature space with --feature-extractor pixels or "
        "--feature-extractor inception-v3-compat."
    )


@lru_cache(maxsize=8)
def _load(dataset: str, directory: Path, device: str) -> BundledClassifier:
    from safetensors.torch import load_file

    weights, record_path = _paths(dataset, directory)
    if not classifier_available(dataset, directory):
        raise ExtractorError(_missing_message(dataset, directory))
    record = json.loads(record_path.read_text())
    digest = sha256_file(weights)
    if digest != record.get("weights_sha256"):
        raise ExtractorError(
            f"The classifier weights {weights} do not match the sha256 in {record_path.name} "
            f"(file {digest[:12]}, record {str(record.get('weights_sha256'))[:12]}): the file is "
            "corrupt or was replaced. Reinstall gmbench, or retrain with `python -m "
            f"gmbench.features.train_classifier --dataset {dataset}`."
        )
    arch = Architecture.from_dict(record["architecture"])
    with private_generators():  # building the network draws initial weights: not from our caller's
        net = ConvClassifier(arch)
    net.load_state_dict(load_file(str(weights)))  # safetensors: no pickle
    net.eval().requires_grad_(False).to(device)
    if device == "cpu":
        net.to(memory_format=torch.channels_last)
    levels = int(record["levels"])
    shared = SHARED.get(dataset) if directory == WEIGHTS_DIR else None
    if shared is not None:
        if shared.accuracy_key not in record:
            raise ExtractorError(
                f"The {shared.source} classifier's record has no accuracy on {dataset} "
                f"({shared.accuracy_key}); retrain it with `python -m "
                f"gmbench.features.train_classifier --dataset {shared.source}`.")
        levels = shared.levels
        record = {**record, "test_accuracy": record[shared.accuracy_key],
                  "levels": levels, "scored_dataset": dataset}
    return BundledClassifier(dataset=dataset, levels=levels, net=net, record=record,
                             sha256=digest, device=device)


def classifier_for(dataset: str, *, device: str = "cpu", directory: str | Path | None = None,
                   sha256: str | None = None) -> BundledClassifier:
    """The bundled classifier of an image dataset (loaded once per process and device).

    Args:
        dataset: ``"digits"``, ``"fashion-mnist"``, ``"mnist"``, or your dataset's name.
        device: ``"cpu"`` or ``"cuda"``.
        directory: where the weights live (default: :func:`classifier_dirs`).
        sha256: the dataset's content hash: a classifier of one of your own datasets
            recorded for other contents is refused (the bundled ones are checked by name).

    Raises:
        ExtractorError: no classifier for this dataset, weights not trained yet, or corrupt.
    """
    where = Path(directory) if directory else _where(dataset)
    if where is None:
        raise ExtractorError(
            f"There is no trained classifier for dataset '{dataset}' (looked in "
            f"{', '.join(map(str, classifier_dirs()))}); bundled ones exist for "
            f"{', '.join(BUNDLED_DATASETS)}. For your own labelled image dataset, train one "
            f"with `python -m gmbench.features.train_classifier --dataset PATH --out DIR` and "
            "set GMBENCH_CLASSIFIERS=DIR; or use --feature-extractor pixels or "
            "inception-v3-compat.")
    clf = _load(dataset, where, device)
    if sha256 is not None and clf.record.get("dataset_sha256") not in (None, sha256) \
            and dataset not in ARCHITECTURES and dataset not in SHARED:
        raise ExtractorError(
            f"The classifier for '{dataset}' in {where} was trained on other data named "
            f"'{dataset}' (dataset sha256 {str(clf.record.get('dataset_sha256'))[:12]}, this "
            f"one {sha256[:12]}): its features would not be this dataset's. Retrain it with "
            f"`python -m gmbench.features.train_classifier --dataset PATH --out {where}`.")
    return clf
