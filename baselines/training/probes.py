"""Scores of a model in training that are not its loss: the Fréchet distance of a few
thousand samples in the dataset's bundled classifier features (a GAN's learning curve)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from gmbench.datasets import Dataset
from gmbench.estimators.frechet import frechet_distance
from gmbench.features.extractors import ClassifierFeatures
from gmbench.rng import child_seed

__all__ = ["PROBE_SAMPLES", "fid_probe"]

PROBE_SAMPLES = 2000


def fid_probe(dataset: Dataset, sample: Callable[[int, torch.Generator], torch.Tensor], *,
              seed: int, n: int = PROBE_SAMPLES) -> Callable[[], dict[str, float]]:
    """A probe for :func:`~.loop.train_resumable`: ``{"fid_2000": ...}``, the Fréchet distance
    between ``n`` samples (``sample(n, generator)``: images as floats in ``[0, 1]`` or
    levels; the generator seeded the same at every call) and ``n`` fixed test images, in the
    bundled classifier's features. Biased upwards at small ``n``: a curve, not the board's
    FID."""
    features = ClassifierFeatures.for_dataset(dataset.info.name, sha256=dataset.sha256)
    pick = np.random.default_rng(child_seed(seed, "probe-real")).permutation(
        len(dataset.test))[:n]
    real = features(dataset.test.x[np.sort(pick)]).astype(np.float64)
    mu_real, cov_real = real.mean(0), np.cov(real, rowvar=False)

    def probe() -> dict[str, float]:
        with torch.no_grad():
            x = sample(n, torch.Generator().manual_seed(child_seed(seed, "probe-fake")))
        fake = features(x.detach().cpu().numpy()).astype(np.float64)
        return {f"fid_{n}": frechet_distance(fake.mean(0), np.cov(fake, rowvar=False),
                                             mu_real, cov_real)}

    return probe
