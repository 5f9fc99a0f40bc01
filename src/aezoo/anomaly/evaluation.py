"""What the anomaly protocols share: flat options sorted into detector parameters, one training
shared by several scores, and the detection metrics."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from aezoo.anomaly.detector import AnomalyDetector
from aezoo.anomaly.fitting import rescore
from aezoo.anomaly.params import IMAGE_MODEL, has_gaussian_latent, python_scalar
from aezoo.config import DataConfig, TrainConfig
from aezoo.errors import UsageError
from aezoo.models import preset

DATA_OPTIONS = ("dataset", "data_dir", "train_subset", "test_subset")
RECIPE_PARAMS = ("contamination", "threshold_percentile", "random_state")
DETECTOR_PARAMS = (
    "contamination",
    "threshold_percentile",
    "epochs",
    "batch_size",
    "lr",
    "n_samples",
    "latent_components",
    "random_state",
    "device",
)


def detector_params(
    model: str, options: Mapping[str, Any], *, strict: bool = True
) -> dict[str, Any]:
    """Flat options (as the CLI gives them) → AnomalyDetector parameters, model_options included.

    `seed` is the detector's random_state; the data set options are the protocol's, not the
    detector's. With strict=False, model options the model's config lacks are dropped (one option
    list shared by several models)."""
    params: dict[str, Any] = {"device": "auto", "random_state": 0}  # seeded by default
    config = preset(model or IMAGE_MODEL).config
    model_options = dict(options.get("model_options") or {})
    known = (
        {f.name for f in dataclasses.fields(config)}
        | {f.name for f in dataclasses.fields(TrainConfig)}
        | {f.name for f in dataclasses.fields(DataConfig)}
    )
    for key, value in options.items():
        if key in DETECTOR_PARAMS:
            params[key] = value
        elif key == "seed":
            params["random_state"] = value
        elif key not in (*DATA_OPTIONS, "model_options") and (strict or key in known):
            model_options[key] = value
    if model_options:
        params["model_options"] = model_options
    return params


def check_shared_options(models: Sequence[str], options: Mapping[str, Any]) -> None:
    """Every model option must apply to at least one of `models` (else it is a typo)."""
    for key in options:
        if key in (*DETECTOR_PARAMS, *DATA_OPTIONS, "seed", "model_options"):
            continue
        if not any(
            "model_options" in detector_params(m, {key: None}, strict=False) for m in models
        ):
            raise UsageError(f"option {key!r} applies to none of the models {', '.join(models)}")


def fit_detectors(
    model: str | None, scores: Sequence[str], x: Any, params: Mapping[str, Any]
) -> dict[str, AnomalyDetector]:
    """One detector per score: {score: fitted detector}. The scores of a registered model share
    one trained model; "auto" on tables (the recipe) is fitted on its own."""
    if not scores:
        raise UsageError("name at least one anomaly score")
    tabular = np.ndim(x) <= 2
    given = [k for k in params if k not in (*RECIPE_PARAMS, "device", "model_options")]
    names = ", ".join([*given, *(params.get("model_options") or {})])
    if tabular and set(scores) == {"auto"} and names:  # never silently ignored
        raise UsageError(
            f"options ({names}) apply to a registered model's scores (recon, latent, elbo, "
            "nll); the tabular default (score auto) trains its own ensemble"
        )
    out: dict[str, AnomalyDetector] = {}
    first: AnomalyDetector | None = None
    for score in scores:
        if score == "auto" and tabular:
            recipe = {k: v for k, v in params.items() if k in RECIPE_PARAMS}
            out[score] = AnomalyDetector(model, anomaly_score="auto", **recipe).fit(x)
        elif first is None:
            first = out[score] = AnomalyDetector(model, anomaly_score=score, **params).fit(x)
        else:
            out[score] = rescore(first, x, anomaly_score=score)
    return out


def applicable_scores(model: str, scores: Sequence[str]) -> list[str]:
    """The scores a model can give: elbo and nll need a posterior."""
    return [s for s in scores if s not in ("elbo", "nll") or has_gaussian_latent(model)]


def detection_metrics(
    is_anomaly: np.ndarray, anomaly_scores: np.ndarray, flagged: np.ndarray
) -> dict[str, Any]:
    """AUROC and average precision (anomalies positive), and the confusion at the threshold."""
    is_anomaly, flagged = np.asarray(is_anomaly, bool), np.asarray(flagged, bool)
    tp, fp = int((flagged & is_anomaly).sum()), int((flagged & ~is_anomaly).sum())
    fn, tn = int((~flagged & is_anomaly).sum()), int((~flagged & ~is_anomaly).sum())
    return {
        "auroc": float(roc_auc_score(is_anomaly, anomaly_scores)),
        "average_precision": float(average_precision_score(is_anomaly, anomaly_scores)),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "precision": tp / max(1, tp + fp),
        "recall": tp / max(1, tp + fn),
    }


def say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def jsonable(value: Any) -> Any:
    """Options as JSON values: tuples → lists, numpy scalars → numbers, other objects → repr."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    value = python_scalar(value)
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)
