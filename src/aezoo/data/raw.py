"""What every reader returns: raw arrays, what is known of their layout and labels, and a record
of what was read (resolved path, sha256 of the content, where the labels came from)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aezoo.errors import UsageError

MAX_BYTES = 8 * 2**30  # largest decompressed .npz, image folder or in-memory split we build
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
FILE_SUFFIXES = (".npz", ".npy", *TABLE_SUFFIXES)


@dataclass
class Raw:
    """What a reader found: training arrays, an optional test part, and a provenance record."""

    x: np.ndarray
    y: np.ndarray | None
    name: str
    record: dict
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    layout: str | None = None  # known to the reader (tables: vectors; folders: nhw or nhwc)
    test_layout: str | None = None  # the same for the test part
    classes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def record_of(path: Path, reader: str, sha256: str) -> dict:
    """The start of a record: the resolved path, the reader and the checksum."""
    return {"source": str(path.resolve()), "reader": reader, "sha256": sha256}


def open_error(path: Path, err: Exception, what: str) -> UsageError:
    """One line for a file that is missing or cannot be read as `what`."""
    if isinstance(err, FileNotFoundError):
        return UsageError(f"{path}: no such file")
    return UsageError(f"{path}: not a readable {what} ({err})")


def as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A numpy view of an array or a tensor (bfloat16 widened: numpy has none)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype == torch.bfloat16:
            array = array.float()  # numpy has no bfloat16
        return array.numpy()
    return np.asarray(array)


def array_sha256(*arrays: np.ndarray | None) -> str:
    """sha256 of arrays' dtypes, shapes and bytes: the checksum of in-memory data."""
    digest = hashlib.sha256()
    for a in arrays:
        if a is not None:
            digest.update(f"{a.dtype.str}{a.shape}".encode())
            digest.update(np.ascontiguousarray(a).data)
    return digest.hexdigest()
