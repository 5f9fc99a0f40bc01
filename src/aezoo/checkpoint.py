"""Saving and loading runs: safetensors for tensors, JSON for everything else, atomic writes.

A run folder holds config.json, model.safetensors, checkpoint/last.safetensors (weights, optimizer
state and the epoch — after Ctrl-C also where the epoch stood — in one file so it is either wholly
there or not), metrics.jsonl, summary.json and figures/. Nothing here ever unpickles: a file that
is not safetensors or JSON is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from aezoo.config import DataConfig, TrainConfig, from_dict, load_json, to_dict
from aezoo.errors import UsageError
from aezoo.models import build_from_config, preset

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = Path("checkpoint") / "last.safetensors"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
TEMPORARY = ".*.tmp"  # the names of atomic_write's temporary files


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`: a
    reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_temporaries(folder: Path) -> None:
    """Delete what atomic writes killed mid-way (SIGKILL, power cut) left in `folder`, at any
    depth: temporary files no reader ever takes for the real ones."""
    for tmp in Path(folder).rglob(TEMPORARY):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; anything else is refused with the file named."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read ({err.strerror})") from None
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as err:
        raise UsageError(
            f"{path}: not a safetensors file ({err}); aezoo loads nothing else"
        ) from None
    return tensors, metadata


def _contiguous(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's state dict as safetensors, atomically."""
    atomic_write(path, st_save(_contiguous(model.state_dict())))


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
    tensors, _ = _read_safetensors(path)
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
    atomic_write(Path(run_dir) / CHECKPOINT, st_save(_contiguous(saved), metadata=metadata))


def load_checkpoint(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, dict[str, Any]]:
    """Restore what save_checkpoint wrote; returns (completed epochs, training state), the state
    holding its `tensors` under "tensors" when it was saved with some."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise UsageError(f"{run_dir}: no checkpoint to resume from ({CHECKPOINT} is missing)")
    tensors, meta = _read_safetensors(path)
    try:
        epoch = int(meta["epoch"])
        state = json.loads(meta["state"])
        groups = json.loads(meta["param_groups"])
        scalars = json.loads(meta["optim_scalars"])
        if not isinstance(state, dict):
            raise ValueError(f"state is {type(state).__name__}, not an object")
    except (KeyError, ValueError) as err:
        raise UsageError(f"{path}: not an aezoo checkpoint (metadata {err})") from None
    _load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, slot = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[slot] = value
    for idx, slots in scalars.items():
        opt_state.setdefault(int(idx), {}).update(slots)
    # JSON turned tuples (Adam's betas) into lists; give them back as the optimizer made them.
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
        for g in groups
    ]
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


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run: what config.json holds."""

    model: str
    model_config: Any
    train: TrainConfig
    data: DataConfig

    def __post_init__(self) -> None:
        schedule = self.train.kl_warmup or self.train.kl_cycles
        if schedule and getattr(self.model_config, "iw_samples", 1) > 1:
            raise UsageError(
                "kl_warmup and kl_cycles weight a KL term, and iw_samples > 1 trains the "
                "importance-weighted bound, which has none: use one or the other"
            )

    def to_json(self) -> dict[str, Any]:
        from aezoo import __version__

        return {
            "aezoo": __version__,
            "model": self.model,
            "model_config": to_dict(self.model_config),
            "train": to_dict(self.train),
            "data": to_dict(self.data),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "config.json") -> RunSpec:
        if not isinstance(obj, Mapping):
            raise UsageError(f"{where}: expected a JSON object")
        unknown = sorted(set(obj) - {"aezoo", "model", "model_config", "train", "data"})
        if unknown:
            raise UsageError(f"{where}: unknown field {unknown[0]!r}")
        if not isinstance(obj.get("model"), str):
            raise UsageError(f"{where}: field 'model' must name a registered model")
        p = preset(obj["model"])
        return cls(
            model=obj["model"],
            model_config=from_dict(p.config, obj.get("model_config", {}), "model_config"),
            train=from_dict(TrainConfig, obj.get("train", {}), "train"),
            data=from_dict(DataConfig, obj.get("data", {}), "data"),
        )


@dataclass
class Run:
    """A run folder and what it holds: the model (eval mode), its spec and its summary."""

    path: Path
    model: nn.Module
    spec: RunSpec
    summary: dict[str, Any] = field(default_factory=dict)


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Rebuild a run's model from config.json and model.safetensors (falling back to the last
    checkpoint of an unfinished run), in the memory layout training used on `device` (so the
    loaded model computes exactly what the trained one did)."""
    from aezoo.train import place_model

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise UsageError(f"{run_dir} is not a run folder (no {CONFIG})")
    spec = RunSpec.from_json(load_json(run_dir / CONFIG), str(run_dir / CONFIG))
    model = build_from_config(spec.model, to_dict(spec.model_config))
    if (run_dir / WEIGHTS).exists():
        load_weights(model, run_dir / WEIGHTS)
    elif (run_dir / CHECKPOINT).exists():
        tensors, _ = _read_safetensors(run_dir / CHECKPOINT)
        _load_state(
            model,
            {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
            run_dir / CHECKPOINT,
        )
    else:
        raise UsageError(f"{run_dir}: no weights ({WEIGHTS} or {CHECKPOINT})")
    summary = load_json(run_dir / SUMMARY) if (run_dir / SUMMARY).exists() else {}
    model = place_model(model, torch.device(device), spec.train)
    return Run(path=run_dir, model=model.eval(), spec=spec, summary=summary)
