"""Data sets as uint8 image tensors [N, C, H, W] with optional int64 labels, from any source.

`load_dataset` takes a registered name (mnist, fashion-mnist, kmnist), a .npz/.npy path, or an
array; whatever the source, the result is the same small `Dataset`.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from aezoo.data.sources import SOURCES, load_arrays
from aezoo.errors import UsageError

__all__ = ["DATASETS", "Dataset", "binarize_once", "load_dataset"]

DATASETS = tuple(SOURCES)
ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images as uint8 [N, C, H, W] (0..255), labels as int64 [N] or None, and a name.

    `mapped`: the images are a memory map of a .npy file, read only where a batch needs them."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str = "array"
    mapped: bool = False

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise UsageError(
                f"{self.name}: images must be uint8 [N, C, H, W], got "
                f"{self.images.dtype} with shape {tuple(self.images.shape)}"
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
        """(C, H, W) of one image."""
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
        return Dataset(self.images[index], labels, self.name)

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """A seeded random subset of `n` images, stratified by label, kept in dataset order."""
        if n < 1:
            raise UsageError(f"subset: expected a positive number of images, got {n}")
        if n >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=generator)
        if self.labels is None:
            return self.select(order[:n].sort().values)
        labels = self.labels.cpu()
        # Group the shuffled indices by class (stable sort keeps them shuffled within a class),
        # then keep the first quota[c] of each class.
        order = order[torch.sort(labels[order], stable=True).indices]
        counts = torch.bincount(labels)
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(self)) - first[labels[order]]
        keep = order[rank < _quotas(counts, n)[labels[order]]]
        return self.select(keep.sort().values.to(self.images.device))

    def to(self, device: str | torch.device) -> Dataset:
        """The same data set on `device`."""
        labels = None if self.labels is None else self.labels.to(device)
        images = self.images.to(device)
        return Dataset(images, labels, self.name, mapped=self.mapped and images is self.images)


def _quotas(counts: torch.Tensor, n: int) -> torch.Tensor:
    """Largest-remainder allocation of `n` over classes of sizes `counts` (sums to exactly n)."""
    total = int(counts.sum())
    quota, remainder = torch.div(counts * n, total, rounding_mode="floor"), counts * n % total
    short = n - int(quota.sum())
    quota[torch.sort(-remainder, stable=True).indices[:short]] += 1
    return quota


def load_dataset(
    source: str | os.PathLike | ArrayLike,
    split: Literal["train", "test"] = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    labels: ArrayLike | None = None,
) -> Dataset:
    """Load a registered data set by name, a .npz (x, y, x_test, y_test) or .npy file, or an array.

    Arrays may be [N, H, W], [N, C, H, W] or [N, H, W, C] with C in (1, 3); uint8 as is, floats in
    [0, 1] (quantised to uint8). `split` picks train or test files; an in-memory array is one split.
    """
    if split not in ("train", "test"):
        raise UsageError(f"split: expected 'train' or 'test', got {split!r}")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return _from_arrays(source, labels, "array")
    if labels is not None:
        raise UsageError("labels= goes with an array source; files bring their own labels")
    path = Path(source)
    if path.suffix == ".npz":
        return _from_npz(path, split)
    if path.suffix == ".npy":
        return _from_npy(path)
    images, label_array = load_arrays(str(source), split, data_dir)  # refuses unknown names
    return Dataset(
        torch.from_numpy(images[:, None]), torch.from_numpy(label_array).long(), str(source)
    )


def _from_npy(path: Path) -> Dataset:
    """A .npy file, memory-mapped: uint8 [N, H, W] or [N, C, H, W] images are never read whole
    (each batch reads its rows), so they may be larger than memory; other dtypes and layouts are
    converted in memory."""
    array = _load_npy(path)
    images = _to_uint8_nchw(array, path.stem)
    mapped = bool(np.may_share_memory(images, array))
    return Dataset(torch.from_numpy(images), None, path.stem, mapped=mapped)


def _load_npy(path: Path) -> np.ndarray:
    try:
        # Copy-on-write map: pages are read on demand; a stray write would stay private.
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as err:  # object arrays are a ValueError here
        raise UsageError(f"{path}: not a numeric .npy array ({err})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        array.close()
        raise UsageError(f"{path}: an .npz archive, not a .npy array; rename it to .npz")
    return array


def _from_npz(path: Path, split: str) -> Dataset:
    x_key, y_key = ("x", "y") if split == "train" else ("x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            # Reading an object array with allow_pickle=False raises ValueError: nothing unpickled.
            arrays = {key: npz[key] for key in (x_key, y_key) if key in npz.files}
            names = ", ".join(npz.files) or "nothing"
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UsageError(f"{path}: not a readable .npz of numeric arrays ({err})") from None
    if x_key not in arrays:
        if split == "test":
            raise UsageError(f"{path} has no test arrays (x_test, y_test); it holds {names}")
        raise UsageError(f"{path}: no array 'x' of images; it holds {names}")
    return _from_arrays(arrays[x_key], arrays.get(y_key), path.stem)


def _from_arrays(images: ArrayLike, labels: ArrayLike | None, name: str) -> Dataset:
    image_tensor = torch.from_numpy(_to_uint8_nchw(_numpy(images), name))
    label_tensor = None
    if labels is not None:
        label_tensor = torch.from_numpy(_to_labels(_numpy(labels), len(image_tensor), name))
    return Dataset(image_tensor, label_tensor, name)


def _numpy(array: ArrayLike) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype == torch.bfloat16:
            array = array.float()  # numpy has no bfloat16
        return array.numpy()
    return np.asarray(array)


def _to_uint8_nchw(x: np.ndarray, name: str) -> np.ndarray:
    """Check and convert user images to uint8 [N, C, H, W]."""
    if x.size == 0:
        raise UsageError(f"{name}: no images (shape {x.shape})")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # channels last → channels first
    elif x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UsageError(
            f"{name}: expected images [N, H, W], [N, C, H, W] or [N, H, W, C] with "
            f"C = 1 or 3, got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        return np.ascontiguousarray(x, dtype=np.uint8) * np.uint8(255)
    if np.issubdtype(x.dtype, np.integer):
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > 255:
            raise UsageError(f"{name}: integer images must lie in 0..255, got {low}..{high}")
        return np.ascontiguousarray(x, dtype=np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise UsageError(f"{name}: images contain NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise UsageError(f"{name}: float images must lie in [0, 1], got {low:g}..{high:g}")
        return np.ascontiguousarray(np.rint(x * 255), dtype=np.uint8)
    raise UsageError(f"{name}: images must be uint8, integer or float, got {x.dtype}")


def _to_labels(y: np.ndarray, n: int, name: str) -> np.ndarray:
    """Check user labels: n non-negative integers; returned as int64."""
    if y.shape not in ((n,), (n, 1)):
        raise UsageError(f"{name}: expected {n} labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"{name}: labels must be integers, got {y.dtype}")
    if y.size and y.min() < 0:
        raise UsageError(f"{name}: labels must be non-negative, got {int(y.min())}")
    return np.ascontiguousarray(y.reshape(n), dtype=np.int64)


def binarize_once(dataset: Dataset, seed: int) -> Dataset:
    """Each pixel set to 255 with probability pixel/255, else 0, from a generator seeded `seed`."""
    generator = torch.Generator(device=dataset.images.device).manual_seed(seed)
    probs = dataset.images.float().div_(255)
    pixels = torch.bernoulli(probs, generator=generator).to(torch.uint8).mul_(255)
    return Dataset(pixels, dataset.labels, dataset.name)
