"""The one in-memory form of any data: uint8 [N, C, H, W] (vectors as [N, 1, 1, D]) and labels."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from aezoo.errors import UsageError

ArrayLike = np.ndarray | torch.Tensor
DataKind = Literal["images", "vectors"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images as uint8 [N, C, H, W] (0..255), labels as int64 [N] or None, and a name.

    `kind="vectors"`: rows of D features stored as [N, 1, 1, D], so dense models train on them
    unchanged; it is stated by the loader, never inferred from a 1×D shape. `classes`: the label
    names where the source has them (folder names, a text label column). `mapped`: the images are
    a memory map of a .npy file, read only where a batch needs them."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str = "array"
    mapped: bool = False
    kind: DataKind = "images"
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise UsageError(
                f"{self.name}: images must be uint8 [N, C, H, W], got "
                f"{self.images.dtype} with shape {tuple(self.images.shape)}"
            )
        if self.kind not in ("images", "vectors"):
            raise UsageError(f"{self.name}: kind must be 'images' or 'vectors', got {self.kind!r}")
        if self.kind == "vectors" and self.images.shape[1:3] != (1, 1):
            raise UsageError(
                f"{self.name}: vectors are stored as [N, 1, 1, D], got {tuple(self.images.shape)}"
            )
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise UsageError(
                f"{self.name}: expected {len(self.images)} labels, got shape "
                f"{tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image; (1, 1, D) for vectors."""
        c, h, w = self.images.shape[1:]
        return c, h, w

    @property
    def num_classes(self) -> int:
        """1 + the largest label, or 0 when there are no labels."""
        if self.labels is None or len(self.labels) == 0:
            return 0
        return int(self.labels.max()) + 1

    def select(self, index: ArrayLike | list[int]) -> Dataset:
        """The images picked by a boolean mask or by integer indices, in that order."""
        index = torch.as_tensor(index, device=self.images.device)
        if index.numel() == 0:
            index = index.long()  # torch.as_tensor([]) is float
        if index.dtype == torch.bool and index.shape != (len(self),):
            raise UsageError(
                f"{self.name}: a mask must have {len(self)} entries, got shape {tuple(index.shape)}"
            )
        labels = None if self.labels is None else self.labels[index]
        return dataclasses.replace(self, images=self.images[index], labels=labels, mapped=False)

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """A seeded random subset of `n` images, stratified by label, kept in dataset order."""
        if n < 1:
            raise UsageError(f"subset: expected a positive number of images, got {n}")
        if n >= len(self):
            return self
        labels = None if self.labels is None else self.labels.cpu()
        keep = stratified_pick(len(self), n, labels, seed)
        return self.select(keep.to(self.images.device))

    def to(self, device: str | torch.device) -> Dataset:
        """The same data set on `device`."""
        labels = None if self.labels is None else self.labels.to(device)
        images = self.images.to(device)
        mapped = self.mapped and images is self.images
        return dataclasses.replace(self, images=images, labels=labels, mapped=mapped)


def stratified_pick(size: int, n: int, labels: torch.Tensor | None, seed: int) -> torch.Tensor:
    """`n` of `range(size)` drawn with a generator seeded `seed`, in proportion to each label's
    share when there are labels (CPU int64 [size]); returned sorted."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(size, generator=generator)
    if labels is None:
        return order[:n].sort().values
    # Group the shuffled indices by class (stable sort keeps them shuffled within a class),
    # then keep the first quota[c] of each class.
    order = order[torch.sort(labels[order], stable=True).indices]
    counts = torch.bincount(labels)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(size) - first[labels[order]]
    return order[rank < _quotas(counts, n)[labels[order]]].sort().values


def _quotas(counts: torch.Tensor, n: int) -> torch.Tensor:
    """Largest-remainder allocation of `n` over classes of sizes `counts` (sums to exactly n)."""
    total = int(counts.sum())
    quota, remainder = torch.div(counts * n, total, rounding_mode="floor"), counts * n % total
    short = n - int(quota.sum())
    quota[torch.sort(-remainder, stable=True).indices[:short]] += 1
    return quota


def binarize_once(dataset: Dataset, seed: int) -> Dataset:
    """Each pixel set to 255 with probability pixel/255, else 0, from a generator seeded `seed`."""
    generator = torch.Generator(device=dataset.images.device).manual_seed(seed)
    probs = dataset.images.float().div_(255)
    pixels = torch.bernoulli(probs, generator=generator).to(torch.uint8).mul_(255)
    return dataclasses.replace(dataset, images=pixels, mapped=False)


def to_labels(y: np.ndarray, n: int, name: str) -> np.ndarray:
    """Check user labels: n non-negative integers; returned as int64."""
    if y.shape not in ((n,), (n, 1)):
        raise UsageError(f"{name}: expected {n} labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"{name}: labels must be integers, got {y.dtype}")
    if y.size and y.min() < 0:
        raise UsageError(f"{name}: labels must be non-negative, got {int(y.min())}")
    return np.ascontiguousarray(y.reshape(n), dtype=np.int64)


def split_rows(
    n: int, labels: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows), both sorted: a seeded `fraction` of `n` rows held out, in
    proportion to each label's share when there are labels."""
    if n < 2:
        raise UsageError(f"{n} row(s) are too few to split into training and test parts")
    size = min(max(round(fraction * n), 1), n - 1)
    label_tensor = None if labels is None else torch.from_numpy(np.asarray(labels, np.int64))
    test = stratified_pick(n, size, label_tensor, seed).numpy()
    keep = np.ones(n, dtype=bool)
    keep[test] = False
    return np.flatnonzero(keep), test
