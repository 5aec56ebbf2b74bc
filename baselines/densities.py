"""Pure density pieces shared by the baselines: the discretized logistic, the logit transform
of dequantized pixels, and the standard normal.

References:
    Salimans et al. 2017, "PixelCNN++" (the discretized logistic);
    Dinh et al. 2017, "Density estimation using Real NVP", section 4.1 (logit preprocessing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["LOG_2PI", "discretized_logistic_log_mass", "discretized_logistic_mixture_log_mass",
           "logit_inverse", "logit_transform", "std_normal_log_density"]

LOG_2PI = math.log(2 * math.pi)
MIN_LOG_SCALE = -7.0


def std_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """``sum_d log N(z_d; 0, 1)``: ``(n, D) -> (n,)`` nats."""
    return -0.5 * (z**2 + LOG_2PI).sum(-1)


def discretized_logistic_log_mass(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                  *, levels: int) -> torch.Tensor:
    """Per-dimension log-mass of integer levels under a logistic discretized into ``levels``
    bins on ``[-1, 1]``, the edge bins taking the tails (PixelCNN++).

    Args:
        x: integer levels in ``[0, levels-1]``, shape ``(..., D)``.
        mean, log_scale: logistic location and log-scale on the ``[-1, 1]`` scale, ``(..., D)``.
        levels: number of discrete values per dimension.

    Returns:
        ``(..., D)`` log-masses in nats (each <= 0; they sum to a log-mass).
    """
    c = 2.0 * x.float() / (levels - 1) - 1.0
    half = 1.0 / (levels - 1)
    log_scale = log_scale.clamp(min=MIN_LOG_SCALE)
    inv_s = torch.exp(-log_scale)
    plus = inv_s * (c - mean + half)
    minus = inv_s * (c - mean - half)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus): the lowest bin
    log_sf_minus = -F.softplus(minus)  # log(1 - sigmoid(minus)): the highest bin
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * (c - mean)
    # far in a tail the difference of sigmoids underflows: use the density times the bin width
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid) + math.log(2 * half)
    inner = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_pdf_mid)
    out = torch.where(x <= 0, log_cdf_plus, torch.where(x >= levels - 1, log_sf_minus, inner))
    return out.clamp(max=0.0)


def discretized_logistic_mixture_log_mass(x: torch.Tensor, logits: torch.Tensor,
                                          mean: torch.Tensor, log_scale: torch.Tensor, *,
                                          levels: int) -> torch.Tensor:
    """Per-dimension log-mass of integer levels under a mixture of ``K`` discretized
    logistics (PixelCNN++'s decoder, one mixture per dimension).

    Args:
        x: integer levels, ``(..., D)``.
        logits: unnormalized log mixture weights, ``(..., K, D)``.
        mean, log_scale: each component's location and log-scale on ``[-1, 1]``,
            ``(..., K, D)``.
        levels: number of discrete values per dimension.

    Returns:
        ``(..., D)`` log-masses in nats: ``log sum_k pi_k P_k(x)``.
    """
    per_component = discretized_logistic_log_mass(x.unsqueeze(-2), mean, log_scale,
                                                  levels=levels)
    return torch.logsumexp(torch.log_softmax(logits, dim=-2) + per_component, dim=-2)


def logit_transform(y: torch.Tensor, *, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``z = logit(alpha + (1 - 2 alpha) y)`` and its log-Jacobian.

    Args:
        y: dequantized values in ``[0, 1)``, shape ``(n, D)``.
        alpha: margin keeping the logit finite.

    Returns:
        ``z`` of shape ``(n, D)`` and ``log |dz/dy|`` summed over dimensions, shape ``(n,)``.
    """
    s = alpha + (1 - 2 * alpha) * y
    z = torch.log(s) - torch.log1p(-s)
    log_det = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).sum(-1)
    return z, log_det


def logit_inverse(z: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """Inverse of :func:`logit_transform`, clipped into ``[0, 1]``."""
    return ((torch.sigmoid(z) - alpha) / (1 - 2 * alpha)).clamp(0.0, 1.0)
