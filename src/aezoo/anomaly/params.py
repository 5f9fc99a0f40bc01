"""The checks and choices behind `AnomalyDetector`'s parameters: validation in scikit-learn's
words, what "auto" picks for each input kind, and the options handed to the model."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from aezoo.errors import UsageError
from aezoo.models import MODELS, preset
from aezoo.models.protocols import GaussianLatent

SCORES = ("auto", "recon", "elbo", "nll", "latent", "combined")
IMAGE_MODEL = "dense-ae"  # the image default: the combined score (combined.py) on its codes
IMAGE_COMPONENTS = 50  # mixture components of the combined score
MIN_EPOCHS = 20  # epochs=None: tables train this many, images at least this many
MIN_STEPS = 4000  # epochs=None on images: at least 20 epochs and at least this many steps,
MAX_AUTO_EPOCHS = 200  # but no more passes than this over a small image set
SMALL_SET = 20_000  # fewer training images than this: moved in training, nudged for the mixture
SHIFT = 1  # a small image set's training images moved by up to this many pixels each way
MIN_SHIFT_SIDE = 16  # but not images narrower than this, where a pixel is a large move
LATENT_COMPONENTS = 10  # an explicit anomaly_score="latent" keeps its measured default
# Options a detector sets with its own parameters, or that mean nothing for an in-memory fit.
RESERVED_OPTIONS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "random_state",
    "device": "device",
    "dataset": None,
    "data_dir": None,
    "train_subset": None,
    "test_subset": None,
}


def python_scalar(value: Any) -> Any:
    """numpy scalars → Python numbers, so configs accept parameter grids built with numpy."""
    return value.item() if isinstance(value, np.generic) else value


def has_gaussian_latent(name: str) -> bool:
    """Whether a registered model has a Gaussian posterior q(z|x) (the GaussianLatent Protocol)."""
    return issubclass(preset(name).model, GaussianLatent)  # a Protocol of methods only


def posterior_models() -> list[str]:
    """Registered unconditional models with a posterior: those `elbo` and `nll` apply to."""
    return [
        n
        for n, p in MODELS.items()
        if has_gaussian_latent(n) and not p.options.get("num_classes", 0)
    ]


def plan(
    model: str | None, score: str, tabular: bool, components: int | None
) -> tuple[str | None, str, int]:
    """(model name, score, mixture components) that `auto` and None resolve to for the input kind:
    tables → the recipe (no registered model), images → dense-ae's combined score, 50 components."""
    if score == "auto" and tabular:
        if model is not None:
            raise UsageError(
                f"anomaly_score='auto' on tables is aezoo's tabular recipe, which trains its own "
                f"ensemble; to use {model!r}, name a score: 'recon', 'latent', 'elbo' or 'nll'"
            )
        return None, "recipe", 0
    if score == "combined" and tabular:
        raise UsageError(
            "anomaly_score='combined' is for images (its recon part is a share of the image's "
            "energy); on tables use 'auto', 'recon', 'latent', 'elbo' or 'nll'"
        )
    if score in ("auto", "combined"):
        return model or IMAGE_MODEL, "combined", components or IMAGE_COMPONENTS
    default_model = "dense-vae" if score in ("elbo", "nll") else IMAGE_MODEL
    return model or default_model, score, components or LATENT_COMPONENTS


def check_params(d: Any) -> None:
    """Every parameter of detector `d`, in scikit-learn's words."""
    name = type(d).__name__
    if d.model is not None:
        preset(d.model)  # an unknown name is an error listing the known ones
    if d.anomaly_score not in SCORES:
        raise UsageError(
            f"The 'anomaly_score' parameter of {name} must be one of "
            f"{', '.join(map(repr, SCORES))}. Got {d.anomaly_score!r} instead."
        )
    c = d.contamination
    if not isinstance(c, numbers.Real) or not 0.0 < c <= 0.5:
        raise UsageError(
            f"The 'contamination' parameter of {name} must be a float in the "
            f"range (0.0, 0.5]. Got {c!r} instead."
        )
    t = d.threshold_percentile
    if t is not None and (not isinstance(t, numbers.Real) or not 0.0 < t <= 100.0):
        raise UsageError(
            f"The 'threshold_percentile' parameter of {name} must be None or a "
            f"float in the range (0.0, 100.0]. Got {t!r} instead."
        )
    for param in ("epochs", "batch_size", "n_samples", "latent_components"):
        value = getattr(d, param)
        if param in ("latent_components", "epochs") and value is None:
            continue
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise UsageError(
                f"The '{param}' parameter of {name} must be an int in the "
                f"range [1, inf). Got {value!r} instead."
            )
    _check_model_options(d.model_options, name)


def _check_model_options(options: Any, name: str) -> None:
    if options is not None and not isinstance(options, Mapping):
        raise UsageError(
            f"The 'model_options' parameter of {name} must be a dict or None. "
            f"Got {options!r} instead."
        )
    for key in options or {}:
        if key in RESERVED_OPTIONS:
            param = RESERVED_OPTIONS[key]
            reason = (
                f"set it with the '{param}' parameter"
                if param
                else "the detector trains on the rows given to fit"
            )
            raise UsageError(f"model_options: {key!r} is not a model option ({reason})")


def auto_epochs(rows: int, batch_size: int, tabular: bool) -> int:
    """epochs=None: 20 passes on tables; on images enough passes for MIN_STEPS optimiser steps,
    at least 20 and at most 200: 20 epochs of a small image set leave its codes unsettled, and
    many more overfit them (docs/benchmarks.md, "Images")."""
    if tabular:
        return MIN_EPOCHS
    steps_per_epoch = max(1, math.ceil(rows / batch_size))
    return min(MAX_AUTO_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch)))


def auto_shift(rows: int, side: tuple[int, ...]) -> int:
    """The image default's training shift for `rows` training images of this (H, W): SHIFT pixels
    for a small set (fewer than SMALL_SET images), 0 for a larger one, whose own variety is
    enough (on MNIST's 48,600 it lowered the hold-out mean: docs/benchmarks.md) or for images
    narrower than MIN_SHIFT_SIDE."""
    return SHIFT if rows < SMALL_SET and min(side) >= MIN_SHIFT_SIDE else 0


def draw_seed(random_state: Any) -> int:
    """A non-negative int seed from random_state (int, RandomState or None)."""
    if isinstance(random_state, numbers.Integral) and random_state >= 0:
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def model_options(model: str, options: Mapping[str, Any] | None, tabular: bool) -> dict[str, Any]:
    """model_options, plus the Gaussian losses tabular data needs unless set there."""
    out = {k: python_scalar(v) for k, v in (options or {}).items()}
    fields = {f.name for f in dataclasses.fields(preset(model).config)}
    if tabular and "likelihood" in fields:
        out.setdefault("likelihood", "gaussian")
        out.setdefault("learn_sigma", True)
    if tabular and "loss" in fields:
        out.setdefault("loss", "mse")
    return out


def check_model(model: str, score: str, config: Any, tabular: bool) -> None:
    """The model can serve this input kind and score."""
    arch = getattr(config, "arch", None)
    if tabular and arch != "dense":
        dense = [n for n, p in MODELS.items() if p.options.get("arch") == "dense"]
        raise UsageError(
            f"tabular rows [N, D] need a dense model ({', '.join(dense)}); "
            f"{model} is {arch}. Images go in as [N, H, W], [N, C, H, W] or [N, H, W, C]"
        )
    if getattr(config, "num_classes", 0):
        raise UsageError(
            f"{model} is conditioned on labels, which an outlier detector "
            "does not have; use an unconditional model"
        )
    if score in ("elbo", "nll") and not has_gaussian_latent(model):
        raise UsageError(
            f"anomaly_score={score!r} needs a model with a posterior q(z|x) "
            f"({', '.join(posterior_models())}); {model} has none: use 'recon' or 'latent'"
        )
