"""Run folders: their names, what defines a run (RunSpec), saving and loading weights and
checkpoints, metrics.jsonl, finding runs, and the data a run trains on.

A run folder holds config.json, model.safetensors, checkpoint/last.safetensors (weights, optimizer
state and the epoch — after Ctrl-C also where the epoch stood — in one file so it is either wholly
there or not), metrics.jsonl, summary.json and figures/. Nothing here ever unpickles.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aezoo import distributed
from aezoo.config import DataConfig, TrainConfig, from_dict, load_json, split_options, to_dict
from aezoo.data import Dataset
from aezoo.data.batches import Batches, parse_corruption
from aezoo.device import place_model, resolve_device
from aezoo.errors import UsageError
from aezoo.io import TEMPORARY as TEMPORARY  # re-exported: what a run folder may hold
from aezoo.io import atomic_write as atomic_write
from aezoo.io import read_safetensors, write_safetensors
from aezoo.io import remove_temporaries as remove_temporaries
from aezoo.io import write_json as write_json
from aezoo.models import build_from_config, preset
from aezoo.rundata import TEST_SEED as TEST_SEED  # re-exported: the test set's fixed seed
from aezoo.rundata import load_data as load_data  # re-exported: a run's data
from aezoo.rundata import read_data as read_data
from aezoo.rundata import recorded_options, refuse_unfit
from aezoo.runfiles import CHECKPOINT as CHECKPOINT  # re-exported: a run folder's file names
from aezoo.runfiles import CONFIG as CONFIG
from aezoo.runfiles import METRICS as METRICS
from aezoo.runfiles import SUMMARY as SUMMARY
from aezoo.runfiles import WEIGHTS as WEIGHTS
from aezoo.runfiles import (
    check_labels,
    check_model_size,
    checkpoint_metadata,
    no_links,
    refuse_non_finite,
)
from aezoo.runfiles import read_metrics as read_metrics
from aezoo.version import __version__

DATA_INFO = "data_info"  # config.json's record of the data read (aezoo.data.load_splits' info)


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's state dict as safetensors, atomically (refused when not finite)."""
    refuse_non_finite(model.state_dict(), path)
    write_safetensors(path, model.state_dict())


def _load_state(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: Path) -> None:
    """Load tensors into `model`, naming the first missing, extra or mis-shaped tensor."""
    expected = model.state_dict()
    for name, t in expected.items():
        if name not in tensors:
            raise UsageError(
                f"{source}: tensor {name!r} is missing (the weights do not match "
                "the model in config.json)"
            )
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise UsageError(
                f"{source}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                f"the model expects {tuple(t.shape)}"
            )
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise UsageError(f"{source}: unexpected tensor {extra[0]!r} (not part of this model)")
    model.load_state_dict(tensors, strict=True)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors state dict into `model`."""
    tensors, _ = read_safetensors(path)
    _load_state(model, tensors, path)


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    state: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Weights, optimizer state and training state after `epoch` completed epochs, in one file;
    `tensors` are more of the training state (an interrupted epoch's sums and RNG states)."""
    opt = optimizer.state_dict()
    saved = {f"model.{k}": v for k, v in model.state_dict().items()}
    saved.update({f"state.{k}": v for k, v in (tensors or {}).items()})
    scalars: dict[str, dict[str, Any]] = {}
    for idx, slots in opt["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                saved[f"optim.{idx}.{slot}"] = value
            else:
                scalars.setdefault(str(idx), {})[slot] = value
    metadata = {
        "epoch": str(epoch),
        "state": json.dumps(dict(state)),
        "param_groups": json.dumps(opt["param_groups"]),
        "optim_scalars": json.dumps(scalars),
    }
    refuse_non_finite(saved, Path(run_dir) / CHECKPOINT)
    write_safetensors(Path(run_dir) / CHECKPOINT, saved, metadata)


def load_checkpoint(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, dict[str, Any]]:
    """Restore what save_checkpoint wrote; returns (completed epochs, training state), the state
    holding its `tensors` under "tensors" when it was saved with some."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise UsageError(f"{run_dir}: no checkpoint to resume from ({CHECKPOINT} is missing)")
    tensors, meta = read_safetensors(path)
    epoch, state, groups, scalars = checkpoint_metadata(meta, list(tensors), path)
    _load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, slot = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[slot] = value
    for idx, slots in scalars.items():
        opt_state.setdefault(idx, {}).update(slots)
    # JSON turned tuples (Adam's betas) into lists; give them back as the optimizer made them.
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
        for g in groups
    ]
    fresh = optimizer.state_dict()["param_groups"]  # what config.json's optimizer holds
    if len(groups) != len(fresh) or any(
        set(g) != set(f)
        or g["params"] != f["params"]
        or any(_kind(g[k]) != _kind(f[k]) for k in f if f[k] is not None)
        for g, f in zip(groups, fresh, strict=False)
    ):
        raise UsageError(f"{path}: its param_groups are not those of config.json's optimizer")
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise UsageError(f"{path}: optimizer state does not match the model ({err})") from None
    # Saved contiguous; give each moment its parameter's layout (channels-last convolutions),
    # as the optimizer made it, so a resumed run computes exactly what an unbroken one does.
    for group in optimizer.param_groups:
        for param in group["params"]:
            slots = optimizer.state.get(param, {})
            for slot, value in slots.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    slots[slot] = torch.empty_like(param, dtype=value.dtype).copy_(value)
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("state.")}
    if extra:
        state["tensors"] = extra
    return epoch, state


def _kind(value: Any) -> Any:
    """What an optimizer hyperparameter is (a number, a flag, a pair...), not its value."""
    if value is None or isinstance(value, bool):
        return bool  # a flag, or a choice left to torch (`fused`, `foreach`)
    if isinstance(value, (tuple, list)):
        return tuple(_kind(v) for v in value)
    return (
        "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value)
    )


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run: what config.json holds."""

    model: str
    model_config: Any
    train: TrainConfig
    data: DataConfig
    data_info: dict[str, Any] | None = None  # what load_splits read: path, sha256, layout, split

    def __post_init__(self) -> None:
        schedule = self.train.kl_warmup or self.train.kl_cycles
        if schedule and getattr(self.model_config, "iw_samples", 1) > 1:
            raise UsageError(
                "kl_warmup and kl_cycles weight a KL term, and iw_samples > 1 trains the "
                "importance-weighted bound, which has none: use one or the other"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "aezoo": __version__,
            "model": self.model,
            "model_config": to_dict(self.model_config),
            "train": to_dict(self.train),
            "data": to_dict(self.data),
            **({} if self.data_info is None else {"data_info": self.data_info}),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "config.json") -> RunSpec:
        if not isinstance(obj, Mapping):
            raise UsageError(f"{where}: expected a JSON object")
        unknown = sorted(set(obj) - {"aezoo", "model", "model_config", "train", "data", DATA_INFO})
        if unknown:
            raise UsageError(f"{where}: unknown field {unknown[0]!r}")
        if not isinstance(obj.get("model"), str):
            raise UsageError(f"{where}: field 'model' must name a registered model")
        p = preset(obj["model"])
        if not isinstance(obj.get(DATA_INFO, {}), Mapping):
            raise UsageError(f"{where}: field {DATA_INFO!r} must be an object")
        return cls(
            model=obj["model"],
            model_config=from_dict(p.config, obj.get("model_config", {}), "model_config"),
            train=from_dict(TrainConfig, obj.get("train", {}), "train"),
            data=from_dict(DataConfig, obj.get("data", {}), "data"),
            data_info=obj.get(DATA_INFO),
        )


@dataclass
class Run:
    """A run folder and what it holds: the model (eval mode), its spec and its summary."""

    path: Path
    model: nn.Module
    spec: RunSpec
    summary: dict[str, Any] = field(default_factory=dict)


def new_run_dir(prefix: str, out: str | Path | None = None) -> Path:
    """`out` if given, else runs/PREFIX-YYYYmmdd-HHMMSS (with -2, -3, ... if that exists): the one
    place run and study folders are named."""
    if out is not None:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{prefix}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path("runs") / f"{prefix}-{stamp}-{suffix}"
    return path


def create_run_dir(run_dir: Path, spec: RunSpec) -> None:
    """A new, empty run folder holding config.json; an existing non-empty one is an error."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder; choose another --out")
    if run_dir.is_dir() and all(p.match(TEMPORARY) for p in run_dir.iterdir()):
        remove_temporaries(run_dir)  # all a kill during the first config.json write left
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(
            f"{run_dir} already exists and is not empty; choose another --out, or "
            f"continue it with --resume {run_dir}"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the run folder {run_dir} ({err.strerror})") from None
    try:
        write_json(run_dir / CONFIG, spec.to_json())
    except OSError as err:
        raise UsageError(f"cannot write to the run folder {run_dir} ({err.strerror})") from None


def find_runs(folder: str | Path) -> list[Path]:
    """Run folders under `folder` (any depth): those whose config.json names a model and data."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    found = []
    for config in folder.rglob(CONFIG):
        try:
            obj = json.loads(config.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(obj, dict) and {"model", "train", "data"} <= set(obj):
            found.append(config.parent)
    return sorted(found, key=lambda p: (p / CONFIG).stat().st_mtime)


def make_spec(
    model: str,
    options: Mapping[str, Any],
    train_data: Dataset,
    info: dict[str, Any] | None = None,
) -> RunSpec:
    """A RunSpec from a model name and flat options; the model's image shape comes from the data,
    and `info` (load_splits') records it: config.json names the data by its resolved path."""
    refuse_unfit(model, train_data)
    train_opts, data_opts, model_opts = split_options(options)
    if info is not None:
        data_opts.update(recorded_options(info))
    check_labels(train_data.num_classes, train_data.name)
    p = preset(model)
    fields = {f.name for f in dataclasses.fields(p.config)}
    if "image_shape" in fields:
        model_opts.setdefault("image_shape", train_data.image_shape)
    if (
        "num_classes" in fields
        and p.options.get("num_classes", 0)
        and "num_classes" not in model_opts
    ):
        model_opts["num_classes"] = max(train_data.num_classes, p.options["num_classes"])
    return RunSpec(
        model,
        p.make_config(**model_opts),
        from_dict(TrainConfig, {**p.training, **train_opts}),
        from_dict(DataConfig, data_opts),
        info,
    )


def make_batches(
    spec: RunSpec, train: Dataset, test: Dataset, device: torch.device
) -> tuple[Batches, Batches]:
    """A run's training batches (shuffled, this process's slice under torchrun) and test batches
    (fixed order and noise)."""
    corruption = parse_corruption(spec.data.noise) if spec.data.noise else None
    train_batches = Batches(
        train,
        spec.train.batch_size,
        device=device,
        seed=spec.train.seed,
        shuffle=True,
        binarize="dynamic" if spec.data.binarize == "dynamic" else "none",
        corruption=corruption,
        shift=spec.data.shift,
        part=distributed.world(),
    )
    test_batches = Batches(
        test,
        spec.train.eval_batch_size,
        device=device,
        seed=TEST_SEED,
        shuffle=False,
        corruption=corruption,
    )
    return train_batches, test_batches


def check_data(spec: RunSpec, train: Dataset, test: Dataset) -> None:
    """Data the model cannot take is an error before the first step, naming what it expects."""
    for split, data in (("training", train), ("test", test)):
        check_part(spec, split, data)
    check_shift(spec.data.shift, train)


def check_shift(shift: int, train: Dataset, name: str = "--shift") -> None:
    """A training shift (augmentation) the data can take: images, moved less than their width.
    `name` is how the caller's user states it (the CLI flag, or the detector's model option)."""
    if not shift:
        return
    if train.kind == "vectors":
        raise UsageError(
            f"{name} moves images by whole pixels; {train.name} holds vectors (table rows), "
            f"which have no pixels to move: leave {name} at 0"
        )
    side = min(train.image_shape[1:])
    if shift >= side:
        raise UsageError(
            f"{name} {shift} would move the {side}-pixel-wide images of {train.name} "
            "out of their frame: use a few pixels at most (1 moves each image by up to one)"
        )


def check_part(spec: RunSpec, split: str, data: Dataset) -> None:
    """One part of the data against the run's model: shape, kind and labels."""
    shape = getattr(spec.model_config, "image_shape", None)
    classes = getattr(spec.model_config, "num_classes", 0)
    if data.kind == "vectors":
        refuse_unfit(spec.model, data)
    if shape is not None and data.image_shape != tuple(shape):
        raise UsageError(
            f"the {split} images of {data.name} are {data.image_shape} (C, H, W); "
            f"{spec.model} expects {tuple(shape)}"
        )
    if classes and data.labels is None:
        raise UsageError(
            f"{spec.model} is conditioned on labels, and the {split} set of {data.name} has none"
        )
    if classes and data.num_classes > classes:
        raise UsageError(
            f"the {split} labels of {data.name} go up to {data.num_classes - 1}; "
            f"{spec.model} takes labels 0..{classes - 1} (num_classes {classes})"
        )


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Rebuild a run's model from config.json and model.safetensors (falling back to the last
    checkpoint of an unfinished run), in the memory layout training used on `device` (so the
    loaded model computes exactly what the trained one did)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise UsageError(f"{run_dir} is not a run folder (no {CONFIG})")
    no_links(run_dir)
    spec = RunSpec.from_json(load_json(run_dir / CONFIG), str(run_dir / CONFIG))
    check_model_size(spec.model, to_dict(spec.model_config), run_dir / CONFIG)
    model = build_from_config(spec.model, to_dict(spec.model_config))
    if (run_dir / WEIGHTS).exists():
        load_weights(model, run_dir / WEIGHTS)
    elif (run_dir / CHECKPOINT).exists():
        tensors, _ = read_safetensors(run_dir / CHECKPOINT)
        _load_state(
            model,
            {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
            run_dir / CHECKPOINT,
        )
    else:
        raise UsageError(f"{run_dir}: no weights ({WEIGHTS} or {CHECKPOINT})")
    summary = load_json(run_dir / SUMMARY) if (run_dir / SUMMARY).exists() else {}
    model = place_model(model, resolve_device(str(device)), spec.train)
    return Run(path=run_dir, model=model.eval(), spec=spec, summary=summary)
