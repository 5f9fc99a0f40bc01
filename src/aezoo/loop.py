"""The one training loop (`fit`), its learning-rate schedule, optimiser and per-epoch seeds.

Reproducibility: the weights are initialised after `torch.manual_seed(seed)`; epoch k's data order,
corruption and binarisation draw from generators seeded by (seed, k), and the global RNG (dropout,
reparameterisation) is reseeded from (seed, k) at the start of the epoch. So a run resumed from the
checkpoint after epoch k continues exactly as the uninterrupted run would have; one stopped by
Ctrl-C mid-epoch also saves where the epoch stood (aezoo.resume.Progress) and continues it exactly.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aezoo import distributed
from aezoo.config import TrainConfig
from aezoo.data.batches import Batches, epoch_seed
from aezoo.device import LossOf
from aezoo.errors import TrainingError
from aezoo.resume import Progress, Stop, StopOnSigint

GLOBAL_STREAM = 7_919 << 32  # the global RNG's (dropout, sampling) offset from the data order
COLLAPSE_KL = 0.5  # nats per image: below this total KL the latent code carries almost nothing


class PosteriorCollapseWarning(UserWarning):
    """The posterior q(z|x) has fallen back to the prior: the decoder ignores the latent code."""


def collapse_message(record: Mapping[str, Any]) -> str | None:
    """Why an epoch's test metrics look like posterior collapse, with remedies; None if they do
    not (or the model reports no active units / KL)."""
    units, kl = record.get("test_active_units"), record.get("test_kl")
    if units is None or kl is None or (units > 0 and kl >= COLLAPSE_KL):
        return None
    if "test_iwae" in record:  # trained on the importance-weighted bound: no KL weight to adjust
        remedies = (
            "train on the ELBO (--iw-samples 1) with a KL warm-up (--kl-warmup 10) or free bits "
            "(--free-bits 0.5), or a smaller decoder"
        )
    else:
        remedies = (
            "a KL warm-up (--kl-warmup 10), free bits (--free-bits 0.5), a smaller β, or a "
            "smaller decoder"
        )
    return (
        f"posterior collapse at epoch {record.get('epoch', '?')}: {units} active latent units, "
        f"test KL {kl:.3g} nats per image; remedies: {remedies}"
    )


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at `step` of `total_steps` (see TrainConfig.lr_schedule); ends at lr/100."""
    progress = min(1.0, step / max(1, total_steps))
    if config.lr_schedule == "cosine":
        return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))
    if config.lr_schedule == "warmdown":
        f = config.warmdown
        decay = min(1.0, max(0.0, (progress - (1.0 - f)) / f))  # 0 until the last f, then → 1
        return config.lr * (1.0 - 0.99 * decay)
    return config.lr


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (= Adam when weight_decay is 0), fused on devices that support it."""
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def training_loss(model: nn.Module, config: TrainConfig) -> nn.Module:
    """How `fit` calls `model.loss`: through DDP under torchrun, compiled with `compile`."""
    module = distributed.data_parallel(LossOf(model, config.precision))
    return torch.compile(module) if config.compile else module


@contextlib.contextmanager
def anomaly_detection(enabled: bool) -> Iterator[None]:
    """With `enabled`, autograd checks every backward op for NaN and names the forward op that
    made it (PyTorch prints that op's traceback as a warning); slow, for debugging only."""
    if not enabled:
        yield
        return
    with torch.autograd.detect_anomaly(check_nan=True):
        try:
            yield
        except RuntimeError as err:
            if "returned nan values" not in str(err):
                raise
            raise TrainingError(
                f"autograd anomaly detection: {err}; the forward operation that made it is in "
                "the warning above. The last good checkpoint is kept."
            ) from None


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Batches,
    evaluate: Callable[[nn.Module], dict[str, Any]],
    config: TrainConfig,
    *,
    start_epoch: int = 0,
    resume: Progress | None = None,
    quiet: bool = False,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    stop: StopOnSigint | None = None,
) -> list[dict[str, Any]]:
    """Train from `start_epoch` (or from within the epoch `resume` left) to `config.epochs`;
    returns one metrics record per epoch.

    Each step: terms = model.loss(x, y, x̃); the KL weight follows the schedule; total.backward();
    optional gradient clipping; optimizer step. Terms are summed on the device and read once per
    epoch, so the loop never waits for the accelerator. A non-finite loss stops training with a
    TrainingError before the weights it produced are saved. When `stop.requested` turns true
    (Ctrl-C), the loop ends after the current step with `Stop(progress)`, or at the end of the
    epoch, checkpointed, with `Stop(None)` if that step was the epoch's last.
    """
    device = next(model.parameters()).device
    check_every = 1 if device.type == "cpu" else 50  # a check is a host sync on accelerators
    steps_per_epoch = len(train)
    total_steps = config.epochs * steps_per_epoch
    records = []
    warned_collapse = False
    show_bar = not quiet and sys.stderr.isatty()
    start_epoch = start_epoch if resume is None else resume.epoch
    loss_of = training_loss(model, config)  # model.loss (through DDP under torchrun)
    rank, _ = distributed.world()
    for epoch in range(start_epoch, config.epochs):
        # Each process its own dropout and sampling noise.
        torch.manual_seed((epoch_seed(config.seed, epoch) + GLOBAL_STREAM + rank) % 2**63)
        model.train()
        noise = train.noise(epoch)
        first, seen = 0, 0
        sums: dict[str, Tensor] = {}
        if resume is not None and resume.epoch == epoch:
            first, seen, sums = resume.restore(noise, device)
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not show_bar,
            leave=False,
            file=sys.stderr,
        )
        for i, batch in enumerate(train.epoch(epoch, first, noise), start=first):
            step = epoch * steps_per_epoch + i
            lr = lr_at(config, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            kl_weight = config.kl_weight(epoch, i / steps_per_epoch)
            terms = loss_of(batch.x, batch.y, batch.x_in).reweight("kl", kl_weight)
            total = terms.total
            optimizer.zero_grad(set_to_none=True)
            (total * batch.loss_scale).backward()  # loss_scale: 1 but in data-parallel training
            if config.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            n = batch.x.shape[0]
            for name, value in [*terms.items(), ("loss", total)]:
                value = value.detach() * n
                sums[name] = sums[name] + value if name in sums else value
            stopping = stop is not None and stop.requested and i + 1 < steps_per_epoch
            if ((i + 1) % check_every == 0 or stopping) and not torch.isfinite(sums["loss"]):
                bad = [k for k, v in sums.items() if not torch.isfinite(v)]
                raise TrainingError(
                    f"the loss became non-finite at step {step + 1} (epoch {epoch + 1}; terms: "
                    f"{', '.join(bad)}); try a lower --lr or --clip-grad. The last good "
                    "checkpoint is kept."
                )
            optimizer.step()
            seen += n
            if show_bar and (i % 20 == 0 or i == steps_per_epoch - 1):
                bar.set_postfix({k: f"{float(v) / seen:.4g}" for k, v in sums.items()})
            bar.update(1)
            if stopping:
                bar.close()
                raise Stop(Progress.capture(epoch, i + 1, seen, sums, noise, device))
        bar.close()
        sums, seen = distributed.end_epoch(model, sums, seen)  # over all processes (torchrun)
        if not torch.isfinite(sums["loss"]):
            raise TrainingError(
                f"the loss became non-finite in epoch {epoch + 1}; try a lower "
                "--lr or --clip-grad. The last good checkpoint is kept."
            )
        seconds = time.perf_counter() - started  # after the check's sync: the device is done
        record: dict[str, Any] = {"epoch": epoch + 1}
        record.update({f"train_{k}": float(v) / seen for k, v in sums.items()})
        started_eval = time.perf_counter()
        record.update(evaluate(model))
        record.update(
            lr=lr,
            kl_weight=kl_weight,
            seconds=round(seconds, 3),
            eval_seconds=round(time.perf_counter() - started_eval, 3),
        )
        records.append(record)
        collapse = collapse_message(record)
        if collapse is not None and not warned_collapse:
            warnings.warn(collapse, PosteriorCollapseWarning, stacklevel=2)
            warned_collapse = True
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
        if not show_bar and not quiet:
            print(
                f"epoch {epoch + 1}/{config.epochs}  train_loss {record['train_loss']:.4f}  "
                f"test_loss {record['test_loss']:.4f}  test_mse {record['test_mse']:.5f}  "
                f"{seconds:.1f}s",
                file=sys.stderr,
            )
        if stop is not None and stop.requested and epoch + 1 < config.epochs:
            raise Stop(None)
    return records
