"""Readers of user files by extension (case-insensitive): .npz and .npy here, tables and image
folders in their modules; each returns a Raw (arrays plus a record of what was read)."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from aezoo.data.folders import folder_files, folder_sha256, read_folder
from aezoo.data.raw import (
    FILE_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_BYTES,
    TABLE_SUFFIXES,
    Raw,
    file_sha256,
    open_error,
    record_of,
)
from aezoo.data.tables import read_table
from aezoo.errors import UsageError

# Accepted .npz key sets: ours and Keras' (keras.datasets.*.load_data() saved with np.savez).
NPZ_KEYS = {
    "x": ("x", "y", "x_test", "y_test"),
    "x_train": ("x_train", "y_train", "x_test", "y_test"),
}


def read_path(path: Path, label_column: str | int | None, max_bytes: int) -> Raw:
    """Read a file or folder by its (case-insensitive) extension."""
    suffix = path.suffix.lower()
    if label_column is not None and suffix not in TABLE_SUFFIXES:
        raise UsageError(f"label_column: only tables (.csv, .parquet) have columns, not {path}")
    if path.is_dir():
        raw = read_folder(path, max_bytes)
    elif suffix in IMAGE_SUFFIXES:
        raise UsageError(
            f"{path}: a single image, not a data set; put the images in a folder "
            "(root/<class>/*.png for labels, or all in one folder) and pass the folder"
        )
    elif suffix == ".npz":
        raw = read_npz(path, max_bytes)
    elif suffix == ".npy":
        raw = read_npy(path)
    elif suffix in TABLE_SUFFIXES:
        raw = read_table(path, label_column)
    else:
        raise UsageError(
            f"{path}: unknown kind of file; expected {', '.join(FILE_SUFFIXES)} or a folder of "
            "images"
        )
    return raw


def source_sha256(path: Path) -> str:
    """The checksum a record holds for a file or an image folder, without parsing it."""
    return folder_sha256(path, folder_files(path)[0]) if path.is_dir() else file_sha256(path)


def read_npz(path: Path, max_bytes: int) -> Raw:
    """x/y/x_test/y_test or x_train/y_train/x_test/y_test; the test part is optional."""
    keys = tuple(check_npz_size(path, max_bytes))
    train_key = _npz_train_key(path, keys)
    names = dict(zip(("x", "y", "x_test", "y_test"), NPZ_KEYS[train_key], strict=True))
    try:
        with np.load(path, allow_pickle=False) as npz:
            # An object array with allow_pickle=False raises ValueError: nothing is unpickled.
            arrays = {role: npz[key] for role, key in names.items() if key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise open_error(path, err, ".npz of numeric arrays") from None
    if "y_test" in arrays and "x_test" not in arrays:
        raise UsageError(f"{path}: holds y_test but no x_test")
    labels = names["y"] if "y" in arrays else None
    record = record_of(path, "npz", file_sha256(path))
    record["labels"] = labels
    return Raw(
        arrays["x"], arrays.get("y"), path.stem, record, arrays.get("x_test"), arrays.get("y_test")
    )


def _npz_train_key(path: Path, keys: tuple[str, ...]) -> str:
    accepted = "x, y, x_test, y_test (or Keras' x_train, y_train, x_test, y_test)"
    found = ", ".join(keys) or "nothing"
    present = [k for k in NPZ_KEYS if k in keys]
    if len(present) != 1:
        why = "both x and x_train" if present else "no array 'x' of images"
        raise UsageError(f"{path}: {why}; it holds {found}; accepted names: {accepted}")
    unknown = [k for k in keys if k not in NPZ_KEYS[present[0]]]
    if unknown:
        raise UsageError(
            f"{path}: unknown array names {', '.join(unknown)}; it holds {found}; "
            f"accepted names: {accepted}"
        )
    return present[0]


def check_npz_size(path: Path, max_bytes: int = MAX_BYTES) -> dict[str, int]:
    """{key: bytes once decompressed} of an .npz, refused before anything is allocated when the
    total is over `max_bytes` (a decompression bomb, or a header announcing a huge array)."""
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = _npz_sizes(path, archive)
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise open_error(path, err, ".npz of numeric arrays") from None
    total = sum(sizes.values())
    if total > max_bytes:
        raise UsageError(
            f"{path}: its arrays would take {total / 2**30:.1f} GiB once decompressed, over the "
            f"limit of {max_bytes / 2**30:.1f} GiB; save the images as a .npy (read memory-mapped) "
            "or raise max_bytes"
        )
    return sizes


def _npz_sizes(path: Path, archive: zipfile.ZipFile) -> dict[str, int]:
    """{key: bytes once decompressed} from the zip headers and each member's .npy header (whose
    shape numpy allocates before reading), without decompressing the data."""
    sizes = {}
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        try:
            with archive.open(info) as member:
                fmt = np.lib.format
                version = fmt.read_magic(member)
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = read(member)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise UsageError(
                f"{path}: member {info.filename} is not a .npy array ({err})"
            ) from None
        sizes[key] = max(info.file_size, math.prod(shape) * dtype.itemsize)
    return sizes


def read_npy(path: Path) -> Raw:
    """A .npy file, memory-mapped: uint8 images are never read whole (each batch reads its rows)."""
    try:
        # Copy-on-write map: pages are read on demand; a stray write would stay private.
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # object arrays are a ValueError here
        if isinstance(err, FileNotFoundError):
            raise UsageError(f"{path}: no such file") from None
        raise UsageError(f"{path}: not a numeric .npy array ({err})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        array.close()
        raise UsageError(f"{path}: an .npz archive, not a .npy array; rename it to .npz")
    return Raw(array, None, path.stem, record_of(path, "npy", file_sha256(path)))


ARRAY_GONE = (
    "the run was trained on an in-memory array, which cannot be read again; eval and encode take "
    "data with --dataset PATH; in Python, resume, explore and train-prior take the same arrays "
    "again (dataset=X, labels=y, test=...); from the command line, train from a file"
)


PASS_DATASET = "pass --dataset PATH"  # what to do, for a command that takes other data
RESTORE_DATA = "put back the file the run was trained on, or train a new run on this data"


def check_recorded(info: dict[str, Any], remedy: str = PASS_DATASET) -> None:
    """Refuse data that moved or changed since `info` was recorded: one line ending in `remedy`,
    what the refusing command lets the user do about it (PASS_DATASET, RESTORE_DATA)."""
    source, reader = info.get("source"), info.get("reader")
    if reader in ("named", "array", "dataset") or source is None:
        if source == "array":
            raise UsageError(ARRAY_GONE)
        return
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{path}: the run's data is no longer there; {remedy}")
    if source_sha256(path) != info["sha256"]:
        raise UsageError(f"{path}: changed since the run read it (sha256 differs); {remedy}")
