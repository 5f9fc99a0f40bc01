"""Layout and scale of user arrays, decided from what is unambiguous or stated, never guessed.

Layouts: "nhw" (grey images), "nchw", "nhwc", "vectors" ([N, D]). Scales: uint8 0..255 and floats
in [0, 1] are pixels; data whose only values are 0 and 1 is binary (1 is full intensity); other
ranges need a stated scale ("minmax", "max:M", or "minmax-columns" per feature of vectors),
computed on the training part and recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aezoo.errors import UsageError

LAYOUTS = ("auto", "nchw", "nhwc", "vectors")
CHANNELS = (1, 3, 4)  # grey, RGB, RGBA (an opaque alpha is dropped; see drop_alpha)
STATE_LAYOUT = 'state it: layout="nchw"|"nhwc" (--layout nchw|nhwc)'


def check_values(x: np.ndarray, name: str) -> None:
    """Refuse empty, non-numeric and non-finite arrays."""
    if x.size == 0:
        raise UsageError(f"{name}: no images (shape {x.shape})")
    if x.dtype != np.bool_ and not (
        np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    ):
        raise UsageError(f"{name}: images must be uint8, integer or float, got {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise UsageError(f"{name}: images contain NaN or infinite values")


def decide_layout(shape: tuple[int, ...], layout: str, name: str) -> str:
    """'nhw', 'nchw', 'nhwc' or 'vectors' for an array of `shape`, with `layout` as stated."""
    if layout not in LAYOUTS:
        raise UsageError(f"layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    ndim = len(shape)
    if ndim == 2:
        if layout in ("auto", "vectors"):
            return "vectors"
        raise UsageError(f"{name}: shape {shape} is vectors [N, D], not {layout} images")
    if layout == "vectors":
        raise UsageError(f"{name}: layout='vectors' takes [N, D] rows, got shape {shape}")
    if ndim == 1:
        raise UsageError(
            f"{name}: a single vector is not a data set, got shape {shape}; add a batch axis "
            "(x[None]) for one row, or reshape(-1, 1) for N single values"
        )
    if ndim == 3:
        if layout == "nhwc":
            raise UsageError(
                f"{name}: shape {shape} under layout nhwc is a single image, not a data set; "
                "add a batch axis (x[None])"
            )
        if layout == "auto" and shape[2] in CHANNELS:
            raise UsageError(
                f"{name}: shape {shape} is ambiguous: one H×W×C image or {shape[0]} grey "
                f"{shape[1]}×{shape[2]} images; add a batch axis (x[None]) for one image, or "
                'state layout="nchw" (--layout nchw) for grey images [N, H, W]'
            )
        return "nhw"
    if ndim == 4:
        first, last = shape[1] in CHANNELS, shape[3] in CHANNELS
        if layout == "auto":
            if first and last:
                raise UsageError(
                    f"{name}: shape {shape} is ambiguous: channels could be axis 1 or axis 3; "
                    + STATE_LAYOUT
                )
            layout = "nchw" if first else "nhwc" if last else ""
        if layout == "nchw" and first:
            return "nchw"
        if layout == "nhwc" and last:
            return "nhwc"
    raise UsageError(
        f"{name}: expected images [N, H, W], [N, C, H, W] or [N, H, W, C] with C = 1 or 3 "
        f"(4: RGBA with an opaque alpha) or vectors [N, D], got shape {shape}"
        + ("" if layout == "auto" else f" under layout {layout}")
    )


def to_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    """`x` (already uint8) in [N, C, H, W]; vectors as [N, 1, 1, D]. Views where possible."""
    if layout == "nhw":
        return x[:, None]
    if layout == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if layout == "vectors":
        return x[:, None, None, :]
    return x


def drop_alpha(x: np.ndarray, name: str, given: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """uint8 [N, 4, H, W] → [N, 3, H, W] when the alpha channel is fully opaque (nothing lost);
    a transparent pixel is an error naming the `given` shape. Returns (images, whether an alpha
    channel was dropped)."""
    if x.shape[1] != 4:
        return x, False
    if not (x[:, 3] == 255).all():
        raise UsageError(
            f"{name}: 4 channels (RGBA) with transparent pixels, shape {given}: aezoo models "
            "take C = 1 or 3; composite the images on a background or drop the alpha channel "
            "yourself"
        )
    return np.ascontiguousarray(x[:, :3]), True


FITTED = ("max", "minmax", "minmax-columns")  # scales with parameters fitted on training data


@dataclass(frozen=True)
class Scale:
    """How values become uint8 pixels: 'uint8' (as is), 'unit' (floats in [0, 1]), 'binary'
    (0/1 → 0/255), 'max' (x / high), 'minmax' ((x - low) / (high - low)) or 'minmax-columns'
    (the same per feature of vectors: low and high are tuples)."""

    kind: str
    low: float | tuple[float, ...] = 0.0
    high: float | tuple[float, ...] = 1.0

    @classmethod
    def from_record(cls, record: dict) -> Scale:
        """The Scale a run recorded (see `record`), to read other data exactly as it was read."""
        low, high = record.get("low", 0.0), record.get("high", 1.0)
        if isinstance(low, list):  # minmax-columns: one low and high per feature
            return cls(str(record["kind"]), tuple(low), tuple(high))
        return cls(str(record["kind"]), float(low), float(high))

    def record(self) -> dict:
        """A JSON-able description (the parameters a run stores)."""
        out: dict = {"kind": self.kind}
        if self.kind in FITTED:
            out.update(low=_listed(self.low), high=_listed(self.high))
        return out

    def apply(self, x: np.ndarray, name: str, decided_on_x: bool = False) -> tuple[np.ndarray, int]:
        """(uint8 pixels, how many values were clipped into range) of any part of the data. The
        pixel scales (uint8, unit, binary) carry no parameters: each part is decided by the same
        rules (`decided_on_x`: this Scale was decided on `x` itself, skip the check); max and
        minmax apply the training part's parameters unchanged."""
        if self.kind in ("uint8", "unit", "binary"):
            own = self if decided_on_x else decide_scale(x, "auto", name)
            if own.kind == "uint8":
                return x, 0
            floats = x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)
            return np.rint(floats * 255).astype(np.uint8), 0  # [0, 1] or 0/1 → 0..255
        low, high = _range(x)
        if self.kind == "max" and (low < 0 or high > self.high):
            raise UsageError(
                f"{name}: values {low:g}..{high:g} do not lie in 0..{self.high:g} "
                f'(scale max:{self.high:g}); use scale="minmax" (--scale minmax) or a larger max'
            )
        low_, high_ = np.asarray(self.low), np.asarray(self.high)
        if self.kind == "minmax-columns" and (x.ndim != 2 or x.shape[1] != low_.size):
            raise UsageError(f"{name}: shape {x.shape} is not the training part's vectors")
        span = np.where(high_ > low_, high_ - low_, 1.0)  # a constant feature becomes 0
        unit = (np.asarray(x, dtype=np.float64) - low_) / span
        clipped = int(np.count_nonzero((unit < 0) | (unit > 1)))
        return np.rint(np.clip(unit, 0, 1) * 255).astype(np.uint8), clipped


def parse_scale(spec: str) -> str:
    """Check a scale spec ('auto', 'minmax', 'max:M' with M > 0); returns it unchanged."""
    if spec in ("auto", "minmax", "minmax-columns"):
        return spec
    kind, _, number = spec.partition(":")
    try:
        m = float(number)
    except ValueError:
        m = math.nan
    if kind != "max" or not (math.isfinite(m) and m > 0):
        raise UsageError(
            f"scale: expected auto, minmax, minmax-columns or max:M with M > 0, got {spec!r}"
        )
    return spec


def decide_scale(x: np.ndarray, spec: str, name: str) -> Scale:
    """The Scale for the training part `x` under `spec` (see parse_scale)."""
    parse_scale(spec)
    if spec.startswith("max:"):
        return Scale("max", 0.0, float(spec[4:]))
    if spec == "minmax-columns":
        if x.ndim != 2:
            raise UsageError(f"{name}: scale minmax-columns is for vectors [N, D], got {x.shape}")
        columns = np.asarray(x, dtype=np.float64)
        low_, high_ = columns.min(axis=0), columns.max(axis=0)
        return Scale("minmax-columns", tuple(low_.tolist()), tuple(high_.tolist()))
    if x.dtype == np.bool_:
        return Scale("binary")
    low, high = _range(x)
    if spec == "minmax":
        if high == low:
            raise UsageError(f"{name}: every value is {low:g}; scale minmax needs a range")
        return Scale("minmax", low, high)
    noun = "values" if x.ndim == 2 else "images"
    hint = 'scale="minmax" (--scale minmax)'
    if low >= 0 and high > 0:  # dividing by the largest value is an option only then
        hint = f'scale="max:{high:g}" (--scale max:{high:g}) or ' + hint
    if x.ndim == 2:
        hint += ', or per feature scale="minmax-columns"'
    if np.issubdtype(x.dtype, np.integer):
        if low >= 0 and high <= 1:
            return Scale("binary")
        if x.dtype == np.uint8:
            return Scale("uint8")
        raise UsageError(
            f"{name}: expected uint8 pixels 0..255, got {low:g}..{high:g} ({x.dtype} {noun}, "
            f"neither pixels nor 0/1); state the scale: {hint}"
        )
    if low < 0 or high > 1:
        raise UsageError(
            f"{name}: float {noun} must lie in [0, 1], got {low:g}..{high:g}; state the scale: "
            + hint
        )
    return Scale("binary" if ((x == 0) | (x == 1)).all() else "unit")


def _listed(value: float | tuple[float, ...]) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


def _range(x: np.ndarray) -> tuple[float, float]:
    return float(x.min()), float(x.max())
