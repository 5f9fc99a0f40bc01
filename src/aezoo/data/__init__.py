"""Data sets as uint8 tensors [N, C, H, W] (vectors as [N, 1, 1, D]) with optional int64 labels.

`load_splits` is the one way in: a registered name (mnist, fashion-mnist, kmnist), a .npz/.npy,
.csv/.parquet or image-folder path, an array, a tensor or a Dataset → (train, test, info), with
layout and scale decided (never guessed) and a test part that is never the training data.
`load_dataset` reads one stored part of the same sources.
"""

from __future__ import annotations

from aezoo.data.dataset import Dataset, binarize_once, split_rows, stratified_pick
from aezoo.data.decide import LAYOUTS, parse_scale
from aezoo.data.load import load_dataset, load_splits
from aezoo.data.raw import MAX_BYTES
from aezoo.data.readers import check_npz_size, check_recorded
from aezoo.data.sources import SOURCES

__all__ = [
    "DATASETS",
    "LAYOUTS",
    "MAX_BYTES",
    "Dataset",
    "binarize_once",
    "check_npz_size",
    "check_recorded",
    "load_dataset",
    "load_splits",
    "parse_scale",
    "split_rows",
    "stratified_pick",
]

DATASETS = tuple(SOURCES)
