"""Tables: numeric columns of .csv/.tsv (stdlib csv, no pandas) and .parquet (optional pyarrow)
read as vectors [N, D]; a label column may hold integers or text."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aezoo.data.raw import Raw, file_sha256, open_error, record_of
from aezoo.errors import UsageError


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
    record = record_of(path, path.suffix.lower().lstrip("."), file_sha256(path))
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
        raise open_error(path, err, "text table") from None
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
        raise open_error(path, err, "parquet table") from None
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
