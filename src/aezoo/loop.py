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
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aezoo import distributed
from aezoo.config import TrainConfig
from aezoo.data.batches import Batch, epoch_seed
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


def lr_at(config: TrainConfig, step: int, total_steps: int, *, floor: float = 0.01) -> float:
    """Learning rate at `step` of `total_steps` (see TrainConfig.lr_schedule); a decaying schedule
    ends at lr × floor (lr/100 by default; the reference classifier's cosine goes to 0)."""
    progress = min(1.0, step / max(1, total_steps))
    if config.lr_schedule == "cosine":
        return config.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    if config.lr_schedule == "warmdown":
        f = config.warmdown
        decay = min(1.0, max(0.0, (progress - (1.0 - f)) / f))  # 0 until the last f, then → 1
        return config.lr * (1.0 - (1.0 - floor) * decay)
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


class TensorBatches:
    """A batch source over tensors already on the device (e.g. code grids): one seeded
    permutation per epoch, as `Batches` draws it; no pixel noise. What `fit` needs of a source:
    `len`, `noise(epoch)` and `epoch(epoch, start, noise)`."""

    def __init__(self, x: Tensor, y: Tensor | None, batch_size: int, *, seed: int = 0) -> None:
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def noise(self, epoch: int) -> torch.Generator:
        return torch.Generator(self.x.device).manual_seed(epoch_seed(self.seed, epoch))

    def epoch(self, epoch: int, start: int = 0, noise: Any = None) -> Iterator[Batch]:
        shuffler = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(len(self.x), generator=shuffler).to(self.x.device)
        for first in range(start * self.batch_size, len(self.x), self.batch_size):
            rows = order[first : first + self.batch_size]
            x = self.x[rows]
            yield Batch(x, x, None if self.y is None else self.y[rows])


@dataclass
class _Epoch:
    """What one epoch has summed so far: terms × images on the device, and images seen."""

    index: int
    first: int = 0
    seen: int = 0
    sums: dict[str, Tensor] = field(default_factory=dict)

    def add(self, terms: Mapping[str, Tensor], total: Tensor, n: int) -> None:
        for name, value in [*terms.items(), ("loss", total)]:
            value = value.detach() * n
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.seen += n

    def check_finite(self, step: int) -> None:
        if not torch.isfinite(self.sums["loss"]):
            bad = [k for k, v in self.sums.items() if not torch.isfinite(v)]
            raise TrainingError(
                f"the loss became non-finite at step {step + 1} (epoch {self.index + 1}; terms: "
                f"{', '.join(bad)}); try a lower --lr or --clip-grad. The last good "
                "checkpoint is kept."
            )


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Any,
    evaluate: Callable[[nn.Module], dict[str, Any]],
    config: TrainConfig,
    *,
    start_epoch: int = 0,
    resume: Progress | None = None,
    quiet: bool = False,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    stop: StopOnSigint | None = None,
    lr_floor: float = 0.01,
) -> list[dict[str, Any]]:
    """Train from `start_epoch` (or within the epoch `resume` left) to `config.epochs` on `train`
    (Batches, TensorBatches: any source of Batch); `evaluate(model)` gives each epoch's test
    metrics. Returns one record per epoch. Terms are summed on the device and read once per epoch.
    A non-finite loss is a TrainingError before its weights are saved. Once `stop.requested`
    (Ctrl-C): `Stop(progress)` after this step, or `Stop(None)` after the epoch's last step."""
    device, steps, show_bar = next(model.parameters()).device, len(train), not quiet and _tty()
    check_every = 1 if device.type == "cpu" else 50  # a check is a host sync on accelerators
    loss_of = training_loss(model, config)  # model.loss (through DDP under torchrun)
    rank, _ = distributed.world()
    records: list[dict[str, Any]] = []
    warned = False  # about posterior collapse: once per call
    for epoch in range(start_epoch if resume is None else resume.epoch, config.epochs):
        # Each process its own dropout and sampling noise.
        torch.manual_seed((epoch_seed(config.seed, epoch) + GLOBAL_STREAM + rank) % 2**63)
        model.train()
        noise, state = train.noise(epoch), _Epoch(epoch)
        if resume is not None and resume.epoch == epoch:
            state.first, state.seen, state.sums = resume.restore(noise, device)
        started = time.perf_counter()
        bar = _bar(steps, state.first, epoch, config.epochs, show_bar)
        for i, batch in enumerate(train.epoch(epoch, state.first, noise), start=state.first):
            step = epoch * steps + i
            lr = lr_at(config, step, config.epochs * steps, floor=lr_floor)
            kl_weight = config.kl_weight(epoch, i / steps)
            terms = _backward(loss_of, model, optimizer, batch, config, lr, kl_weight)
            state.add(terms, terms.total, batch.x.shape[0])
            stopping = stop is not None and stop.requested and i + 1 < steps
            if (i + 1) % check_every == 0 or stopping:
                state.check_finite(step)
            optimizer.step()
            _show(bar, state, i, steps, show_bar)
            if stopping:
                bar.close()
                raise Stop(Progress.capture(epoch, i + 1, state.seen, state.sums, noise, device))
        bar.close()
        record = _end_epoch(model, state, evaluate, started, lr, kl_weight)
        records.append(record)
        warned = warned or _warn_collapse(record)
        if not show_bar and not quiet:
            _announce(record, config.epochs)
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
        if stop is not None and stop.requested and epoch + 1 < config.epochs:
            raise Stop(None)
    return records


def _backward(
    loss_of: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    config: TrainConfig,
    lr: float,
    kl_weight: float,
) -> Any:
    """One step up to the optimiser's: terms = model.loss(x, y, x̃) with the KL weight of the
    schedule, total.backward(), optional gradient clipping; returns the terms."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    terms = loss_of(batch.x, batch.y, batch.x_in).reweight("kl", kl_weight)
    optimizer.zero_grad(set_to_none=True)
    (terms.total * batch.loss_scale).backward()  # loss_scale: 1 but in data-parallel training
    if config.clip_grad is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
    return terms


def _tty() -> bool:
    return sys.stderr.isatty()


def _warn_collapse(record: dict[str, Any]) -> bool:
    """Warn (once per fit: the caller remembers) if the epoch looks like posterior collapse."""
    collapse = collapse_message(record)
    if collapse is not None:
        warnings.warn(collapse, PosteriorCollapseWarning, stacklevel=3)  # at fit's caller
    return collapse is not None


def _bar(steps: int, first: int, epoch: int, epochs: int, show: bool) -> Any:
    return tqdm(
        total=steps,
        initial=first,
        desc=f"epoch {epoch + 1}/{epochs}",
        disable=not show,
        leave=False,
        file=sys.stderr,
    )


def _show(bar: Any, state: _Epoch, i: int, steps: int, show: bool) -> None:
    if show and (i % 20 == 0 or i == steps - 1):
        bar.set_postfix({k: f"{float(v) / state.seen:.4g}" for k, v in state.sums.items()})
    bar.update(1)


def _end_epoch(
    model: nn.Module,
    state: _Epoch,
    evaluate: Callable[[nn.Module], dict[str, Any]],
    started: float,
    lr: float,
    kl_weight: float,
) -> dict[str, Any]:
    """The epoch's record: mean training terms (over all processes), then the evaluation."""
    sums, seen = distributed.end_epoch(model, state.sums, state.seen)  # over all processes
    if not torch.isfinite(sums["loss"]):
        raise TrainingError(
            f"the loss became non-finite in epoch {state.index + 1}; try a lower "
            "--lr or --clip-grad. The last good checkpoint is kept."
        )
    check_parameters(model, f"in epoch {state.index + 1}")
    seconds = time.perf_counter() - started  # after the check's sync: the device is done
    record: dict[str, Any] = {"epoch": state.index + 1}
    record.update({f"train_{k}": float(v) / seen for k, v in sums.items()})
    started_eval = time.perf_counter()
    record.update(evaluate(model))
    record.update(
        lr=lr,
        kl_weight=kl_weight,
        seconds=round(seconds, 3),
        eval_seconds=round(time.perf_counter() - started_eval, 3),
    )
    return record


def check_parameters(model: nn.Module, when: str) -> None:
    """A TrainingError naming the first non-finite parameter: a step whose loss was finite can
    still make the weights NaN, and such weights must never be checkpointed. One host sync."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    if not params or bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
        return
    name = next(n for n, p in model.named_parameters() if not bool(p.detach().isfinite().all()))
    raise TrainingError(
        f"the weights became non-finite {when} ({name}); try a lower --lr or --clip-grad. "
        "The last good checkpoint is kept."
    )


def _announce(record: dict[str, Any], epochs: int) -> None:
    """One line per epoch on stderr when there is no progress bar."""
    shown = [f"epoch {record['epoch']}/{epochs}", f"train_loss {record['train_loss']:.4f}"]
    shown += [f"test_loss {record['test_loss']:.4f}"] if "test_loss" in record else []
    shown += [f"test_mse {record['test_mse']:.5f}"] if "test_mse" in record else []
    print("  ".join([*shown, f"{record['seconds']:.1f}s"]), file=sys.stderr)
