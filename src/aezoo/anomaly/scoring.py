"""Scores of a trained registered model: reconstruction, −ELBO, the importance-weighted bound,
codes, and per-pixel squared errors, computed in chunks of one fixed size so that a row's value
never depends on the rows scored with it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from aezoo.losses import gaussian_kl, iw_bound, reconstruction_loss
from aezoo.models.protocols import GaussianLatent

SCORE_BUDGET = 2048  # decoded rows per scoring step: chunk = SCORE_BUDGET // posterior samples


def reconstruction_nll(model: nn.Module, logits: Tensor, x: Tensor) -> Tensor:
    """−log p(x|z) per row: a VAE's likelihood, else the model's reconstruction loss."""
    if isinstance(model, GaussianLatent):
        return model.nll(logits, x)  # (B,)
    return reconstruction_loss(logits, x, getattr(model.config, "loss", "mse"))  # (B,)


def posterior_scores(model: GaussianLatent, x: Tensor, eps: Tensor) -> dict[str, Tensor]:
    """A VAE's normality scores (B,) with given noise ε (S, 1, D): z_s = μ + σ ε_s.

    The model's importance weights log w_s = log p(x|z_s) + log p(z_s) − log q(z_s|x)
    (log_weights_at) on the same draws for every row (common random numbers):
    recon = (1/S) Σ_s log p(x|z_s), elbo = recon − KL(q(z|x) ‖ p(z)), nll = log (1/S) Σ_s w_s."""
    mu, log_var = model.posterior(x)  # (B, D)
    z = mu + torch.exp(0.5 * log_var) * eps  # (S, B, D)
    log_w, recon_nll = model.log_weights_at(x, None, z, mu, log_var)  # (S, B) each
    recon = -recon_nll.mean(0)
    return {"recon": recon, "elbo": recon - gaussian_kl(mu, log_var).sum(1), "nll": iw_bound(log_w)}


@torch.inference_mode()
def chunked(
    model: nn.Module, x: Tensor, samples: int, fn: Callable[[Tensor], Tensor]
) -> np.ndarray:
    """fn over chunks of x of one fixed size (the last padded with zeros), as float64 numpy."""
    device = next(model.parameters()).device
    rows = max(1, SCORE_BUDGET // samples)
    parts = []
    for start in range(0, len(x), rows):
        chunk = x[start : start + rows]
        n = len(chunk)
        if n < rows:
            chunk = torch.cat([chunk, chunk.new_zeros((rows - n, *chunk.shape[1:]))])
        parts.append(fn(chunk.to(device))[:n].double().cpu())
    return torch.cat(parts).numpy()


def model_scores(model: nn.Module, x: Tensor, score: str, samples: int, seed: int) -> np.ndarray:
    """Normality (minus the anomaly score) of rows x under `score` in recon, elbo, nll."""
    if not isinstance(model, GaussianLatent):
        return chunked(
            model,
            x,
            1,
            lambda c: -reconstruction_nll(model, model.decode_logits(model.encode(c)), c),
        )
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    eps = torch.randn(
        (samples, 1, model.config.latent_dim), generator=generator, device=device
    )  # (S, 1, D), the same draws for every row
    return chunked(model, x, samples, lambda c: posterior_scores(model, c, eps)[score])


def codes(model: nn.Module, x: Tensor) -> np.ndarray:
    """The point codes encode(x) (μ for a VAE), flattened: (N, code width)."""
    return chunked(model, x, 1, lambda c: model.encode(c).flatten(1))


def codes_and_errors(model: nn.Module, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """codes(x) (N, code width) and ‖x − x̂‖² per row (N,), from one encode per chunk."""

    def both(c: Tensor) -> Tensor:
        z = model.encode(c)
        error = (model.decode(z) - c).square().flatten(1).double().sum(1, keepdim=True)
        return torch.cat([z.flatten(1).double(), error], 1)

    out = chunked(model, x, 1, both)
    return out[:, :-1], out[:, -1]


def squared_errors(model: nn.Module, x: Tensor) -> np.ndarray:
    """|x − x̂|² per value, x̂ = decode(encode(x)) (the posterior mean for a VAE): like x."""
    return chunked(model, x, 1, lambda c: (model.decode(model.encode(c)) - c).square())
