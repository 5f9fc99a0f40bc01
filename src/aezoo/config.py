"""Frozen, validated configs: TrainConfig and DataConfig here, each model's config beside its model.

Every config is a frozen dataclass whose fields carry their help text and allowed range. The same
validation serves JSON files, the CLI and the Python API, so a mistyped or out-of-range value is an
error naming the field wherever it comes from.
"""

from __future__ import annotations

import dataclasses
import json
import re
import reprlib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

from aezoo.data.batches import parse_corruption
from aezoo.data.decide import parse_scale
from aezoo.errors import UsageError
from aezoo.io import load_json as load_json  # re-exported: configs are read as JSON

DEVICE_PATTERN = r"auto|(cpu|cuda|mps)(:\d+)?"  # what a device option accepts
# Seeds are checked once, at the smallest limit of what they seed (NumPy's and scikit-learn's
# random_state), so every generator downstream takes them.
SEED_HIGH = 2**32 - 1

C = TypeVar("C")


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    cli: bool = True,
) -> Any:
    """A config field with its help text and range; `positive` means > 0, `low`/`high` inclusive."""
    meta = {"help": help, "low": low, "high": high, "positive": positive, "cli": cli}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def describe(value: Any) -> str:
    """A value for a one-line message: its repr, cut to 60 characters (an array's repr spans
    dozens of lines), with its type where the repr is cut."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 50
    text = " ".join(short.repr(value).split())
    if len(text) > 60:
        text = f"{text[:57]}... ({type(value).__name__})"
    return text


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Check `value` against the annotation `tp`; return it in canonical form (lists → tuples)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(name, arg, value)
            except UsageError:
                pass
        raise UsageError(f"{name}: expected {_type_name(tp)}, got {describe(value)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise UsageError(f"{name}: expected one of {_type_name(tp)}, got {describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{name}: expected {_type_name(tp)}, got {describe(value)}")
        item = get_args(tp)[0]
        return tuple(_coerce(name, item, v) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{name}: expected true or false, got {describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name}: expected an integer, got {describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name}: expected a number, got {describe(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"{name}: expected a finite number, got {describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UsageError(f"{name}: expected a string, got {describe(value)}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {name}")


def _check_range(name: str, meta: Mapping[str, Any], value: Any) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if meta.get("positive") and not v > 0:
            raise UsageError(f"{name}: must be > 0, got {describe(v)}")
        if meta.get("low") is not None and v < meta["low"]:
            raise UsageError(f"{name}: must be >= {meta['low']}, got {describe(v)}")
        if meta.get("high") is not None and v > meta["high"]:
            raise UsageError(f"{name}: must be <= {meta['high']}, got {describe(v)}")


def validate(config: Any) -> None:
    """Type- and range-check every field of a config dataclass (called from __post_init__)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = _coerce(f.name, hints[f.name], getattr(config, f.name))
        _check_range(f.name, f.metadata, value)
        object.__setattr__(config, f.name, value)


def from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """Build config `cls` from a mapping; unknown fields are errors that name the field."""
    if not isinstance(data, Mapping):
        got = type(data).__name__
        raise UsageError(f"{where or cls.__name__}: expected a JSON object, got {got}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise UsageError(
            f"{prefix}unknown field {unknown[0]!r} for {cls.__name__} "
            f"(known: {', '.join(sorted(known))})"
        )
    try:
        return cls(**data)
    except UsageError as err:
        raise UsageError(f"{where}.{err}" if where else str(err)) from None


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a config that the command line exposes as --options."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


@dataclass(frozen=True)
class DataConfig:
    """Which images to train and test on, and how each batch is prepared."""

    dataset: str = option(
        "mnist",
        "data set name (mnist, fashion-mnist, kmnist) or a path: .npz, .npy, .csv, .tsv, "
        ".parquet or a folder of images (see docs/data.md)",
    )
    data_dir: str | None = option(
        None,
        "folder holding the data set's files (else $AEZOO_DATA, "
        "the repository's data/, ~/.cache/aezoo, then download)",
    )
    train_subset: int | None = option(
        None, "train on a stratified, seeded subset of N images", positive=True
    )
    test_subset: int | None = option(
        None, "test on a stratified, seeded subset of N images", positive=True
    )
    binarize: Literal["none", "dynamic", "static"] = option(
        "none",
        "binarise pixels: dynamic (resampled every batch; test binarised once, fixed seed) "
        "or static (once, fixed seed)",
    )
    noise: str | None = option(
        None,
        "corrupt the encoder's input (denoising): gaussian:STD, "
        "mask:P or saltpepper:P; the loss compares with the clean image",
    )
    shift: int = option(
        0,
        "augment: move each training image by a random whole number of pixels, up to this "
        "many each way, at most 8 (input and target alike; zeros shifted in); 0: off",
        low=0,
        high=8,
    )
    test_dataset: str | None = option(
        None, "a separate test set (a path as for --dataset) when the data set has no test part"
    )
    layout: Literal["auto", "nchw", "nhwc", "vectors"] = option(
        "auto", "where the channels are, when the shape cannot tell: nchw or nhwc"
    )
    scale: str = option(
        "auto",
        "how values become intensities when they are not pixels or 0/1: minmax, max:M or "
        "(vectors) minmax-columns",
    )
    label_column: str | None = option(
        None, "tables: the labels' column (its name, or its number when there is no header)"
    )
    test_fraction: float = option(
        0.1,
        "the held-out test share when the data has no test part (a split seeded 0)",
        positive=True,
        high=1.0,
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.noise is not None:
            parse_corruption(self.noise)
        parse_scale(self.scale)
        if self.test_fraction >= 1:
            raise UsageError(f"test_fraction: must be < 1, got {self.test_fraction!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How the model is optimised; together with DataConfig and the model's config, a whole run."""

    epochs: int = option(10, "passes over the training set", positive=True)
    batch_size: int = option(128, "images per optimisation step", positive=True)
    lr: float = option(1e-3, "Adam learning rate", positive=True)
    lr_schedule: Literal["constant", "cosine", "warmdown"] = option(
        "cosine",
        "learning-rate schedule over all steps: constant; cosine decay to lr/100; or warmdown "
        "(constant, then linear decay to lr/100 over the last --warmdown fraction of the steps)",
    )
    warmdown: float = option(
        0.3,
        "lr_schedule warmdown: the fraction of steps, at the end, over which lr decays",
        positive=True,
        high=1.0,
    )
    weight_decay: float = option(0.0, "AdamW decoupled weight decay", low=0.0)
    clip_grad: float | None = option(
        None, "clip the gradient's global L2 norm to this value", positive=True
    )
    detect_anomaly: bool = option(
        False,
        "autograd anomaly detection: stop at the first NaN gradient and name the forward "
        "operation that made it (slow; for debugging)",
    )
    kl_warmup: int = option(0, "KL weight rises linearly 0→β over this many epochs", low=0)
    kl_cycles: int = option(
        0, "cyclical KL annealing: this many 0→β ramps over training (Fu et al. 2019)", low=0
    )
    seed: int = option(0, "seed for weights, data order, noise and sampling", low=0, high=SEED_HIGH)
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    precision: Literal["fp32", "bf16"] = option(
        "fp32",
        "bf16: training steps under bfloat16 autocast (CUDA, or a CPU with native bf16 such as "
        "AVX512-BF16 or AMX); evaluation stays fp32. On CUDA, fp32 matrix products use TF32",
    )
    compile: bool = option(
        False, "torch.compile the training step (a one-off compile; pays back on long runs)"
    )
    memory_format: Literal["auto", "contiguous", "channels_last"] = option(
        "auto",
        "layout of convolutional weights and activations: auto is channels_last for "
        "convolutional models on a CPU (oneDNN's native layout: 1.2–1.9x faster steps measured "
        "here) and contiguous elsewhere",
    )
    threads: int | None = option(
        None,
        "CPU threads (default: PyTorch's, from OMP_NUM_THREADS or the core count)",
        positive=True,
    )
    eval_batch_size: int = option(1000, "images per evaluation batch", positive=True, cli=False)

    def __post_init__(self) -> None:
        validate(self)
        if not re.fullmatch(DEVICE_PATTERN, self.device):
            raise UsageError(
                f"device: expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}"
            )
        if self.kl_warmup and self.kl_cycles:
            raise UsageError("kl_warmup and kl_cycles are alternatives: set one of them")

    def kl_weight(self, epoch: int, step_in_epoch: float = 0.0) -> float:
        """The factor (0..1) on β for this point in training; `epoch` counts from 0.

        Warm-up: min(1, t / E) with t = epoch + fraction of the epoch done (linear 0→β over E
        epochs). Cycles (Fu et al. 2019): training is split into C cycles; within each the weight
        rises linearly over the first half and stays at 1 for the second.
        """
        t = epoch + step_in_epoch
        if self.kl_warmup:
            return min(1.0, t / self.kl_warmup)
        if self.kl_cycles:
            period = self.epochs / self.kl_cycles
            phase = (t % period) / period
            return min(1.0, 2.0 * phase)
        return 1.0


def route_options(options: Mapping[str, Any], *classes: type) -> list[dict[str, Any]]:
    """Sort flat keyword options by config: one dict per class in `classes` (the first that has
    the field), and a last one with the rest. The one place options are routed."""
    fields = [{f.name for f in dataclasses.fields(cls)} for cls in classes]
    routed: list[dict[str, Any]] = [{} for _ in range(len(classes) + 1)]
    for key, value in options.items():
        index = next((i for i, names in enumerate(fields) if key in names), len(classes))
        routed[index][key] = value
    return routed


def split_options(options: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """Sort flat keyword options into (train, data, model): the model gets what is neither."""
    train, data, model = route_options(options, TrainConfig, DataConfig)
    return train, data, model
