"""Models and datasets the registry-wide tests evaluate every metric on: a fixed imperfect
model per small dataset, and the true distribution of each generated dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import stats

from gmbench.datasets import get_dataset
from gmbench.models.model import Model, ModelSource

SEEDS = 40  # seeds of the coverage tests
LEVEL = 0.002  # two-sided: the coverage tests fail a calibrated interval this rarely


def chi_square_verdict(z: np.ndarray, df: int) -> str | None:
    """Why ``sum(z^2)`` is outside the central ``1 - LEVEL`` of chi-square(df), or ``None``."""
    if not np.isfinite(z).all():
        return f"not finite: z-scores {z[~np.isfinite(z)][:3]} (a zero or missing stderr?)"
    total = float((z * z).sum())
    low, high = stats.chi2.ppf([LEVEL / 2, 1 - LEVEL / 2], df)
    if total > high:
        return f"too narrow: sum z^2 = {total:.1f} above {high:.1f} (chi-square, {df} df)"
    if total < low:
        return f"too wide: sum z^2 = {total:.1f} below {low:.1f} (chi-square, {df} df)"
    return None


class DigitsModel:
    """Independent per-pixel categorical fitted to the digits train split (exact log-mass),
    with a 10-component PCA autoencoder: every capability but sample_conditional."""

    def __init__(self) -> None:
        train = torch.from_numpy(get_dataset("digits").train.x.astype(np.int64))
        flat = train.reshape(len(train), -1)  # (N, 64)
        counts = torch.stack([torch.bincount(col, minlength=17) for col in flat.T])
        self.log_theta = torch.log((counts + 1.0) / (counts.sum(1, keepdim=True) + 17))
        scaled = flat.double() / 16
        self.mean = scaled.mean(0)
        _, _, vt = torch.linalg.svd(scaled - self.mean, full_matrices=False)
        self.components = vt[:10]  # (10, 64)

    def sample(self, n: int) -> torch.Tensor:
        idx = torch.multinomial(self.log_theta.exp(), n, replacement=True)  # (64, n)
        return idx.T.reshape(n, 1, 8, 8)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_theta.gather(1, x.reshape(len(x), -1).T).sum(0).double()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(len(x), -1).double() / 16 - self.mean) @ self.components.T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.components + self.mean).clamp(0, 1).reshape(len(z), 1, 8, 8)


def gauss2_model() -> torch.distributions.MultivariateNormal:
    """A slightly wrong Gaussian for gauss-2 (shifted mean, inflated covariance)."""
    cov = torch.tensor(get_dataset("gauss-2").truth.cov) * 1.3
    return torch.distributions.MultivariateNormal(torch.tensor([0.2, -0.1]).double(),
                                                  covariance_matrix=cov)


class Truth:
    """The dataset's own distribution behind the model contract: exact draws (seeded by
    gmbench's RNG state) and the exact log-density or log-mass."""

    def __init__(self, dataset: str) -> None:
        self.truth = get_dataset(dataset).truth
        assert self.truth is not None, dataset

    def sample(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        return self.truth.sample(n, rng)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.truth.log_prob(x.numpy()), dtype=torch.float64)


class TextBigram:
    """An add-one byte bigram fitted to text-markov's training text: a normalised, imperfect
    text model with ``token_log_prob`` and ``sample``."""

    context_length = 64

    def __init__(self) -> None:
        data = get_dataset("text-markov").train.documents.data.astype(np.int64)
        counts = np.ones((256, 256))
        np.add.at(counts, (data[:-1], data[1:]), 1.0)
        self.log_t = np.log(counts / counts.sum(1, keepdims=True))
        first = np.bincount(data, minlength=256) + 1.0
        self.log_first = np.log(first / first.sum())

    def token_log_prob(self, x: torch.Tensor) -> np.ndarray:
        x = x.numpy()
        out = np.empty(x.shape)
        out[:, 0] = self.log_first[x[:, 0]]
        out[:, 1:] = self.log_t[x[:, :-1], x[:, 1:]]
        return out

    def sample(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        out = np.empty((n, 256), np.int64)
        cdf = np.cumsum(np.exp(self.log_t), 1)
        out[:, 0] = rng.choice(256, n, p=np.exp(self.log_first))
        for j in range(1, 256):
            out[:, j] = np.minimum((rng.random((n, 1)) > cdf[out[:, j - 1]]).sum(1), 255)
        return out


class PartlyCopies:
    """text-markov passages of which 30% are copied from the training text and the rest drawn
    from the chain: a text model whose copy rate and diversity move between runs."""

    def __init__(self) -> None:
        data = get_dataset("text-markov")
        self.truth, self.docs = data.truth, data.train.documents

    def sample(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        out = self.truth.sample(n, rng).astype(np.int64)
        copied = rng.random(n) < 0.3
        starts = rng.integers(0, self.docs.n_bytes - 256, copied.sum())
        out[copied] = self.docs.data[starts[:, None] + np.arange(256)]
        return out


class TextTruth(Truth):
    """text-markov's chain: exact ``token_log_prob`` in any window, exact passages."""

    def __init__(self) -> None:
        super().__init__("text-markov")
        self.context_length = self.truth.context_length

    def token_log_prob(self, x: torch.Tensor) -> np.ndarray:
        return self.truth.token_log_prob(x.numpy())


def wrap(obj: object, dataset: str, name: str) -> Model:
    source = ModelSource(Path(f"{name}.py"), name, "0" * 64, None)
    return Model(obj, source=source, info=get_dataset(dataset).info, device="cpu")
