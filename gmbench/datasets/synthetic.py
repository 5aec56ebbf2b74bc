"""Generated datasets with exact ground truth: ``toy2d-*``, ``gauss-<d>``, ``markov-<v>``.

Each exposes the true distribution ``P`` (exact ``log_prob``, exact sampling, and the entropy
where a closed form exists) so that every metric can be checked against an exact value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from gmbench.datasets.base import Dataset, DatasetInfo, Split

__all__ = [
    "Banana",
    "Checkerboard",
    "Gaussian",
    "GaussianMixture8",
    "MarkovChain",
    "Rings",
    "make_gauss",
    "make_markov",
    "make_toy2d",
]

LOG_2PI = math.log(2 * math.pi)
TOY2D_SIZES = (20_000, 10_000)  # (train, test)
GAUSS_SIZES = (10_000, 10_000)
MARKOV_SIZES = (10_000, 5_000)
MARKOV_LENGTH = 64


@dataclass(frozen=True)
class GaussianMixture8:
    """Eight isotropic Gaussians of std ``scale`` evenly spaced on a circle of ``radius``."""

    radius: float = 2.0
    scale: float = 0.2
    entropy: float | None = None  # no closed form for a mixture

    @property
    def means(self) -> np.ndarray:  # (8, 2)
        angles = np.arange(8) * (2 * math.pi / 8)
        return self.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        d2 = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)  # (n, 8)
        comp = -0.5 * d2 / self.scale**2 - LOG_2PI - 2 * math.log(self.scale)
        return special.logsumexp(comp, axis=1) - math.log(8)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.integers(0, 8, size=n)
        return (self.means[k] + self.scale * rng.standard_normal((n, 2))).astype(np.float32)


@dataclass(frozen=True)
class Checkerboard:
    """Uniform on the 8 dark cells of a 4x4 board of unit squares covering ``[-2, 2]^2``."""

    entropy: float | None = math.log(8.0)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        inside = np.all(np.abs(x) < 2, axis=1)
        cells = np.floor(x + 2).astype(np.int64)
        dark = (cells[:, 0] + cells[:, 1]) % 2 == 0
        return np.where(inside & dark, -math.log(8.0), -np.inf)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cell = rng.integers(0, 8, size=n)
        row = cell // 2
        col = 2 * (cell % 2) + (row % 2)  # dark cells: (row + col) even
        u = rng.random((n, 2))
        return np.stack([col + u[:, 0] - 2, row + u[:, 1] - 2], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Banana:
    """``x1 ~ N(0, 1)``, ``x2 | x1 ~ N(bend * (x1**2 - 1), noise**2)``."""

    bend: float = 1.0
    noise: float = 0.5

    @property
    def entropy(self) -> float:
        # H(x1) + H(x2 | x1); the shift by bend*(x1^2-1) does not change the entropy.
        return 0.5 * (1 + LOG_2PI) + 0.5 * (1 + LOG_2PI) + math.log(self.noise)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x1, x2 = x[:, 0].astype(np.float64), x[:, 1].astype(np.float64)
        r = (x2 - self.bend * (x1**2 - 1)) / self.noise
        return -0.5 * x1**2 - 0.5 * r**2 - LOG_2PI - math.log(self.noise)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x1 = rng.standard_normal(n)
        x2 = self.bend * (x1**2 - 1) + self.noise * rng.standard_normal(n)
        return np.stack([x1, x2], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Rings:
    """Two concentric rings: angle uniform, radius ``R_k * exp(width * N(0,1))`` (log-normal),
    so the density is exact: ``p(x) = sum_k w_k LogNormal(|x|; log R_k, width) / (2 pi |x|)``."""

    radii: tuple[float, ...] = (1.0, 2.0)
    width: float = 0.08
    entropy: float | None = None

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(x.astype(np.float64), axis=1)
        log_r = np.log(np.maximum(r, 1e-300))
        mu = np.log(np.asarray(self.radii))[None]
        comp = (-0.5 * ((log_r[:, None] - mu) / self.width) ** 2
                - math.log(self.width) - 0.5 * LOG_2PI - log_r[:, None])
        log_radial = special.logsumexp(comp, axis=1) - math.log(len(self.radii))
        return log_radial - math.log(2 * math.pi) - log_r

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.integers(0, len(self.radii), size=n)
        r = np.asarray(self.radii)[k] * np.exp(self.width * rng.standard_normal(n))
        theta = rng.random(n) * 2 * math.pi
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Gaussian:
    """``N(0, S)`` with ``S[i, j] = rho ** |i - j|``."""

    dim: int
    rho: float = 0.5
    cov: np.ndarray = field(init=False, repr=False, compare=False)
    chol: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        idx = np.arange(self.dim)
        cov = self.rho ** np.abs(idx[:, None] - idx[None, :])
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "chol", np.linalg.cholesky(cov))

    @property
    def mean(self) -> np.ndarray:
        return np.zeros(self.dim)

    @property
    def logdet(self) -> float:
        return float(2 * np.log(np.diag(self.chol)).sum())

    @property
    def entropy(self) -> float:
        return 0.5 * (self.dim * (1 + LOG_2PI) + self.logdet)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        from scipy.linalg import solve_triangular

        z = solve_triangular(self.chol, np.asarray(x, np.float64).T, lower=True)  # (d, n)
        return -0.5 * (z**2).sum(0) - 0.5 * self.dim * LOG_2PI - 0.5 * self.logdet

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.standard_normal((n, self.dim)) @ self.chol.T).astype(np.float32)


@dataclass(frozen=True)
class MarkovChain:
    """A first-order chain over ``v`` symbols, ``length`` steps, started from stationarity.

    Attributes:
        transition: ``(v, v)`` row-stochastic matrix ``T[i, j] = P(x_{t+1}=j | x_t=i)``.
        stationary: ``(v,)`` stationary distribution ``pi`` (``pi T = pi``).
    """

    transition: np.ndarray
    stationary: np.ndarray
    length: int = MARKOV_LENGTH

    @property
    def entropy_rate(self) -> float:
        """``h = -sum_i pi_i sum_j T_ij log T_ij`` in nats per token."""
        t = self.transition
        return float(-(self.stationary[:, None] * special.xlogy(t, t)).sum())

    @property
    def entropy(self) -> float:
        """Exact entropy of one sequence: ``H(pi) + (length - 1) * h`` nats."""
        h0 = float(-special.xlogy(self.stationary, self.stationary).sum())
        return h0 + (self.length - 1) * self.entropy_rate

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        log_t = np.log(self.transition)
        return np.log(self.stationary)[x[:, 0]] + log_t[x[:, :-1], x[:, 1:]].sum(axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        v = len(self.stationary)
        cum = np.cumsum(self.transition, axis=1)
        cum[:, -1] = 1.0
        out = np.empty((n, self.length), dtype=np.int64)
        out[:, 0] = rng.choice(v, size=n, p=self.stationary)
        u = rng.random((n, self.length))
        for t in range(1, self.length):
            out[:, t] = (u[:, t, None] > cum[out[:, t - 1]]).sum(axis=1)
        return out


def _from_truth(info: DatasetInfo, truth, sizes: tuple[int, int], seed: int, description: str
                ) -> Dataset:
    rng = np.random.default_rng(seed)
    train = truth.sample(sizes[0], rng)
    test = truth.sample(sizes[1], rng)
    return Dataset(info=info, train=Split(train), test=Split(test), truth=truth,
                   description=description)


TOY2D = {
    "toy2d-gmm8": (GaussianMixture8(), "8 Gaussians (std 0.2) on a circle of radius 2"),
    "toy2d-checkerboard": (Checkerboard(), "uniform on 8 checkerboard cells in [-2,2]^2"),
    "toy2d-banana": (Banana(), "x2 | x1 ~ N(x1^2 - 1, 0.5^2), x1 ~ N(0,1)"),
    "toy2d-rings": (Rings(), "two log-normal rings of radius 1 and 2"),
}


def make_toy2d(name: str) -> Dataset:
    truth, description = TOY2D[name]
    info = DatasetInfo(name=name, kind="continuous", shape=(2,), levels=None, num_classes=None)
    seed = sorted(TOY2D).index(name) + 1
    return _from_truth(info, truth, TOY2D_SIZES, seed, description)


def make_gauss(dim: int) -> Dataset:
    info = DatasetInfo(name=f"gauss-{dim}", kind="continuous", shape=(dim,), levels=None,
                       num_classes=None)
    return _from_truth(info, Gaussian(dim), GAUSS_SIZES, 1000 + dim,
                       f"N(0, S), S[i,j] = 0.5**|i-j|, d = {dim}")


def make_markov(v: int) -> Dataset:
    rng = np.random.default_rng(2000 + v)
    # Dirichlet(0.5) rows: peaked enough that the entropy rate sits well below log(v).
    transition = rng.dirichlet(np.full(v, 0.5), size=v)
    transition = np.maximum(transition, 1e-6)
    transition /= transition.sum(axis=1, keepdims=True)
    evals, evecs = np.linalg.eig(transition.T)
    pi = np.real(evecs[:, np.argmin(np.abs(evals - 1))])
    pi = np.abs(pi) / np.abs(pi).sum()
    chain = MarkovChain(transition=transition, stationary=pi)
    info = DatasetInfo(name=f"markov-{v}", kind="sequence", shape=(MARKOV_LENGTH,), levels=v,
                       num_classes=None)
    description = (f"{MARKOV_LENGTH} tokens from a seeded {v}-state Markov chain; "
                   f"entropy rate {chain.entropy_rate:.4f} nats/token")
    return _from_truth(info, chain, MARKOV_SIZES, 3000 + v, description)
