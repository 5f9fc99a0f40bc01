"""What `AnomalyDetector` takes in: tables [N, D] as float rows, images through the data layer's
layout and scale decisions ([N, H, W], [N, C, H, W] or channels-last [N, H, W, C]; ambiguous shapes
are refused, never guessed)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_array

from aezoo.data.decide import check_values, decide_layout, decide_scale, drop_alpha, to_nchw
from aezoo.errors import UsageError

MIN_SAMPLES = 2  # standardisation and a training batch need two rows at least
TABULAR_RANGE = 4.0  # standard deviations mapped onto [0, 1] either side of the mean


def table_values(z: np.ndarray) -> np.ndarray:
    """Standardised rows z → values u = ½ + z/8 (±4σ span [0, 1], the decoder's sigmoid range),
    float32 (N, 1, 1, D); exact and unclipped, so a far outlier keeps a growing error."""
    u = 0.5 + z / (2 * TABULAR_RANGE)
    return u.astype(np.float32)[:, None, None, :]


def quantise(u: np.ndarray) -> np.ndarray:
    """Values u in [0, 1] (clipped there) as the batch iterator's uint8 training pixels."""
    return np.rint(np.clip(u, 0.0, 1.0) * 255).astype(np.uint8)


def input_ndim(X: Any) -> int:
    """The number of axes of X without copying it (lists become arrays)."""
    return X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim


def image_pixels(X: Any, layout: str, reset: bool) -> tuple[np.ndarray, str]:
    """(uint8 pixels [N, C, H, W], the decided layout) of images X.

    Layout and scale are decided by aezoo.data (uint8 0..255, floats in [0, 1], 0/1 data);
    anything else is an error saying how to state it."""
    images = check_array(
        X,
        allow_nd=True,
        dtype=None,
        ensure_all_finite=False,
        ensure_min_samples=MIN_SAMPLES if reset else 1,
    )
    check_values(images, "X")
    decided = decide_layout(images.shape, layout, "X")
    if decided == "vectors":
        raise UsageError(f"X: expected images, got rows of shape {images.shape}")
    pixels, _ = decide_scale(images, "auto", "X").apply(images, "X", decided_on_x=True)
    pixels, _ = drop_alpha(to_nchw(pixels, decided), "X", images.shape)
    return np.ascontiguousarray(pixels), decided


def in_layout(maps: np.ndarray, layout: str) -> np.ndarray:
    """Per-pixel maps [N, C, H, W] back in the layout the images came in."""
    if layout == "nhw":
        return maps[:, 0]
    if layout == "nhwc":
        return maps.transpose(0, 2, 3, 1)
    return maps
