"""A run's data: a DataConfig read through the one way in (aezoo.data.load_splits) with subsets
and static binarisation, read again as recorded, other data for a trained run, and which models
can take which data.

config.json names the data so that it reads the same from any folder: a named set, a resolved
absolute path, or "array" for data that was in memory (it cannot be read again: pass --dataset).
A source without a test part is split with SPLIT_SEED, the same for every run and seed.
"""

from __future__ import annotations

from typing import Any

from aezoo.config import DataConfig
from aezoo.data import DATASETS, Dataset, binarize_once, check_recorded, load_dataset, load_splits
from aezoo.data.readers import ARRAY_GONE, PASS_DATASET, RESTORE_DATA
from aezoo.errors import UsageError
from aezoo.models import MODELS, preset

SPLIT_SEED = 0  # the held-out split of data without a test part
TEST_SEED = 12345  # fixes the test set's corruption and binarisation across runs
ARRAY = "array"  # config.json's name for data that was in memory


def read_data(
    config: DataConfig, source: Any = None, *, labels: Any = None, test: Any = None
) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """(train, test, info) of a DataConfig through load_splits, with subsets and static
    binarisation; `source`, `labels`, `test`: arrays, tensors or Datasets in place of paths."""
    if (source is None and config.dataset == ARRAY) or (
        test is None and config.test_dataset == ARRAY
    ):
        raise UsageError(ARRAY_GONE)
    name = config.dataset if source is None else source
    if config.label_column is not None and isinstance(name, str) and name in DATASETS:
        raise UsageError(f"label_column: {name} brings its own labels")
    train, test_part, info = load_splits(
        config.dataset if source is None else source,
        labels=labels,
        test=config.test_dataset if test is None else test,
        layout=config.layout,
        scale=config.scale,
        label_column=config.label_column,
        test_fraction=config.test_fraction,
        seed=SPLIT_SEED,
        data_dir=config.data_dir,
    )
    return (*_prepared(config, train, test_part), info)


def load_data(config: DataConfig) -> tuple[Dataset, Dataset]:
    """The (train, test) data sets of a DataConfig, with subsets and static binarisation."""
    return read_data(config)[:2]


def reread(
    config: DataConfig, info: dict[str, Any] | None, remedy: str = PASS_DATASET
) -> tuple[Dataset, Dataset]:
    """A run's data read again; data moved or changed since `info` was recorded is an error
    that ends in `remedy`: PASS_DATASET where the command takes other data (eval, encode),
    RESTORE_DATA where it must have the run's own (resume, explore, train-prior)."""
    if info is not None:
        check_recorded(info, remedy)
        if info.get("labels") == ARRAY:
            how = remedy if remedy == PASS_DATASET else "train from a file that holds them"
            raise UsageError(f"the run's labels were an in-memory array; {how}")
        if info.get("test_source"):
            check_recorded(info["test_source"], remedy)
    return load_data(config)


def own_data(
    config: DataConfig,
    info: dict[str, Any] | None,
    remedy: str = RESTORE_DATA,
    *,
    dataset: Any = None,
    labels: Any = None,
    test: Any = None,
) -> tuple[Dataset, Dataset]:
    """The run's own (train, test) data, for a command that must have it (resume, explore,
    train-prior): read again as recorded (reread), or, for a run trained on in-memory data, the
    same arrays given again (`dataset`, `labels`, `test` as aezoo.train took them), accepted only
    if their sha256 is the recorded one; the run's data options then split and scale them as
    before."""
    if dataset is None and labels is None and test is None:
        return reread(config, info, remedy)
    if labels is not None and dataset is None:
        raise UsageError("labels= goes with dataset=: pass both, as aezoo.train was given them")
    if test is not None and config.test_dataset is None:
        raise UsageError("test=: the run split its test part off its data (seeded); pass no test=")
    for name, given, recorded in (
        ("dataset", dataset, config.dataset),
        ("test", test, config.test_dataset),
    ):
        if given is not None and recorded != ARRAY:
            raise UsageError(
                f"{name}=: the run read this part from {recorded}, not from memory, and reads "
                f"it from there again; pass no {name}="
            )
    if info is None:
        raise UsageError("the run's config.json records no checksum to check given data against")
    if dataset is None:  # a part not given again is read from its file: check that first
        check_recorded(info, remedy)
    if test is None and info.get("test_source"):
        check_recorded(info["test_source"], remedy)
    train, test_part, read = read_data(config, dataset, labels=labels, test=test)
    if read.get("sha256") != info.get("sha256"):
        raise UsageError(NOT_THE_SAME.format(what="dataset= (and labels=)"))
    if _test_sha256(read) != _test_sha256(info):
        raise UsageError(NOT_THE_SAME.format(what="test="))
    return train, test_part


def _test_sha256(info: dict[str, Any]) -> str | None:
    """The checksum of a given test part (None: the run split its test part off its data)."""
    return (info.get("test_source") or {}).get("sha256")


NOT_THE_SAME = (
    "{what}: not the data the run was trained on (sha256 differs); pass the same arrays that "
    "aezoo.train was given"
)


def new_data(config: DataConfig, source: str, info: dict[str, Any] | None = None) -> Dataset:
    """Other data for a trained run, read with the run's layout, scale and label options (and the
    max/minmax parameters fitted on its training data, from `info`): a named set's test files,
    else all of it."""
    if source in DATASETS:
        data = load_dataset(source, "test", data_dir=config.data_dir)
    else:
        data = load_dataset(
            source,
            layout=config.layout,
            scale=config.scale,
            label_column=config.label_column,
            fitted_scale=None if info is None else info.get("scale"),
        )
    return binarize_once(data, seed=TEST_SEED) if config.binarize != "none" else data


def data_summary(info: dict[str, Any]) -> dict[str, Any]:
    """What summary.json says of the data: where from, its checksum, how it was read and split."""
    keys = ("source", "sha256", "kind", "shape", "layout", "scale", "split", "classes")
    return {k: info.get(k) for k in keys}


def recorded_options(info: dict[str, Any]) -> dict[str, Any]:
    """The data options that read the same data again from any folder: resolved paths."""
    test = info.get("test_source")
    return {
        "dataset": info["source"],
        "test_dataset": None if test is None else test["source"],
        "data_dir": info["options"].get("data_dir"),
    }


def unfit_reason(model: str, data: Dataset) -> str | None:
    """Why `model` cannot train on `data` (vectors for a convolutional model, no labels for a
    conditional one), or None."""
    p = preset(model)
    if data.kind == "vectors" and p.options.get("arch", "dense") != "dense":
        dense = ", ".join(n for n, q in MODELS.items() if q.options.get("arch") == "dense")
        return f"{model} is convolutional and {data.name} holds vectors [N, D]; use {dense}"
    if p.options.get("num_classes", 0) and data.labels is None:
        return f"{model} is conditioned on labels, and {data.name} has none"
    return None


def refuse_unfit(model: str, data: Dataset) -> None:
    """unfit_reason as an error."""
    reason = unfit_reason(model, data)
    if reason is not None:
        raise UsageError(reason)


def _prepared(config: DataConfig, train: Dataset, test: Dataset) -> tuple[Dataset, Dataset]:
    if config.train_subset is not None:
        train = train.subset(config.train_subset, seed=0)
    if config.test_subset is not None:
        test = test.subset(config.test_subset, seed=0)
    if config.binarize == "static":
        train = binarize_once(train, seed=TEST_SEED + 1)
    if config.binarize != "none":
        test = binarize_once(test, seed=TEST_SEED)
    return train, test
