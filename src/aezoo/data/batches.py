"""The on-device batch iterator: uint8 images moved once, floats and noise made per batch.

Epoch k's order and random draws depend only on (seed, k), so a run resumed at epoch k sees exactly
the batches it would have seen without the interruption.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from aezoo.data import Dataset
from aezoo.errors import UsageError

CorruptionKind = Literal["gaussian", "mask", "saltpepper"]
CORRUPTION_FORMS = "gaussian:STD (STD >= 0), mask:P or saltpepper:P (0 <= P <= 1)"
# Added to the epoch's seed for the pixel-noise generator, so that on the CPU (where both
# generators are the same Mersenne Twister) the noise is not drawn from the shuffle's stream.
_NOISE_STREAM = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class Corruption:
    """Noise on the encoder's input: gaussian (std), mask (drop prob.) or saltpepper (prob.)."""

    kind: CorruptionKind
    amount: float

    def __post_init__(self) -> None:
        high = math.inf if self.kind == "gaussian" else 1.0
        known = self.kind in get_args(CorruptionKind)
        if not (known and math.isfinite(self.amount) and 0.0 <= self.amount <= high):
            raise UsageError(f"noise {self.kind}:{self.amount}: expected {CORRUPTION_FORMS}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """A corrupted copy of `x` (floats in [0, 1]); `x` itself is left untouched."""
        if self.kind == "gaussian":
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return (x + self.amount * noise).clamp_(0.0, 1.0)  # x̃ = clip(x + σε)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.kind == "mask":
            return x.masked_fill(u < self.amount, 0.0)
        # One uniform draw decides both whether a pixel is hit (u < p) and which way (u >= p/2).
        return torch.where(u < self.amount, (u >= self.amount / 2).to(x.dtype), x)


def parse_corruption(spec: str) -> Corruption:
    """'gaussian:0.3', 'mask:0.5' or 'saltpepper:0.1' → Corruption."""
    kind, _, amount = spec.partition(":")
    try:
        return Corruption(kind, float(amount))  # type: ignore[arg-type]  # checked there
    except ValueError:  # a bad number, or Corruption's own UsageError (also a ValueError)
        raise UsageError(f"noise {spec!r}: expected {CORRUPTION_FORMS}") from None


@dataclass(frozen=True)
class Batch:
    """One batch: the target `x`, the encoder's input `x_in` and the labels `y`."""

    x: Tensor  # float [B, C, H, W] in [0, 1], the clean target (binarised under dynamic)
    x_in: Tensor  # x corrupted, or the very same tensor as x when there is no corruption
    y: Tensor | None  # int64 [B]


def _epoch_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


class Batches:
    """Seeded, vectorised batches of a data set on `device`; `epoch(k)` is repeatable."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        binarize: Literal["none", "dynamic"] = "none",
        corruption: Corruption | None = None,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size: must be > 0, got {batch_size}")
        if binarize not in ("none", "dynamic"):
            raise UsageError(
                f"binarize: Batches takes 'none' or 'dynamic', got {binarize!r} "
                "(static binarisation is binarize_once on the data set)"
            )
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.drop_last, self.binarize, self.corruption = drop_last, binarize, corruption
        self.device = torch.device(device)
        self.images, self.labels = _place(dataset, self.device)

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, index: int) -> Iterator[Batch]:
        """The batches of epoch `index` (from 0): one permutation, drawn from (seed, index)."""
        epoch_seed = _epoch_seed(self.seed, index)
        if self.shuffle:
            # The order comes from a CPU generator, so it is the same on every device.
            shuffler = torch.Generator().manual_seed(epoch_seed)
            order = torch.randperm(len(self.images), generator=shuffler)
        else:
            order = torch.arange(len(self.images))
        order = order.to(self.images.device)
        noise = torch.Generator(device=self.device)
        noise.manual_seed((epoch_seed + _NOISE_STREAM) % 2**63)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._batch(order[start : start + self.batch_size], noise)

    def _batch(self, rows: Tensor, noise: torch.Generator) -> Batch:
        x = self.images.index_select(0, rows).to(self.device, non_blocking=True)
        x = x.float().div_(255)  # (B, C, H, W) in [0, 1]
        y = None
        if self.labels is not None:
            y = self.labels.index_select(0, rows).to(self.device, non_blocking=True)
        if self.binarize == "dynamic":
            x = torch.bernoulli(x, generator=noise)
        x_in = x if self.corruption is None else self.corruption(x, noise)
        return Batch(x, x_in, y)


def _place(dataset: Dataset, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The images and labels on `device`, or pinned on the CPU when the device lacks memory."""
    try:
        moved = dataset.to(device)
    except torch.cuda.OutOfMemoryError:
        # Too big for the accelerator: keep it in host memory (pinned, for faster copies) and
        # copy each batch over.
        moved = dataset.to("cpu")
        labels = None if moved.labels is None else moved.labels.pin_memory()
        return moved.images.pin_memory(), labels
    return moved.images, moved.labels
