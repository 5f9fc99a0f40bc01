"""One way in: `load_splits` turns a name, a path, an array, a tensor or a Dataset into decided
(train, test) Datasets and a JSON-able record of what was read; `load_dataset` is one part of it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from aezoo.data.dataset import ArrayLike, Dataset, split_rows, to_labels
from aezoo.data.decide import (
    FITTED,
    Scale,
    check_values,
    decide_layout,
    decide_scale,
    drop_alpha,
    parse_scale,
    to_nchw,
)
from aezoo.data.raw import FILE_SUFFIXES, MAX_BYTES, Raw, array_sha256, as_numpy
from aezoo.data.readers import read_path
from aezoo.data.sources import SOURCES, load_arrays
from aezoo.errors import UsageError

Source = str | os.PathLike | ArrayLike | Dataset
TestSource = str | os.PathLike | ArrayLike | Dataset | tuple[ArrayLike, ArrayLike | None]


def load_splits(
    source: Source,
    *,
    labels: ArrayLike | None = None,
    test: TestSource | None = None,
    layout: str = "auto",
    scale: str = "auto",
    label_column: str | int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    max_bytes: int = MAX_BYTES,
) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """(train, test, info) from any source. The test part is the source's own (named sets'
    test files, an .npz's x_test), else `test`, else a seeded split of `test_fraction` of the
    rows (stratified by label): never the training data. Layout and scale are decided on the
    training part (see aezoo.data.decide) and applied unchanged to the test part."""
    options = {
        "layout": layout,
        "scale": parse_scale(scale),
        "label_column": label_column,
        "test_fraction": test_fraction,
        "seed": seed,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "test": None if test is None else _describe(test),
    }
    if not 0 < test_fraction < 1:
        raise UsageError(f"test_fraction: must lie between 0 and 1, got {test_fraction!r}")
    if isinstance(source, Dataset):
        if labels is not None or label_column is not None or scale != "auto":
            raise UsageError(
                "labels=, label_column= and scale= go with arrays and files; a Dataset is "
                "already labelled and scaled"
            )
        raw_test = (
            test
            if test is None or isinstance(test, Dataset)
            else _read(test, None, None, max_bytes, "test")
        )
        return _from_dataset(source, raw_test, options)
    if _is_named(source):
        if test is not None or labels is not None or (layout, scale) != ("auto", "auto"):
            raise UsageError(
                f"{source} comes with its own labels, test files, layout and scale; test=, "
                "labels=, layout= and scale= are for your own data"
            )
        return _named(str(source), data_dir, options)
    raw = _read(source, labels, label_column, max_bytes, "data")
    if test is not None:
        if raw.x_test is not None:
            raise UsageError(
                f"{raw.record['source']} has its own test part (x_test); drop test= or remove it"
            )
        raw_test = _read(test, None, None, max_bytes, "test")
        raw.x_test, raw.y_test, raw.record["test_source"] = raw_test.x, raw_test.y, raw_test.record
        raw.test_layout = raw_test.layout
        if raw_test.classes != raw.classes and raw.y_test is not None:
            raw.y_test = _same_classes(raw.classes, raw_test.classes, raw.y_test)
    return _decide(raw, options, max_bytes)


def load_dataset(
    source: Source,
    split: Literal["train", "test"] = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    labels: ArrayLike | None = None,
    layout: str = "auto",
    scale: str = "auto",
    label_column: str | int | None = None,
    max_bytes: int = MAX_BYTES,
    fitted_scale: dict | None = None,
) -> Dataset:
    """One part of a source as it is stored: a named set's train or test files, an .npz's x or
    x_test, or the whole of an array, .npy, table or folder ('train'; these have no 'test' part:
    `load_splits` makes a seeded split). Layout and scale as in load_splits; `fitted_scale`, a
    run's recorded scale (info["scale"]), applies that run's max/minmax parameters instead of
    fitting new ones on this data."""
    if split not in ("train", "test"):
        raise UsageError(f"split: expected 'train' or 'test', got {split!r}")
    if isinstance(source, Dataset):
        if split == "test":
            raise UsageError(f"{source.name}: a Dataset has no test part; use load_splits")
        return source
    if _is_named(source):
        images, label_array = load_arrays(str(source), split, data_dir)
        return Dataset(
            torch.from_numpy(images[:, None]), torch.from_numpy(label_array).long(), str(source)
        )
    raw = _read(source, labels, label_column, max_bytes, "data")
    where = raw.record["source"]
    parse_scale(scale)
    if split == "train":
        check_values(raw.x, raw.name)
        fitted = decide_scale(raw.x, scale, raw.name)
        if fitted_scale is not None and fitted_scale.get("kind") in FITTED:
            fitted = Scale.from_record(fitted_scale)
        return _prepare(raw, raw.x, raw.y, fitted, layout, raw.name)[0]
    if raw.x_test is None:
        what = "test arrays (x_test, y_test)" if raw.record["reader"] == "npz" else "test part"
        raise UsageError(
            f"{where if where != 'array' else 'an array'} has no {what}; load_splits makes a "
            "seeded split (test_fraction), or pass a test set"
        )
    check_values(raw.x, raw.name)
    fitted = decide_scale(raw.x, scale, raw.name)
    return _prepare(raw, raw.x_test, raw.y_test, fitted, layout, raw.name, " test part")[0]


# sources


def _is_named(source: object) -> bool:
    """A registered name wins over a file or folder of that name (say ./mnist for those)."""
    return isinstance(source, str) and source in SOURCES


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(Path(source).resolve())
    return "array"


def _read(
    source: TestSource,
    labels: ArrayLike | None,
    label_column: str | int | None,
    max_bytes: int,
    role: str,
) -> Raw:
    """Raw arrays of a path, an array/tensor, an (X, y) tuple or a Dataset."""
    if isinstance(source, tuple):
        if len(source) != 2:
            raise UsageError(f"{role}: expected an (X, y) pair, got a tuple of {len(source)}")
        source, labels = source
    if isinstance(source, Dataset):
        raise UsageError(f"{role}: a Dataset goes with a Dataset source; pass arrays here")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        if label_column is not None:
            raise UsageError("label_column: only tables (.csv, .parquet) have columns")
        x = as_numpy(source)
        y = None if labels is None else as_numpy(labels)
        record = {"source": "array", "reader": "array", "sha256": array_sha256(x, y)}
        record["labels"] = None if y is None else "array"
        return Raw(x, y, "array", record)
    if not isinstance(source, (str, os.PathLike)):
        raise UsageError(
            f"{role}: expected a data set name, a path, an array or a tensor, "
            f"got {type(source).__name__}"
        )
    path = Path(source)
    if not path.exists():
        if path.suffix.lower() in FILE_SUFFIXES:
            raise UsageError(f"{path}: no such file")
        raise UsageError(
            f"unknown data set {str(source)!r} (known: {', '.join(SOURCES)}, or a path to a "
            f"{'/'.join(FILE_SUFFIXES)} file or a folder of images)"
        )
    raw = read_path(path, label_column, max_bytes)
    if labels is not None:
        if raw.record["reader"] != "npy":
            raise UsageError(
                f"labels= goes with an array or .npy source; {path} brings its own labels"
            )
        raw.y, raw.record["labels"] = as_numpy(labels), "array"
    return raw


def _same_classes(train: tuple[str, ...], test: tuple[str, ...], y: np.ndarray) -> np.ndarray:
    """The test part's labels numbered as the training part's classes (by name)."""
    if not train or not test:
        raise UsageError(
            "labels: one part has class names and the other numbers; give both parts the same kind"
        )
    missing = sorted(set(test) - set(train))
    if missing:
        raise UsageError(f"test class {missing[0]!r} is not among the training classes")
    return np.array([train.index(name) for name in test], dtype=np.int64)[y]


# decisions


def _decide(raw: Raw, options: dict, max_bytes: int) -> tuple[Dataset, Dataset, dict]:
    """Layout, split and scale of raw arrays, in that order; the test part follows the train."""
    check_values(raw.x, raw.name)
    if raw.x_test is not None:
        check_values(raw.x_test, f"{raw.name} test part")
    x, y, x_test, y_test = raw.x, raw.y, raw.x_test, raw.y_test
    split: dict[str, Any] = {"made": False}
    if x_test is None:
        _layout(raw.layout, x.shape, options["layout"], raw.name)  # refuse before copying
        if y is not None:
            y = to_labels(y, len(x), raw.name)
        if isinstance(x, np.memmap) and x.nbytes > max_bytes:
            raise UsageError(
                f"{raw.name}: {x.nbytes / 2**30:.1f} GiB is too big to split in memory (limit "
                f"{max_bytes / 2**30:.1f} GiB); pass a test set (test=) to keep it memory-mapped"
            )
        train_rows, test_rows = split_rows(len(x), y, options["test_fraction"], options["seed"])
        x, x_test, raw.test_layout = x[train_rows], x[test_rows], raw.layout
        y, y_test = (None, None) if y is None else (y[train_rows], y[test_rows])
        split = {
            "made": True,
            "fraction": options["test_fraction"],
            "seed": options["seed"],
            "stratified": y is not None,
        }
    fitted = decide_scale(x, options["scale"], raw.name)
    train, train_notes = _prepare(raw, x, y, fitted, options["layout"], raw.name)
    test, test_notes = _prepare(
        raw, x_test, y_test, fitted, options["layout"], raw.name, " test part"
    )
    _check_alike(train, test)
    split.update(train=len(train), test=len(test))
    info = {
        **{k: raw.record.get(k) for k in ("source", "reader", "sha256", "test_source", "labels")},
        "kind": train.kind,
        "shape": list(train.image_shape),
        "layout": train_notes["layout"],
        "scale": fitted.record(),
        "test_clipped": test_notes["clipped"],
        "alpha_dropped": train_notes["alpha"] or bool(raw.extra.get("alpha_dropped")),
        "classes": list(train.classes),
        "num_classes": max(train.num_classes, test.num_classes),
        "split": split,
        "options": options,
    }
    if "columns" in raw.extra:
        info["columns"] = raw.extra["columns"]
    return train, test, info


def _check_alike(train: Dataset, test: Dataset) -> None:
    if (test.kind, test.image_shape) != (train.kind, train.image_shape):
        raise UsageError(
            f"{train.name}: the test part is {test.kind} of shape {test.image_shape}, the "
            f"training part {train.kind} of shape {train.image_shape}"
        )


def _layout(known: str | None, shape: tuple[int, ...], layout: str, name: str) -> str:
    """The stated/decided layout of an array, or the one its reader knows (tables, folders)."""
    if known is None:
        return decide_layout(shape, layout, name)
    if layout not in ("auto", known) and not (known == "nhw" and layout == "nchw"):
        raise UsageError(f"layout={layout!r}: {name} has a known layout; layout= is for arrays")
    return known


def _prepare(
    raw: Raw,
    x: np.ndarray,
    y: np.ndarray | None,
    scale: Scale,
    layout: str,
    name: str,
    part: str = "",
) -> tuple[Dataset, dict]:
    """A Dataset of one part: scaled to uint8, laid out as [N, C, H, W], alpha checked. `part`
    is "" for the part `scale` was decided on."""
    decided = _layout(raw.test_layout if part else raw.layout, x.shape, layout, name + part)
    pixels, clipped = scale.apply(x, name + part, decided_on_x=not part)
    images, alpha = drop_alpha(to_nchw(pixels, decided), name + part, x.shape)
    mapped = isinstance(raw.x, np.memmap) and bool(np.may_share_memory(images, raw.x))
    label_tensor = None
    if y is not None:
        label_tensor = torch.from_numpy(to_labels(np.asarray(y), len(images), name + part))
    kind = "vectors" if decided == "vectors" else "images"
    data = Dataset(
        torch.from_numpy(images if mapped else np.ascontiguousarray(images)),
        label_tensor,
        name,
        mapped=mapped,
        kind=kind,
        classes=raw.classes,
    )
    return data, {"layout": decided, "clipped": clipped, "alpha": alpha}


# named sets and Datasets


def _named(name: str, data_dir: str | os.PathLike | None, options: dict) -> tuple:
    parts = [load_arrays(name, split, data_dir) for split in ("train", "test")]
    train, test = (
        Dataset(torch.from_numpy(x[:, None]), torch.from_numpy(y).long(), name) for x, y in parts
    )
    info = {
        "source": name,
        "reader": "named",
        "sha256": array_sha256(*parts[0], *parts[1]),
        "test_source": None,
        "labels": "named set",
        "kind": "images",
        "shape": list(train.image_shape),
        "layout": "nhw",
        "scale": {"kind": "uint8"},
        "test_clipped": 0,
        "alpha_dropped": False,
        "classes": [],
        "num_classes": train.num_classes,
        "split": {"made": False, "train": len(train), "test": len(test)},
        "options": options,
    }
    return train, test, info


def _from_dataset(data: Dataset, raw_test: Raw | Dataset | None, options: dict) -> tuple:
    """A ready Dataset: already uint8 and laid out; split, or paired with a test part."""
    split: dict[str, Any] = {"made": False}
    test_record = None
    if raw_test is None:
        labels = None if data.labels is None else data.labels.cpu().numpy()
        train_rows, test_rows = split_rows(
            len(data), labels, options["test_fraction"], options["seed"]
        )
        train, test = data.select(train_rows), data.select(test_rows)
        split = {"made": True, "fraction": options["test_fraction"], "seed": options["seed"]}
        split["stratified"] = labels is not None
    elif isinstance(raw_test, Dataset):  # two ready Datasets: paired as they are
        train, test = data, raw_test
        labels = None if test.labels is None else test.labels.cpu().numpy()
        test_record = {"source": "array", "reader": "dataset"}
        test_record["sha256"] = array_sha256(test.images.cpu().numpy(), labels)
        _check_alike(train, test)
    else:
        raw_test.test_layout = raw_test.layout
        if raw_test.classes != data.classes and raw_test.y is not None:
            raw_test.y = _same_classes(data.classes, raw_test.classes, raw_test.y)
        raw_test.classes = data.classes
        check_values(raw_test.x, f"{data.name} test part")
        fitted = decide_scale(raw_test.x, "auto", f"{data.name} test part")
        layout = "vectors" if data.kind == "vectors" else options["layout"]
        test = _prepare(raw_test, raw_test.x, raw_test.y, fitted, layout, data.name, " test part")[
            0
        ]
        train, test_record = data, raw_test.record
        _check_alike(train, test)
    split.update(train=len(train), test=len(test))
    images = data.images.cpu().numpy()
    info = {
        "source": "array",
        "reader": "dataset",
        "sha256": array_sha256(images, None if data.labels is None else data.labels.cpu().numpy()),
        "test_source": test_record,
        "labels": None if data.labels is None else "dataset",
        "kind": data.kind,
        "shape": list(data.image_shape),
        "layout": "nchw",
        "scale": {"kind": "uint8"},
        "test_clipped": 0,
        "alpha_dropped": False,
        "classes": list(data.classes),
        "num_classes": max(train.num_classes, test.num_classes),
        "split": split,
        "options": options,
    }
    return train, test, info
