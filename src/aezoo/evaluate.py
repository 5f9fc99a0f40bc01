"""Test metrics for any model: its own loss terms plus per-pixel MSE and per-image BCE of the
deterministic reconstruction decode(encode(x)); models with more to say add `test_metrics`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from aezoo.data.batches import Batches
from aezoo.losses import bernoulli_nll


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
    count = 0

    def add(name: str, value: Tensor) -> None:
        sums[name] = sums[name] + value if name in sums else value.detach().double()

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in batches.epoch(0):
            n = batch.x.shape[0]
            terms = model.loss(batch.x, batch.y, batch.x_in)
            logits = model.decode_logits(model.encode(batch.x_in, batch.y), batch.y)
            add("mse", (torch.sigmoid(logits) - batch.x).square().flatten(1).mean(1).sum())
            add("bce", bernoulli_nll(logits, batch.x).sum())
            for name, value in terms.items():
                add(name, value * n)
            add("loss", terms.total * n)
            count += n
        metrics: dict[str, Any] = {f"test_{k}": float(v) / count for k, v in sums.items()}
        if hasattr(model, "test_metrics"):
            metrics.update(model.test_metrics(batches))
    model.train(was_training)
    return metrics
