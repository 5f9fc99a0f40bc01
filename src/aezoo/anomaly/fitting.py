"""Training a registered model inside `AnomalyDetector`, the fitted parts of its score (the latent
mixture) and the threshold on held-out rows; `rescore` swaps scores without training again."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from aezoo.anomaly import scoring
from aezoo.anomaly.combined import fit_combined, mixture_copies
from aezoo.anomaly.inputs import quantise
from aezoo.anomaly.params import (
    SMALL_SET,
    auto_epochs,
    auto_shift,
    check_model,
    check_params,
    model_options,
    plan,
    python_scalar,
)
from aezoo.data import Dataset, binarize_once
from aezoo.device import resolve_device
from aezoo.errors import UsageError
from aezoo.explore import fit_gmm
from aezoo.loop import fit as fit_loop
from aezoo.loop import make_optimizer
from aezoo.metrics import evaluator
from aezoo.models import preset
from aezoo.models.protocols import GaussianLatent
from aezoo.runs import check_shift, make_batches, make_spec

EVAL_ROWS = 1000  # training rows the training loop's per-epoch evaluation looks at
MAX_CODE_WIDTH = 1024  # a full-covariance mixture on wider codes would not fit in memory
HELD_OUT = 0.1  # share of the rows kept out of training, for the threshold
MIN_HELD_OUT = 50  # fewer held-out rows than this (a noisy quantile): every training row


def as_tensor(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def threshold_rows(n: int, seed: int) -> np.ndarray:
    """The seeded rows kept out of training for the threshold (empty for small data)."""
    count = round(HELD_OUT * n)
    if count < MIN_HELD_OUT:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).permutation(n)[:count])


def fit_model(d: Any, model: str, x: np.ndarray, tabular: bool) -> Any:
    """Train `model` on x (float32 (N, C, H, W)) but its held-out rows; then fit the score."""
    held = threshold_rows(len(x), d._seed)
    train_x = np.delete(x, held, axis=0)
    options = model_options(model, d.model_options, tabular)
    batch_size = min(python_scalar(d.batch_size), len(train_x))
    epochs = python_scalar(d.epochs)
    if d.anomaly_score_ == "combined":  # the image default's training (other scores: as measured)
        options.setdefault("shift", auto_shift(len(train_x), x.shape[-2:]))
    options.update(
        epochs=auto_epochs(len(train_x), batch_size, tabular) if epochs is None else epochs,
        batch_size=batch_size,
        seed=d._seed,
        device=d.device,
    )
    if d.lr is not None:
        options["lr"] = float(d.lr)
    data = Dataset(as_tensor(quantise(train_x)), None, "training rows")
    kind = "vectors" if tabular else "images"
    check_shift(options.get("shift", 0), replace(data, kind=kind), "model_options 'shift'")
    spec = make_spec(model, options, data)
    check_model(model, d.anomaly_score_, spec.model_config, tabular)
    device = resolve_device(spec.train.device)
    if spec.data.binarize == "static":
        data = binarize_once(data, seed=d._seed)
    train, evaluation = make_batches(
        spec, data, data.select(range(min(EVAL_ROWS, len(data)))), device
    )
    # The training loop reseeds the global RNG; leave the caller's generators as they were.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(d._seed)
        net = preset(spec.model).model(spec.model_config).to(device)
        records = fit_loop(
            net,
            make_optimizer(net, spec.train),
            train,
            evaluator(evaluation, seed=spec.train.seed),
            spec.train,
            quiet=True,
        )
    d.model_ = net.eval()
    d.loss_curve_ = [r["train_loss"] for r in records]
    d._threshold_rows, d._model_name, d._shift = held, model, spec.data.shift
    return fit_score(d, x)


def fit_score(d: Any, x: np.ndarray) -> Any:
    """The score's fitted parts (the latent mixture, on training rows) and the threshold (on the
    held-out rows when there are enough, else on every row)."""
    forget_score(d)  # a refit with another score drops the old
    held = d._threshold_rows
    train_x = np.delete(x, held, axis=0)
    reference = x[held] if len(held) else x
    if d.anomaly_score_ in ("latent", "combined"):
        codes = scoring.codes(d.model_, as_tensor(train_x))
        components = mixture_size(d, codes)
    if d.anomaly_score_ == "latent":
        d.latent_density_ = fit_gmm(codes, components, seed=d._seed)
    elif d.anomaly_score_ == "combined":  # fitting scores the reference images already
        # a small set moved in training: five codes per image pin the covariances down more
        copies, shrinkage = mixture_copies(train_x, bool(d._shift) and len(train_x) < SMALL_SET)
        codes = np.concatenate(
            [codes, *(scoring.codes(d.model_, as_tensor(n)) for n in copies[1:])]
        )
        d.combined_, anomaly = fit_combined(
            d.model_,
            codes,
            copies,
            as_tensor(reference),
            components,
            d._seed,
            aligned=bool(d._shift),
            shrinkage=shrinkage,
        )
        return d._set_offset(-anomaly)
    return d._set_offset(normality(d, reference))


def forget_score(d: Any) -> None:
    """Drop the fitted parts of a registered model's score (the mixture, the combined parts)."""
    for fitted in ("latent_density_", "combined_"):
        d.__dict__.pop(fitted, None)


def mixture_size(d: Any, codes: np.ndarray) -> int:
    """The mixture's components for these codes: an error for codes too wide for a full
    covariance, a warning (and one component per code) for fewer codes than components."""
    if codes.shape[1] > MAX_CODE_WIDTH:
        raise UsageError(
            f"anomaly_score={d.anomaly_score_!r} needs codes of at most {MAX_CODE_WIDTH} "
            f"values; {d._model_name}'s have {codes.shape[1]}"
        )
    components = d._components
    if components > len(codes):
        warnings.warn(
            f"latent_components ({components}) is greater than the number of "
            f"samples ({len(codes)}); using {len(codes)}",
            stacklevel=5,
        )
        components = len(codes)
    return components


def normality(d: Any, x: np.ndarray) -> np.ndarray:
    """score_samples of a registered model's input x."""
    t = as_tensor(x)
    if d.anomaly_score_ == "latent":
        return d.latent_density_.score_samples(scoring.codes(d.model_, t))
    if d.anomaly_score_ == "combined":
        return -d.combined_.anomaly(d.model_, t)
    return scoring.model_scores(d.model_, t, d.anomaly_score_, d.n_samples, d._seed)


SCORING_PARAMS = (
    "anomaly_score",
    "n_samples",
    "latent_components",
    "contamination",
    "threshold_percentile",
)


def rescore(detector: Any, X: Any, **params: Any) -> Any:
    """A fitted copy of `detector` that shares its trained model but scores with other scoring
    parameters (SCORING_PARAMS), e.g. rescore(d, X, anomaly_score="latent"); X is the training
    data, for the latent mixture and the threshold. The model is not trained again."""
    check_is_fitted(detector)
    other = sorted(set(params) - set(SCORING_PARAMS))
    if other:
        raise UsageError(f"rescore: {other[0]!r} changes the training; fit a new detector")
    if detector.model_ is None:
        raise UsageError("rescore: the tabular recipe has no registered model to rescore")
    new = clone(detector).set_params(**params)
    check_params(new)
    tabular = detector.scaler_ is not None
    if new.anomaly_score == "auto" and tabular:
        raise UsageError(
            "rescore: anomaly_score='auto' on tables is the recipe; fit a new detector"
        )
    _, score, components = plan(
        detector._model_name, new.anomaly_score, tabular, new.latent_components
    )
    if score in ("elbo", "nll") and not isinstance(detector.model_, GaussianLatent):
        raise UsageError(f"anomaly_score={score!r} needs a model with a posterior")
    for attr in (
        "model_",
        "scaler_",
        "n_features_in_",
        "loss_curve_",
        "_seed",
        "_threshold_rows",
        "_model_name",
        "_shift",
    ):
        setattr(new, attr, getattr(detector, attr))
    new.ensemble_ = None
    new.anomaly_score_, new._components = score, components
    if hasattr(detector, "feature_names_in_"):
        new.feature_names_in_ = detector.feature_names_in_
    return fit_score(new, new._input(X, reset=False))
