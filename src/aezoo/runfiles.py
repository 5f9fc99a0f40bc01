"""A run folder's files, checked before any command uses them: no symbolic link in the folder is
ever followed, config.json, summary.json and metrics.jsonl have the shape aezoo writes, and a
checkpoint's metadata is validated whole. A damaged file is refused naming it, before anything
trains or writes (exit code 2), never a traceback halfway through."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from aezoo.errors import TrainingError, UsageError
from aezoo.io import load_json
from aezoo.models import build_from_config, count_parameters

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = Path("checkpoint") / "last.safetensors"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


def no_links(run_dir: str | Path) -> None:
    """Refuse a run folder holding a symbolic link at any depth: reading or writing through one
    would reach outside the folder (the folder itself may be a link: the check starts below it)."""
    for parent, folders, files in os.walk(run_dir):
        for name in [*folders, *files]:
            path = Path(parent) / name
            if path.is_symlink():
                raise UsageError(
                    f"{path} is a symbolic link; aezoo never follows links in a run folder"
                )


def check_writable(folder: str | Path) -> None:
    """A folder that cannot take a new file is one clear error before any work (a read-only
    mount, a full disk), not an OSError halfway through."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".aezoo-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{folder} is not writable ({err.strerror or err})") from None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record(path: Path, number: int, line: str) -> dict[str, Any]:
    where = f"{path} line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        raise UsageError(f"{where} is not JSON; the run folder is damaged") from None
    if not isinstance(record, dict):
        raise UsageError(f"{where} is not a JSON object; the run folder is damaged")
    if record.get("epoch") != number or isinstance(record.get("epoch"), bool):
        raise UsageError(f"{where}: expected epoch {number}; the run folder is damaged")
    bad = next((k for k, v in record.items() if not figure(k, v) or v is None), None)
    if bad is not None:
        raise UsageError(f"{where}: {bad} is not a number; the run folder is damaged")
    return record


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of metrics.jsonl, each checked (an object, epoch = its line number,
    numbers); only a torn last line, what a kill during the append leaves, is dropped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    try:
        lines = path.read_text().split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read ({err}); the run folder is damaged") from None
    last = lines.pop()  # after the final newline: "" or a line cut short
    records = [_record(path, n, line) for n, line in enumerate(lines, 1)]
    with contextlib.suppress(UsageError):  # torn by a kill mid-append: no complete record
        records.append(_record(path, len(lines) + 1, last))
    return records


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """summary.json ({} for an unfinished run): an object whose figures are numbers."""
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        return {}
    summary = load_json(path)
    if not isinstance(summary, dict):
        raise UsageError(f"{path}: expected a JSON object; the run folder is damaged")
    for key, value in summary.items():
        if key == "data":  # the record of the data read (aezoo.rundata.data_summary)
            ok = isinstance(value, dict)
        else:
            ok = isinstance(value, str) if key in ("model", "dataset") else figure(key, value)
        if not ok:
            raise UsageError(f"{path}: {key} has the wrong type; the run folder is damaged")
    return summary


def figure(key: str, value: Any) -> bool:
    """What a run records besides names: numbers (null where undefined); a list of numbers
    only for a per-dimension figure (`test_kl_per_dim`)."""
    if key.endswith("_per_dim") and isinstance(value, list):
        return all(is_number(v) for v in value)
    return value is None or is_number(value)


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """config.json as an object naming a model, its sections objects."""
    path = Path(run_dir) / CONFIG
    config = load_json(path)
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise UsageError(f"{path}: not a run's config (expected an object naming a model)")
    bad = next((k for k in ("model_config", "train", "data") if k not in config), None)
    bad = bad or next((k for k in ("model_config", "train", "data") if not _obj(config[k])), None)
    if bad is not None:
        raise UsageError(f"{path}: {bad} must be a JSON object")
    return config


def _obj(value: Any) -> bool:
    return isinstance(value, dict)


def checkpoint_metadata(
    meta: Mapping[str, str], names: list[str], path: Path
) -> tuple[int, dict[str, Any], list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """(epoch, state, param_groups, optim_scalars) of a checkpoint, every part checked against
    what save_checkpoint writes; anything else names the file."""
    try:
        epoch = json.loads(meta["epoch"])
        state = json.loads(meta["state"])
        groups = json.loads(meta["param_groups"])
        scalars = json.loads(meta["optim_scalars"])
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError("epoch is not a count of epochs")
        if not isinstance(state, dict) or not is_number(state.get("seed", 0)):
            raise ValueError("state is not an object holding a seed")
        if not isinstance(groups, list) or not all(_group(g) for g in groups):
            raise ValueError("param_groups is not a list of groups of parameter indices")
        if not isinstance(scalars, dict) or not all(_slots(k, v) for k, v in scalars.items()):
            raise ValueError("optim_scalars is not an object of slots by parameter index")
        bad = next((n for n in names if not _tensor_name(n)), None)
        if bad is not None:
            raise ValueError(f"unexpected tensor {bad!r}")
    except (KeyError, ValueError) as err:
        raise UsageError(f"{path}: not an aezoo checkpoint (metadata {err})") from None
    return epoch, state, groups, {int(k): v for k, v in scalars.items()}


def _group(group: Any) -> bool:
    params = group.get("params") if isinstance(group, dict) else None
    return isinstance(params, list) and all(_index(p) for p in params)


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _slots(index: str, slots: Any) -> bool:
    numbers = isinstance(slots, dict) and all(is_number(v) for v in slots.values())
    return index.isdigit() and numbers


def _tensor_name(name: str) -> bool:
    if name.startswith(("model.", "state.")):
        return True
    parts = name.split(".", 2)
    return len(parts) == 3 and parts[0] == "optim" and parts[1].isdigit() and bool(parts[2])


MAX_PARAMETERS = 2**30  # 4 GiB of float32 weights, far above any registered model's size
MAX_CLASSES = 100_000  # labels are class indices: one of 10**12 is a mistake, not a class


def check_model_size(model: str, model_config: Mapping[str, Any], where: str | Path) -> None:
    """A config whose model would not fit is refused before any weight is allocated (the model
    is built on the meta device, which holds shapes only), naming its largest sizes."""
    with torch.device("meta"):
        count = count_parameters(build_from_config(model, dict(model_config)))
    if count > MAX_PARAMETERS:
        sizes = sorted(((v, k) for k, v in model_config.items() if is_number(v)), reverse=True)
        named = ", ".join(f"{k} {v:g}" for v, k in sizes[:2])
        raise UsageError(
            f"{where}: {model} with {named} would have {count:,} parameters; aezoo builds "
            f"models of up to {MAX_PARAMETERS:,}"
        )


def check_labels(num_classes: int, name: str) -> None:
    """Labels are class indices; a huge one would size a label embedding of that many rows."""
    if num_classes > MAX_CLASSES:
        raise UsageError(
            f"the labels of {name} go up to {num_classes - 1}; aezoo takes class labels "
            f"0..{MAX_CLASSES - 1}"
        )


def refuse_non_finite(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Weights that are not finite are never written: a checkpoint is "the last good one"."""
    floats = [(k, t) for k, t in tensors.items() if t.is_floating_point() and t.numel()]
    if floats and not bool(torch.stack([t.detach().isfinite().all() for _, t in floats]).all()):
        name = next(k for k, t in floats if not bool(t.detach().isfinite().all()))
        raise TrainingError(
            f"not writing {path}: tensor {name!r} is non-finite; the last good checkpoint is kept"
        )
