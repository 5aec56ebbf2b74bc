"""Class-conditional autoencoder baseline: the ``ae`` network with one full-covariance
Gaussian per class in latent space, so ``sample_conditional(labels)`` exists and the
Classification Accuracy Score runs with true labels.
"""

from __future__ import annotations

import torch
from gmbench_baselines.ae import Autoencoder, build

from gmbench.datasets import DatasetInfo

__all__ = ["ConditionalAutoencoder", "load"]


class ConditionalAutoencoder(Autoencoder):
    """:class:`~baselines.ae.Autoencoder` sampling ``z ~ N(mean_c, cov_c)`` for class ``c``."""

    def sample_conditional(self, labels: torch.Tensor) -> torch.Tensor:
        """One image per integer label: ``(n,)`` -> ``(n, *shape)`` floats in ``[0, 1]``."""
        labels = labels.long().to(self.class_means.device)
        return self.decode(self._draw(labels, self.class_means, self.class_chol))

    def sample(self, n: int) -> torch.Tensor:
        """Labels drawn from the training class frequencies, then ``sample_conditional``."""
        return self.sample_conditional(torch.multinomial(self.class_prior, n, replacement=True))


def load(dataset: DatasetInfo, device: str) -> ConditionalAutoencoder:
    model = build(dataset, device, cls=ConditionalAutoencoder, family="ae_conditional")
    assert isinstance(model, ConditionalAutoencoder)
    return model
