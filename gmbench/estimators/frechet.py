"""The Fréchet distance between Gaussians, and the statistics it is computed from.

``FID`` is the Fréchet (2-Wasserstein) distance between Gaussians fitted to two sets of
features. gmbench reports the value torch-fidelity computes; this module is the independent
implementation used for the bootstrap spread and to check torch-fidelity in the tests.

References:
    Dowson & Landau, "The Fréchet distance between multivariate normal distributions",
    J. Multivariate Analysis, 1982.
    Heusel et al., "GANs trained by a two time-scale update rule converge to a local Nash
    equilibrium", NeurIPS 2017.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frechet_delta_se", "frechet_distance", "gaussian_statistics", "sqrtm_psd"]


def gaussian_statistics(features: np.ndarray, weights: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and unbiased covariance ``(F, F)`` (float64) of ``(n, F)`` features.

    Args:
        features: ``(n, F)``.
        weights: optional ``(n,)`` non-negative integer counts (a bootstrap resample as
            multiplicities); the statistics are those of the data with each row repeated.
    """
    x = np.asarray(features, dtype=np.float64)
    if weights is None:
        mu = x.mean(0)
        xc = x - mu
        return mu, xc.T @ xc / (len(x) - 1)
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    mu = w @ x / total
    xc = x - mu
    return mu, (xc * w[:, None]).T @ xc / (total - 1)


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues
    clipped at 0)."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray
                     ) -> float:
    """``||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2)``.

    The trace term is computed from the eigenvalues of the symmetric PSD matrix
    ``cov1^1/2 cov2 cov1^1/2`` (the same spectrum as ``cov1 cov2``), which avoids the complex
    round-off of a general matrix square root.

    Args:
        mu1, mu2: means, ``(F,)``.
        cov1, cov2: covariances, ``(F, F)``, symmetric PSD.

    Returns:
        The squared Fréchet distance (units: squared feature units); ``>= 0`` up to round-off.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, cov {cov1.shape} / "
                         f"{cov2.shape}")
    root1 = sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean)


def frechet_delta_se(samples: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The standard error between runs of :func:`frechet_distance` from the Gaussian fitted to
    ``samples`` ``(n, F)`` to a fixed Gaussian ``(mu2, cov2)`` (the test split's), by the delta
    method: the standard deviation of the distance's influence function over the samples,
    divided by ``sqrt(n)``.

    With ``mu, cov`` the samples' statistics, ``R = cov2^1/2`` and ``G = R (R cov R)^-1/2 R``
    (the pseudo-inverse over the positive spectrum), adding a sample ``x`` moves the distance
    by ``IF(x) / n`` to first order, with
    ``IF(x) = 2 (mu - mu2) . (x - mu) + (x - mu)' (I - G) (x - mu) - tr((I - G) cov)``:
    the derivative of ``tr(cov) - 2 tr((R cov R)^1/2)`` in ``cov`` is ``I - G``. One
    eigenvalue problem besides the test split's square root, against one per resample of a
    bootstrap, whose spread overstates the run-to-run spread twofold in 2,048 dimensions
    (``benchmarks/null_differences.py``).
    """
    x = np.asarray(samples, np.float64)
    mu, cov = gaussian_statistics(x)
    root = sqrtm_psd(np.asarray(cov2, np.float64))
    middle = root @ cov @ root
    lam, vecs = np.linalg.eigh((middle + middle.T) / 2)
    keep = lam > max(lam.max(initial=0.0), 0.0) * 1e-12
    half = root @ (vecs[:, keep] * lam[keep] ** -0.25)  # G = half half'
    xc = x - mu
    influence = (2 * xc @ (mu - np.asarray(mu2, np.float64)) + (xc ** 2).sum(1)
                 - ((xc @ half) ** 2).sum(1))  # the constant tr((I - G) cov) drops out
    return float(influence.std(ddof=1) / np.sqrt(len(x)))
