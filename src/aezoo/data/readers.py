"""Readers of user files: .npz, .npy, .csv/.parquet tables and image folders → raw arrays plus a
record of what was read (resolved path, sha256 of the content, where the labels came from)."""

from __future__ import annotations

import csv
import hashlib
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aezoo.errors import UsageError

MAX_BYTES = 8 * 2**30  # largest decompressed .npz, image folder or in-memory split we build
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
FILE_SUFFIXES = (".npz", ".npy", *TABLE_SUFFIXES)
# Accepted .npz key sets: ours and Keras' (keras.datasets.*.load_data() saved with np.savez).
NPZ_KEYS = {
    "x": ("x", "y", "x_test", "y_test"),
    "x_train": ("x_train", "y_train", "x_test", "y_test"),
}


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


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _record(path: Path, reader: str, sha256: str) -> dict:
    return {"source": str(path.resolve()), "reader": reader, "sha256": sha256}


def _open_error(path: Path, err: Exception, what: str) -> UsageError:
    if isinstance(err, FileNotFoundError):
        return UsageError(f"{path}: no such file")
    return UsageError(f"{path}: not a readable {what} ({err})")


# .npz and .npy


def read_npz(path: Path, max_bytes: int) -> Raw:
    """x/y/x_test/y_test or x_train/y_train/x_test/y_test; the test part is optional."""
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = _npz_sizes(path, archive)
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise _open_error(path, err, ".npz of numeric arrays") from None
    keys = tuple(sizes)
    train_key = _npz_train_key(path, keys)
    names = dict(zip(("x", "y", "x_test", "y_test"), NPZ_KEYS[train_key], strict=True))
    total = sum(sizes.values())
    if total > max_bytes:
        raise UsageError(
            f"{path}: its arrays would take {total / 2**30:.1f} GiB once decompressed, over the "
            f"limit of {max_bytes / 2**30:.1f} GiB; save the images as a .npy (read memory-mapped) "
            "or raise max_bytes"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            # An object array with allow_pickle=False raises ValueError: nothing is unpickled.
            arrays = {role: npz[key] for role, key in names.items() if key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise _open_error(path, err, ".npz of numeric arrays") from None
    if "y_test" in arrays and "x_test" not in arrays:
        raise UsageError(f"{path}: holds y_test but no x_test")
    labels = names["y"] if "y" in arrays else None
    record = _record(path, "npz", file_sha256(path))
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
    return Raw(array, None, path.stem, _record(path, "npy", file_sha256(path)))


# tables


def read_table(path: Path, label_column: str | int | None) -> Raw:
    """Numeric columns of a .csv/.tsv or .parquet table as vectors [N, D]; `label_column` (a name,
    or a 0-based index for a table without a header) holds the labels."""
    if path.suffix.lower() == ".parquet":
        names, columns = _parquet_columns(path)
    else:
        names, columns = _csv_columns(path)
    label_index = None
    if label_column is not None:
        wanted = str(label_column)
        if wanted in names:
            label_index = names.index(wanted)
        else:
            raise UsageError(
                f"{path}: no column {label_column!r} (label_column); columns: {', '.join(names)}"
            )
    labels, classes = (None, ())
    if label_index is not None:
        labels, classes = _labels_from_column(path, names[label_index], columns[label_index])
    features = [i for i in range(len(names)) if i != label_index]
    if not features:
        raise UsageError(f"{path}: no feature columns besides the label column")
    x = np.stack([_numeric(path, names[i], columns[i]) for i in features], axis=1)
    record = _record(path, path.suffix.lower().lstrip("."), file_sha256(path))
    record["labels"] = None if label_index is None else f"column {names[label_index]}"
    raw = Raw(x, labels, path.stem, record, layout="vectors", classes=classes)
    raw.extra["columns"] = [names[i] for i in features]
    return raw


def _csv_columns(path: Path) -> tuple[list[str], list[list[str]]]:
    """(column names, columns of text cells); a first row with any non-number is the header,
    else the columns are named by their 0-based index."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f, delimiter=_delimiter(path)) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise _open_error(path, err, "text table") from None
    if not rows:
        raise UsageError(f"{path}: an empty table")
    # A header has a text cell where the next row has a number (a text label column is not one).
    following = rows[1] if len(rows) > 1 else [""] * len(rows[0])
    header = any(
        not _is_number(a) and (len(rows) == 1 or _is_number(b))
        for a, b in zip(rows[0], following, strict=False)
    )
    names = [c.strip() for c in rows[0]] if header else [str(i) for i in range(len(rows[0]))]
    body = rows[1:] if header else rows
    if not body:
        raise UsageError(f"{path}: a header and no rows")
    for number, row in enumerate(body, start=2 if header else 1):
        if len(row) != len(names):
            raise UsageError(
                f"{path}: line {number} has {len(row)} cells, the first row {len(names)}"
            )
    return names, [list(col) for col in zip(*body, strict=True)]


def _delimiter(path: Path) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    with open(path, newline="", encoding="utf-8-sig") as f:
        first = f.readline()
    # A semicolon table (decimal commas in some locales) says so on its first line.
    return ";" if first.count(";") > first.count(",") else ","


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numeric(path: Path, name: str, cells: list) -> np.ndarray:
    """A column as float64; a text cell or a missing/non-finite value is an error naming it."""
    if isinstance(cells, np.ndarray):
        values = cells
    else:
        try:
            values = np.array([float(c) for c in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise UsageError(
                f"{path}: column {name!r} is not numeric (a cell holds {bad!r}); drop it, or "
                f"name it as the labels (label_column={name!r}, --label-column {name})"
            ) from None
    if not np.isfinite(values).all():
        raise UsageError(
            f"{path}: column {name!r} has missing or non-finite values; fill or drop them first"
        )
    return values


def _labels_from_column(path: Path, name: str, cells: list) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer labels as they are; text labels numbered in sorted order (names kept as classes)."""
    text = [str(c).strip() for c in cells]
    if any(c in ("", "nan", "NaN", "None") for c in text):
        raise UsageError(f"{path}: label column {name!r} has missing values")
    try:
        numbers = np.array([float(c) for c in text])
    except ValueError:  # text labels
        classes = tuple(sorted(set(text)))
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[c] for c in text], dtype=np.int64), classes
    # 3 or 3.0 (as pandas writes an integer column with gaps) are labels; 0.5 is not.
    if not (np.isfinite(numbers).all() and (numbers == np.round(numbers)).all()):
        raise UsageError(f"{path}: label column {name!r} holds numbers that are not integers")
    return numbers.astype(np.int64), ()


def _parquet_columns(path: Path) -> tuple[list[str], list]:
    try:
        import pyarrow.parquet as pq  # optional: only parquet tables need it
    except ImportError:
        raise UsageError(
            f"{path}: reading .parquet needs pyarrow: pip install pyarrow (or aezoo[tables])"
        ) from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # pyarrow's errors derive from these
        raise _open_error(path, err, "parquet table") from None
    names, columns = [], []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if column.null_count:
            raise UsageError(f"{path}: column {name!r} has missing values; fill or drop them")
        values = column.to_numpy()
        if values.dtype.kind not in "biuf":
            values = [str(v) for v in values]  # text: an error unless it is the label column
        names.append(name)
        columns.append(values)
    return names, columns


# image folders


def read_folder(root: Path, max_bytes: int) -> Raw:
    """root/<class>/*.png|jpg|... (labels from the sorted folder names) or root/*.png (no labels),
    read with Pillow. All images share one size and one of grey (L) or colour (RGB)."""
    files, y, classes = folder_files(root)
    x, alpha = _read_images(root, files, max_bytes)
    record = _record(root, "folder", folder_sha256(root, files))
    record["labels"] = "folder names" if classes else None
    raw = Raw(x, y, root.name, record, layout="nhwc" if x.ndim == 4 else "nhw", classes=classes)
    raw.extra["alpha_dropped"] = alpha
    return raw


def folder_files(root: Path) -> tuple[list[Path], np.ndarray | None, tuple[str, ...]]:
    """(image files in reading order, their labels or None, the class names) of a folder."""
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    flat = _images_in(root)
    if subfolders and flat:
        raise UsageError(
            f"{root}: holds both images ({flat[0].name}) and folders ({subfolders[0].name}); "
            "put every image in a class folder, or all of them in one flat folder"
        )
    classes: tuple[str, ...] = ()
    if subfolders:
        classes = tuple(p.name for p in subfolders)
        files, labels = [], []
        for label, folder in enumerate(subfolders):
            found = _images_in(folder)
            if not found:
                raise UsageError(f"{folder}: a class folder with no images ({_SUFFIX_LIST})")
            files += found
            labels += [label] * len(found)
        y = np.array(labels, dtype=np.int64)
    else:
        files, y = flat, None
        if not files:
            raise UsageError(f"{root}: no images ({_SUFFIX_LIST}) and no class folders")
    return files, y, classes


def folder_sha256(root: Path, files: list[Path]) -> str:
    """sha256 over the files' relative names and bytes, in reading order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def source_sha256(path: Path) -> str:
    """The checksum a record holds for a file or an image folder, without parsing it."""
    return folder_sha256(path, folder_files(path)[0]) if path.is_dir() else file_sha256(path)


_SUFFIX_LIST = "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


GREY_MODES = {"1": "L", "L": "L", "LA": "LA"}
COLOUR_MODES = {"RGB": "RGB", "RGBA": "RGBA", "P": None, "PA": "RGBA"}


def _read_images(root: Path, files: list[Path], max_bytes: int) -> tuple[np.ndarray, bool]:
    """uint8 [N, H, W] (grey) or [N, H, W, 3] (colour); an opaque alpha channel is dropped."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # Pillow comes with matplotlib

    first: tuple[Path, tuple[int, int], str] | None = None
    out = np.empty(0, dtype=np.uint8)
    alpha = False
    for i, path in enumerate(files):
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened)  # as a viewer shows it (camera rotation)
                mode, size = image.mode, image.size
                if mode in GREY_MODES:
                    target, group = GREY_MODES[mode], "grey"
                elif mode in COLOUR_MODES:
                    group = "colour"
                    target = COLOUR_MODES[mode] or (
                        "RGBA" if "transparency" in image.info else "RGB"
                    )
                else:
                    raise UsageError(
                        f"{path}: image mode {mode} is neither grey (L) nor colour (RGB); "
                        "convert it to 8-bit L or RGB"
                    )
                pixels = np.asarray(image.convert(target))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
            raise UsageError(f"{path}: not a readable image ({err})") from None
        if pixels.ndim == 3 and pixels.shape[2] in (2, 4):  # LA or RGBA: keep only if opaque
            if not (pixels[..., -1] == 255).all():
                raise UsageError(
                    f"{path}: has transparent pixels; aezoo reads grey or RGB images: composite "
                    "them on a background (Pillow: Image.alpha_composite) or save without alpha"
                )
            pixels, alpha = pixels[..., 0] if group == "grey" else pixels[..., :3], True
        if first is None:
            first = (path, size, group)
            total = len(files) * pixels.nbytes
            if total > max_bytes:
                raise UsageError(
                    f"{root}: {len(files)} images of {size[0]}×{size[1]} would take "
                    f"{total / 2**30:.1f} GiB, over the limit of {max_bytes / 2**30:.1f} GiB"
                )
            out = np.empty((len(files), *pixels.shape), dtype=np.uint8)
        elif (size, group) != first[1:]:
            a, b = first[0].relative_to(root), path.relative_to(root)
            raise UsageError(
                f"{root}: images differ: {a} is {first[1][0]}×{first[1][1]} {first[2]}, {b} is "
                f"{size[0]}×{size[1]} {group}; resize/convert them to one size and one mode "
                "(e.g. Pillow: image.convert('RGB').resize((W, H)))"
            )
        out[i] = pixels
    return out, alpha
