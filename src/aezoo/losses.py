"""Pure loss maths. Every function returns one value per image (summed over pixels, in nats for
likelihoods) so callers choose how to average; shapes are noted at line ends."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """−log p(x|z) for Bernoulli pixels with p = sigmoid(logits): Σ_pixels BCE, stable form."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return bce.flatten(1).sum(1)  # (B,)


def squared_error(pred: Tensor, x: Tensor) -> Tensor:
    """Σ_pixels (x̂ − x)²: the per-image sum behind the per-pixel test MSE."""
    return (pred - x).square().flatten(1).sum(1)  # (B,)


def gaussian_nll(mean: Tensor, x: Tensor, log_var: Tensor | float = 0.0) -> Tensor:
    """−log N(x; mean, σ²) summed over pixels: ½ Σ [log 2π + log σ² + (x − mean)² / σ²]."""
    log_var = torch.as_tensor(log_var, dtype=mean.dtype, device=mean.device)
    nll = 0.5 * (LOG_2PI + log_var + (x - mean).square() * torch.exp(-log_var))
    return nll.flatten(1).sum(1)  # (B,)


def reconstruction_loss(logits: Tensor, x: Tensor, kind: str) -> Tensor:
    """The decoder's reconstruction term per image: "bce" (Bernoulli NLL) or "mse" (on sigmoid)."""
    if kind == "bce":
        return bernoulli_nll(logits, x)
    if kind == "mse":
        return squared_error(torch.sigmoid(logits), x)
    raise ValueError(f"unknown reconstruction loss {kind!r}")


def gaussian_kl(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per latent dimension, closed form: ½ (μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var)  # (B, D)


def gaussian_log_density(
    z: Tensor, mu: Tensor | float = 0.0, log_var: Tensor | float = 0.0
) -> Tensor:
    """log N(z; μ, diag σ²) summed over the last dimension: −½ Σ [log 2π + log σ² + (z − μ)²/σ²].

    With the defaults it is the standard-normal prior log p(z)."""
    log_var = torch.as_tensor(log_var, dtype=z.dtype, device=z.device)
    return -0.5 * (LOG_2PI + log_var + (z - mu).square() * torch.exp(-log_var)).sum(-1)  # (...,)


def free_bits(kl_per_dim: Tensor, floor: float) -> Tensor:
    """Free bits (Kingma et al. 2016): per image, Σ_j of KL_j where the batch mean m_j of KL_j
    exceeds λ = `floor`, else λ. Its batch mean is Σ_j max(λ, m_j), and a dimension below its
    floor gets no gradient, so the model may spend λ nats on it for free."""
    batch_mean = kl_per_dim.mean(0, keepdim=True)  # (1, D)
    floored = torch.where(batch_mean > floor, kl_per_dim, torch.full_like(kl_per_dim, floor))
    return floored.sum(1)  # (B,)


def iw_bound(log_weights: Tensor) -> Tensor:
    """The importance-weighted bound (Burda et al. 2015) from log w_k = log p(x, z_k) − log q(z_k|x)
    stacked on dim 0: log (1/K) Σ_k exp(log w_k), a log-mean-exp; K = 1 is the ELBO."""
    k = log_weights.shape[0]
    return torch.logsumexp(log_weights, dim=0) - math.log(k)  # (B,)
