"""Feature spaces for sample metrics.

A feature extractor maps a batch in the dataset's own representation ``(n, *shape)`` to
``(n, F)`` float32 features; extractors with a classifier head also give logits in the same
pass (:func:`extract_all`). Choices (``--feature-extractor``):

- ``auto`` (default): the dataset's bundled classifier when its weights exist
  (:mod:`gmbench.features.classifier`), else ``pixels``.
- ``classifier``: the bundled classifier; an :class:`ExtractorError` says how to train it
  when its weights are missing (``mnist`` here).
- ``pixels``: :class:`PixelFeatures`, flattened values scaled to ``[0, 1]``.
- ``inception-v3-compat``: torch-fidelity's ImageNet InceptionV3 (2048-d pool features,
  1008 unbiased logits); grayscale tiled to three channels, uint8 ``0..255`` input, resized to
  299x299 inside torch-fidelity. Its weights come from ``--inception-weights PATH`` or
  torch's hub cache; gmbench never downloads them implicitly.

Feature dimensions: bundled classifiers 128 (their penultimate layer), InceptionV3 2048,
pixels ``D``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from gmbench.core.files import sha256_file
from gmbench.core.generators import private_generators
from gmbench.core.registry import Registry
from gmbench.datasets import Dataset, DatasetInfo
from gmbench.features.classifier import (
    BundledClassifier,
    ExtractorError,
    classifier_available,
    classifier_for,
)

__all__ = [
    "EXTRACTORS",
    "EXTRACTOR_NAMES",
    "ExtractorSpec",
    "INCEPTION_URL",
    "INCEPTION_WEIGHTS_FILE",
    "ClassifierFeatures",
    "ExtractorError",
    "FeatureExtractor",
    "InceptionFeatures",
    "PixelFeatures",
    "default_extractor",
    "extract_all",
    "feature_space_label",
    "get_extractor",
]

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_WEIGHTS_FILE = INCEPTION_URL.rsplit("/", 1)[1]


class FeatureExtractor(Protocol):
    """Maps ``(n, *shape)`` data to ``(n, F)`` float32 features."""

    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> str:  # of the weights; "" for parameter-free features
        ...

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PixelFeatures:
    """Flattened data; discrete values ``k`` become ``k / (levels - 1)``.

    Named ``"pixels"`` on image data and ``"data"`` otherwise (sequences, continuous data).
    """

    info: DatasetInfo
    sha256: str = ""

    @property
    def name(self) -> str:
        return "pixels" if self.info.kind == "image" else "data"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = np.asarray(x).reshape(len(x), -1).astype(np.float32)
        if self.info.levels is not None:
            flat /= self.info.levels - 1
        return flat


@dataclass(frozen=True)
class ClassifierFeatures:
    """The penultimate layer (and logits) of a dataset's bundled classifier.

    ``name`` is ``"gmbench-<dataset>"``, also its torch-fidelity name; ``sha256`` is that of
    the weights file. ``classifier`` gives ``predict`` / ``logits`` for pseudo-labels.
    """

    classifier: BundledClassifier = field(repr=False)
    name: str = ""
    sha256: str = ""
    logits_layer: str = "logits"

    @classmethod
    def for_dataset(cls, dataset: str, *, device: str = "cpu", sha256: str | None = None
                    ) -> ClassifierFeatures:
        clf = classifier_for(dataset, device=device, sha256=sha256)
        return cls(classifier=clf, name=clf.name, sha256=clf.sha256)

    def extract(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``{"features": (n, 128), "logits": (n, 10)}``, float32, in one pass."""
        return self.classifier.extract(x)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.extract(x)["features"]


def find_inception_weights(path: str | Path | None) -> Path:
    """The InceptionV3 weights file: ``path`` if given, else ``$GMBENCH_INCEPTION_WEIGHTS``,
    else torch's hub cache copy.

    Raises:
        ExtractorError: the file does not exist (with how to get it).
    """
    how = (
        f"Download torch-fidelity's InceptionV3 weights from {INCEPTION_URL} on a machine with "
        f"internet access (the file is {INCEPTION_WEIGHTS_FILE}, about 92 MB) and pass "
        "--inception-weights PATH (or set GMBENCH_INCEPTION_WEIGHTS=PATH), or put the file "
        "in torch's hub cache "
        f"({Path(torch.hub.get_dir()) / 'checkpoints'}). gmbench does not download it for you."
    )
    if path is None and os.environ.get("GMBENCH_INCEPTION_WEIGHTS"):
        path = os.environ["GMBENCH_INCEPTION_WEIGHTS"]
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            raise ExtractorError(f"--inception-weights {path} is a folder; pass the weights "
                                 f"file itself ({INCEPTION_WEIGHTS_FILE}).")
        if not p.is_file():
            raise ExtractorError(f"--inception-weights {path}: no such file. {how}")
        return p
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    if cached.is_file():
        return cached
    raise ExtractorError(
        "--feature-extractor inception-v3-compat needs the InceptionV3 weights, which are not "
        f"on this machine. {how} Without them, the default feature space (the dataset's "
        "bundled classifier) needs no download."
    )


@dataclass(frozen=True)
class InceptionFeatures:
    """torch-fidelity's InceptionV3 (``inception-v3-compat``): 2048-d pool features and
    1008 unbiased logits (the Inception Score's layer).

    Images are mapped to uint8 ``round(k * 255 / (levels - 1))``, grayscale tiled to three
    channels, then resized to 299x299 by torch-fidelity (TensorFlow-1.x-compatible bilinear).
    """

    module: Any = field(repr=False)
    levels: int
    sha256: str
    name: str = "inception-v3-compat"
    device: str = "cpu"
    batch_size: int = 64
    logits_layer: str = "logits_unbiased"

    @classmethod
    def load(cls, *, levels: int | None, weights: str | Path | None = None,
             device: str = "cpu") -> InceptionFeatures:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = find_inception_weights(weights)
        try:  # restricted unpickler: fails on anything but tensors, so the file is safe to load
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
            raise ExtractorError(
                f"{path} is not a torch-fidelity InceptionV3 weights file ({exc}). Download "
                f"{INCEPTION_URL} again and pass its path with --inception-weights."
            ) from None
        with private_generators():  # construction draws initial weights: not from our caller's
            module = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(path))
        module.eval().requires_grad_(False).to(device)
        return cls(module=module, levels=levels or 256, sha256=sha256_file(path), device=device)

    def _as_uint8(self, x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x))
        if t.dim() == 3:
            t = t[:, None]  # (n, 1, H, W)
        if t.dtype.is_floating_point:  # already in [0, 1]
            t = (t.clamp(0, 1) * 255).round()
        else:
            t = (t.to(torch.float64) * 255 / (self.levels - 1)).round()
        t = t.to(torch.uint8)
        return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t  # (n, 3, H, W)

    @torch.no_grad()
    def extract(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t = self._as_uint8(x)
        feats, logits = [], []
        for i in range(0, t.shape[0], self.batch_size):
            f, lg = self.module(t[i:i + self.batch_size].contiguous().to(self.device))
            feats.append(f.cpu())
            logits.append(lg.cpu())
        return {"features": torch.cat(feats).numpy(), "logits": torch.cat(logits).numpy()}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.extract(x)["features"]


def extract_all(extractor: FeatureExtractor, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of one pass: ``{"features": (n, F)}`` plus ``"logits"`` where the
    extractor has a classifier head."""
    extract = getattr(extractor, "extract", None)
    return dict(extract(x)) if extract is not None else {"features": extractor(x)}


def feature_space_label(extractor: FeatureExtractor) -> str:
    """``"pixels"``, or ``"<name> (sha256 <first 12 hex>)"`` for learned extractors."""
    return extractor.name if not extractor.sha256 else f"{extractor.name} (sha256 {extractor.sha256[:12]})"


def default_extractor(dataset: Dataset, *, device: str = "cpu") -> FeatureExtractor:
    """The feature space sample metrics use on ``dataset`` by default: its bundled
    classifier when trained weights exist, else pixels."""
    if dataset.info.kind == "image" and classifier_available(dataset.info.name):
        return ClassifierFeatures.for_dataset(dataset.info.name, device=device,
                                              sha256=dataset.sha256)
    return PixelFeatures(dataset.info)


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered feature space: how to build it for a dataset, and what it is.

    Attributes:
        name: the ``--feature-extractor`` value.
        description: one line for ``--help``.
        images_only: refused on non-image data.
        build: ``build(dataset, inception_weights, device)``.
    """

    name: str
    description: str
    images_only: bool
    build: Callable[[Dataset, str | Path | None, str], FeatureExtractor]


EXTRACTORS: Registry[ExtractorSpec] = Registry("feature extractor", error=ExtractorError)
for _spec in (
    ExtractorSpec("auto", "the dataset's classifier where one is trained, else pixels",
                  False, lambda ds, w, dev: default_extractor(ds, device=dev)),
    ExtractorSpec("classifier", "the dataset's classifier (128-d penultimate layer): bundled, "
                  "or yours in $GMBENCH_CLASSIFIERS",
                  True, lambda ds, w, dev: ClassifierFeatures.for_dataset(
                      ds.info.name, device=dev, sha256=ds.sha256)),
    ExtractorSpec("pixels", "the flattened data, scaled to [0, 1]", False,
                  lambda ds, w, dev: PixelFeatures(ds.info)),
    ExtractorSpec("inception-v3-compat", "torch-fidelity's ImageNet InceptionV3 (needs its "
                  "weights file)", True,
                  lambda ds, w, dev: InceptionFeatures.load(levels=ds.info.levels, weights=w,
                                                            device=dev)),
):
    EXTRACTORS.register(_spec.name, _spec)
EXTRACTOR_NAMES = EXTRACTORS.names()


def get_extractor(name: str, dataset: Dataset, *, inception_weights: str | Path | None = None,
                  device: str = "cpu") -> FeatureExtractor:
    """The registered extractor ``name`` (:data:`EXTRACTORS`) built for ``dataset``.

    Raises:
        ExtractorError: unknown name, a non-image dataset for an image extractor, or missing
            weights.
    """
    spec = EXTRACTORS.get(name)
    if spec.images_only and dataset.info.kind != "image":
        raise ExtractorError(f"--feature-extractor {name} works on images, but "
                             f"{dataset.info.name} is {dataset.info.kind} data. Use "
                             "--feature-extractor pixels (or leave it at auto).")
    return spec.build(dataset, inception_weights, device)
