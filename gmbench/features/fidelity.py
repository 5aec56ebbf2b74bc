"""The bundled classifiers as torch-fidelity feature extractors.

:func:`register_with_torch_fidelity` registers ``gmbench-<dataset>`` for every bundled
dataset, so that ``torch_fidelity.calculate_metrics(..., feature_extractor="gmbench-digits")``
computes its metrics in exactly the feature space gmbench reports. Features provided:

- ``"features"``: the penultimate layer, ``(n, hidden)``; the default for FID, KID and PRC.
- ``"logits"``: class logits (with the final bias); the default for the Inception Score, since
  these are the classifier's actual predictive probabilities.
- ``"logits_unbiased"``: logits without the final bias, named as InceptionV3's layer is.

Inputs are ``(n, C, H, W)`` tensors: ``uint8`` in ``0..255`` (torch-fidelity's convention) or
floats in ``[0, 1]``; three-channel inputs are averaged to one channel, other sizes resized
bilinearly to the classifier's input size.
"""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from gmbench.features.classifier import BUNDLED_DATASETS, classifier_for

__all__ = ["FidelityClassifier", "fidelity_name", "register_with_torch_fidelity"]

PREFIX = "gmbench-"


def fidelity_name(dataset: str) -> str:
    """The torch-fidelity name of a dataset's classifier, ``"gmbench-<dataset>"``."""
    return PREFIX + dataset


class FidelityClassifier(FeatureExtractorBase):
    """torch-fidelity wrapper of :class:`~gmbench.features.classifier.BundledClassifier`."""

    def __init__(self, name: str, features_list: list[str], **kwargs: object) -> None:
        super().__init__(name, features_list)
        clf = classifier_for(name.removeprefix(PREFIX))
        self.net = copy.deepcopy(clf.net)  # torch-fidelity moves it (.cuda()): keep ours put
        self.in_shape = clf.net.arch.in_shape

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return "features", "logits", "logits_unbiased"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        if x.shape[1] != self.in_shape[0]:
            x = x.mean(1, keepdim=True)  # (n, 1, H, W)
        if tuple(x.shape[2:]) != tuple(self.in_shape[1:]):
            x = F.interpolate(x, size=tuple(self.in_shape[1:]), mode="bilinear",
                              align_corners=False)
        features, logits = self.net(x)
        out = {"features": features, "logits": logits,
               "logits_unbiased": logits - self.net.head.bias}
        return tuple(out[k] for k in self.features_list)


def register_with_torch_fidelity() -> tuple[str, ...]:
    """Register ``gmbench-<dataset>`` for every bundled dataset (idempotent); return the
    names. Weights load when torch-fidelity instantiates the extractor."""
    names = tuple(fidelity_name(d) for d in BUNDLED_DATASETS)
    for name in names:
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, FidelityClassifier)
    return names


register_with_torch_fidelity()  # importing this module is enough
