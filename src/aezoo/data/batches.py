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


def translate(x: Tensor, most: int, generator: torch.Generator) -> Tensor:
    """Each image of x (B, C, H, W) moved by its own (dy, dx), drawn uniformly from
    {−most, …, most}², with zeros shifted in: moves small enough to leave a digit, a part or a
    texture what it is, so a small training set shows the model more of its neighbourhood."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (most, most, most, most))
    # image i is the window of `padded` starting at (start_i, start_j): moved by most − start
    starts = torch.randint(0, 2 * most + 1, (2, b, 1), generator=generator, device=x.device)
    rows = (starts[0] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (starts[1] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    images = torch.arange(b, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[images, channels, rows, cols]


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
    # Data-parallel training: processes × this process's share of the global batch (1 alone).
    # Scaling the loss by it makes DDP's average of gradients the global batch's gradient.
    loss_scale: float = 1.0


def epoch_seed(seed: int, index: int) -> int:
    """The seed of epoch `index`'s random draws: a function of (seed, index) alone, the one
    formula every per-epoch generator starts from (each use adds its own stream offset)."""
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
        shift: int = 0,
        part: tuple[int, int] = (0, 1),
    ) -> None:
        """`shift`: move each image by up to this many pixels each way (augmentation);
        `part` = (rank, processes): yield only this process's slice of each batch."""
        if batch_size < 1:
            raise UsageError(f"batch_size: must be > 0, got {batch_size}")
        if binarize not in ("none", "dynamic"):
            raise UsageError(
                f"binarize: Batches takes 'none' or 'dynamic', got {binarize!r} "
                "(static binarisation is binarize_once on the data set)"
            )
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.drop_last, self.binarize, self.corruption = drop_last, binarize, corruption
        if shift < 0:
            raise UsageError(f"shift: must be >= 0, got {shift}")
        self.shift = shift
        if len(dataset) == 0:
            raise UsageError(f"{dataset.name}: no images to make batches of (an empty data set)")
        self.part = _check_part(part, len(dataset), batch_size, drop_last)
        self.device = torch.device(device)
        self.mapped = dataset.mapped  # a memory-mapped file: read batch by batch, never whole
        self.images, self.labels = _place(dataset, self.device)

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def noise(self, index: int) -> torch.Generator:
        """A fresh generator for epoch `index`'s pixel noise (binarisation, corruption)."""
        noise = torch.Generator(device=self.device)
        stream = _NOISE_STREAM * (1 + self.part[0])  # each process its own noise
        return noise.manual_seed((epoch_seed(self.seed, index) + stream) % 2**63)

    def epoch(
        self, index: int, start: int = 0, noise: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """The batches of epoch `index` (from 0): one permutation, drawn from (seed, index).

        A resumed epoch skips its first `start` batches and passes the `noise` generator in the
        state where they left it (default: `self.noise(index)`, as at the epoch's start)."""
        if self.shuffle:
            # The order comes from a CPU generator, so it is the same on every device.
            shuffler = torch.Generator().manual_seed(epoch_seed(self.seed, index))
            order = torch.randperm(len(self.images), generator=shuffler)
        else:
            order = torch.arange(len(self.images))
        order = order.to(self.images.device)
        noise = self.noise(index) if noise is None else noise
        for first in range(start * self.batch_size, len(self) * self.batch_size, self.batch_size):
            yield self._batch(order[first : first + self.batch_size], noise)

    def _batch(self, rows: Tensor, noise: torch.Generator) -> Batch:
        rank, processes = self.part
        loss_scale = 1.0
        if processes > 1:  # this process's contiguous slice of the global batch
            n = len(rows)
            rows = rows[n * rank // processes : n * (rank + 1) // processes]
            loss_scale = processes * len(rows) / n
        x = self._rows(self.images, rows).to(self.device, non_blocking=True)
        x = x.float().div_(255)  # (B, C, H, W) in [0, 1]
        if self.shift:
            x = translate(x, self.shift, noise)
        y = None
        if self.labels is not None:
            y = self._rows(self.labels, rows).to(self.device, non_blocking=True)
        if self.binarize == "dynamic":
            x = torch.bernoulli(x, generator=noise)
        x_in = x if self.corruption is None else self.corruption(x, noise)
        return Batch(x, x_in, y, loss_scale)

    def _rows(self, tensor: Tensor, rows: Tensor) -> Tensor:
        """tensor[rows]; from a memory-mapped file they are read in ascending order (nearby rows
        share pages and read-ahead) and put back in the order asked for."""
        if not self.mapped:
            return tensor.index_select(0, rows)
        ascending, where = rows.sort()
        out = torch.empty((len(rows), *tensor.shape[1:]), dtype=tensor.dtype)
        out[where] = tensor.index_select(0, ascending)
        return out


def _check_part(
    part: tuple[int, int], images: int, batch_size: int, drop_last: bool
) -> tuple[int, int]:
    """(rank, processes), checked: every process must get at least one image of every batch."""
    rank, processes = part
    if not 0 <= rank < processes:
        raise UsageError(f"part: expected (rank, processes) with 0 <= rank < processes, got {part}")
    smallest = batch_size if drop_last else images % batch_size or batch_size
    if processes > 1 and smallest < processes:
        raise UsageError(
            f"batch_size {batch_size} over {images} images makes a batch of {smallest}, too "
            f"few for {processes} processes to share; choose another batch size"
        )
    return rank, processes


def _place(dataset: Dataset, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The images and labels on `device`, or pinned on the CPU when the device lacks memory; a
    memory-mapped data set stays in its file."""
    if dataset.mapped:
        return dataset.images, dataset.labels
    try:
        moved = dataset.to(device)
    except torch.cuda.OutOfMemoryError:
        # Too big for the accelerator: keep it in host memory (pinned, for faster copies) and
        # copy each batch over.
        moved = dataset.to("cpu")
        labels = None if moved.labels is None else moved.labels.pin_memory()
        return moved.images.pin_memory(), labels
    return moved.images, moved.labels
