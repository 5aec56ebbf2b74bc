"""Scores of a model in training that are not its loss: the Fréchet distance of a few
thousand samples in the dataset's bundled classifier features (a GAN's learning curve)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from gmbench.core.rng import child_seed
from gmbench.datasets import Dataset
from gmbench.estimators.frechet import frechet_distance, gaussian_statistics
from gmbench.features.extractors import ClassifierFeatures

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
    mu_real, cov_real = gaussian_statistics(features(dataset.test.x[np.sort(pick)]))

    def probe() -> dict[str, float]:
        with torch.no_grad():
            x = sample(n, torch.Generator().manual_seed(child_seed(seed, "probe-fake")))
        mu, cov = gaussian_statistics(features(x.detach().cpu().numpy()))
        return {f"fid_{n}": frechet_distance(mu, cov, mu_real, cov_real)}

    return probe
