"""Test metrics for any model: its own loss terms plus per-pixel MSE and per-image BCE of the
deterministic reconstruction decode(encode(x)); models with more to say add `test_metrics`."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from aezoo.data.batches import Batches
from aezoo.errors import UsageError
from aezoo.losses import bernoulli_nll
from aezoo.models.protocols import GaussianLatent, HasTestMetrics


def evaluator(batches: Batches, *, seed: int = 0) -> Callable[[nn.Module], dict[str, Any]]:
    """`evaluate` on `batches` as the training loop's per-epoch evaluation callback."""
    return functools.partial(evaluate, batches=batches, seed=seed)


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Batches, *, seed: int = 0) -> dict[str, Any]:
    """Mean test metrics over every image of `batches` (in order), deterministic for a seed.

    test_mse: mean over pixels of (x̂ − x)², x̂ = sigmoid(decode_logits(encode(x̃))), x the clean
    target and x̃ the (possibly corrupted) input; test_bce: Σ_pixels BCE in nats per image;
    test_<term>: the model's loss terms; test_loss: their weighted total.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, Tensor] = {}
    codes: list[Tensor] = []
    count = 0

    def add(name: str, value: Tensor) -> None:
        sums[name] = sums[name] + value if name in sums else value.detach().double()

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in batches.epoch(0):
            n = batch.x.shape[0]
            terms = model.loss(batch.x, batch.y, batch.x_in)
            logits = terms.outputs.get("logits")  # deterministic models computed it already
            if logits is None:  # a VAE's loss decoded a posterior sample; x̂ decodes μ
                logits = model.decode_logits(model.encode(batch.x_in, batch.y), batch.y)
            if "codes" in terms.outputs:
                codes.append(terms.outputs["codes"].reshape(-1))
            add("mse", (torch.sigmoid(logits) - batch.x).square().flatten(1).mean(1).sum())
            add("bce", bernoulli_nll(logits, batch.x).sum())
            for name, value in terms.items():
                add(name, value * n)
            add("loss", terms.total * n)
            count += n
        metrics: dict[str, Any] = {f"test_{k}": float(v) / count for k, v in sums.items()}
        if codes:  # a VQ-VAE: codebook usage from the codes of the pass above
            metrics.update(model.test_metrics(batches, codes=torch.cat(codes)))
        elif isinstance(model, HasTestMetrics):
            metrics.update(model.test_metrics(batches))
    model.train(was_training)
    return metrics


@torch.inference_mode()
def iwae_nll(
    model: nn.Module, batches: Batches, samples: int = 1000, *, seed: int = 0, chunk: int = 20_000
) -> float:
    """Test negative log-likelihood in nats per image, −log p̂(x) with the importance-weighted
    bound over `samples` posterior samples (Burda et al. 2015): log p̂(x) = log (1/K) Σ_k w_k.

    Needs a model with `log_importance_weights(x, y, samples, generator) -> (K, B)`. Samples are
    drawn in chunks of about `chunk` decoded images, so memory does not grow with K.
    """
    if not isinstance(model, GaussianLatent):
        raise UsageError("the importance-weighted NLL needs a model with a posterior (a VAE)")
    if samples < 1:
        raise UsageError(f"nll samples: expected a positive number, got {samples}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0
    for batch in batches.epoch(0):
        n = batch.x.shape[0]
        per_chunk = max(1, chunk // n)
        parts = []  # log Σ_k w_k over each chunk of samples, (B,) each
        for start in range(0, samples, per_chunk):
            k = min(per_chunk, samples - start)
            log_w = model.log_importance_weights(batch.x, batch.y, k, generator)  # (k, B)
            parts.append(torch.logsumexp(log_w.double(), dim=0))
        log_px = torch.logsumexp(torch.stack(parts), dim=0) - math.log(samples)  # (B,)
        total -= float(log_px.sum())
        count += n
    model.train(was_training)
    return total / count
