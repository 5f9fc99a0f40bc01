"""The anomaly-detection protocols on `AnomalyDetector`: MNIST with one digit held out, the MNIST
one-class benchmark (Ruff et al. 2018), and tabular rows with or without labels.

Each takes flat options as `aezoo train` does (`detector_params` sorts them into the detector's
parameters and its model options), trains each model once and derives every requested score from
that one training (`rescore`), and returns a JSON-ready dict; with `out`, it also writes files.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.utils.validation import check_array

from aezoo.anomaly.detector import AnomalyDetector, has_posterior, python_scalar, rescore
from aezoo.anomaly.figures import roc_figure, score_histogram
from aezoo.config import DataConfig, TrainConfig
from aezoo.data import Dataset, load_dataset
from aezoo.errors import UsageError
from aezoo.io import atomic_write, write_json
from aezoo.models import preset
from aezoo.viz import save_figure

DATA_OPTIONS = ("dataset", "data_dir", "train_subset", "test_subset")
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
    params: dict[str, Any] = {"device": "auto"}
    model_options = dict(options.get("model_options") or {})
    known = (
        {f.name for f in dataclasses.fields(preset(model).config)}
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


def _check_shared_options(models: Sequence[str], options: Mapping[str, Any]) -> None:
    """Every model option must apply to at least one of `models` (else it is a typo)."""
    for key in options:
        if key in (*DETECTOR_PARAMS, *DATA_OPTIONS, "seed", "model_options"):
            continue
        if not any(
            "model_options" in detector_params(m, {key: None}, strict=False) for m in models
        ):
            raise UsageError(f"option {key!r} applies to none of the models {', '.join(models)}")


def fit_detectors(
    model: str, scores: Sequence[str], images: Any, params: Mapping[str, Any]
) -> dict[str, AnomalyDetector]:
    """One detector per score, sharing one trained model: {score: fitted detector}."""
    if not scores:
        raise UsageError("name at least one anomaly score")
    first = AnomalyDetector(model, anomaly_score=scores[0], **params).fit(images)
    return {s: first if s == scores[0] else rescore(first, images, anomaly_score=s) for s in scores}


def applicable_scores(model: str, scores: Sequence[str]) -> list[str]:
    """The scores a model can give: elbo and nll need a posterior."""
    return [s for s in scores if s not in ("elbo", "nll") or has_posterior(preset(model).model)]


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


def _load_images(options: Mapping[str, Any]) -> tuple[Dataset, Dataset]:
    dataset = options.get("dataset", "mnist")
    train = load_dataset(dataset, "train", data_dir=options.get("data_dir"))
    test = load_dataset(dataset, "test", data_dir=options.get("data_dir"))
    if train.labels is None or test.labels is None:
        raise UsageError(f"{dataset}: the image protocols need labelled train and test images")
    if options.get("test_subset") is not None:
        test = test.subset(options["test_subset"], seed=0)
    return train, test


def _subset(data: Dataset, n: int | None) -> Dataset:
    return data if n is None else data.subset(n, seed=0)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def mnist_holdout(
    anomaly: int = 9,
    *,
    model: str = "dense-vae",
    scores: Sequence[str] = ("recon",),
    out: str | Path | None = None,
    quiet: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Train on every digit but `anomaly`, score the test set: normal digits vs the held-out one.

    Returns AUROC, average precision and the confusion at the detector's threshold per score;
    with `out`, also writes results.json and figures (ROC curves, score histograms) there.
    Options: dataset, data_dir, train_subset, test_subset, detector parameters, model options.
    """
    train, test = _load_images(options)
    digits = sorted(set(train.labels.tolist()))
    if anomaly not in digits:
        raise UsageError(f"anomaly: expected one of the labels {digits}, got {anomaly}")
    normal = _subset(train.select(train.labels != anomaly), options.get("train_subset"))
    params = detector_params(model, options)
    started = time.perf_counter()
    detectors = fit_detectors(model, list(scores), normal.images.numpy(), params)
    seconds = time.perf_counter() - started
    is_anomaly = (test.labels == anomaly).numpy()
    result: dict[str, Any] = {
        "protocol": "mnist-holdout",
        "dataset": options.get("dataset", "mnist"),
        "anomaly": anomaly,
        "model": model,
        "train_images": len(normal),
        "test_images": len(test),
        "test_anomalies": int(is_anomaly.sum()),
        "train_seconds": round(seconds, 3),
        "params": _jsonable(params),
        "scores": {},
    }
    curves = {}
    for score, detector in detectors.items():
        anomaly_scores = -detector.score_samples(test.images.numpy())
        metrics = detection_metrics(
            is_anomaly, anomaly_scores, anomaly_scores > detector.threshold_
        )
        result["scores"][score] = {**metrics, "threshold": detector.threshold_}
        curves[score] = (is_anomaly, anomaly_scores, detector.threshold_)
        _say(
            quiet,
            f"holdout {anomaly}: {model} {score}: AUROC {metrics['auroc']:.4f}, "
            f"AP {metrics['average_precision']:.4f}",
        )
    if out is not None:
        write_holdout(Path(out), result, curves)
    return result


def write_holdout(
    out: Path, result: Mapping[str, Any], curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]
) -> list[Path]:
    """results.json, figures/roc.png and figures/scores_<score>.png of a hold-out run."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "figures" / "roc.png"]
    write_json(paths[0], result)
    save_figure(
        roc_figure(
            {s: (y, a) for s, (y, a, _) in curves.items()},
            title=f"{result['model']}, digit {result['anomaly']} held out",
        ),
        paths[1],
    )
    for score, (is_anomaly, anomaly_scores, threshold) in curves.items():
        paths.append(out / "figures" / f"scores_{score}.png")
        save_figure(
            score_histogram(
                anomaly_scores[~is_anomaly],
                anomaly_scores[is_anomaly],
                threshold,
                xlabel=f"anomaly score ({score})",
                labels=("normal digits", f"digit {result['anomaly']}"),
            ),
            paths[-1],
        )
    return paths


def mnist_one_class(
    models: Sequence[str] = ("dense-ae", "conv-ae", "dense-vae", "conv-vae"),
    *,
    digits: Iterable[int] = range(10),
    scores: Sequence[str] = ("recon",),
    out: str | Path | None = None,
    quiet: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """The one-class benchmark (Ruff et al. 2018): for each digit c, train on the training images
    of c only, score the whole test set, AUROC with c as normal. A score a model cannot give
    (elbo, nll without a posterior) is left out for it. With `out`, writes one_class.json and
    one_class.md there. Options as for `mnist_holdout`; train_subset is per digit."""
    train, test = _load_images(options)
    digits = list(digits)
    unknown = sorted(set(digits) - set(train.labels.tolist()))
    if unknown:
        raise UsageError(f"digits: {unknown} are not labels of the data set")
    models = list(models)
    for model in models:
        preset(model)
    _check_shared_options(models, options)
    if not any(applicable_scores(m, scores) for m in models):
        raise UsageError(f"none of the models can give the scores {', '.join(scores)}")
    auroc: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    for model in models:
        params = detector_params(model, options, strict=False)
        model_scores = applicable_scores(model, scores)
        if not model_scores:
            continue
        auroc[model] = {s: {} for s in model_scores}
        started = time.perf_counter()
        for digit in digits:
            normal = _subset(train.select(train.labels == digit), options.get("train_subset"))
            detectors = fit_detectors(model, model_scores, normal.images.numpy(), params)
            is_anomaly = (test.labels != digit).numpy()
            for score, detector in detectors.items():
                value = detection_metrics(
                    is_anomaly,
                    -detector.score_samples(test.images.numpy()),
                    np.zeros(len(test), bool),
                )["auroc"]
                auroc[model][score][str(digit)] = value
            _say(
                quiet,
                f"one-class {digit}: {model} "
                + ", ".join(f"{s} {auroc[model][s][str(digit)]:.4f}" for s in model_scores),
            )
        seconds[model] = round(time.perf_counter() - started, 3)
    result = {
        "protocol": "mnist-one-class",
        "dataset": options.get("dataset", "mnist"),
        "digits": digits,
        "test_images": len(test),
        "train_subset": options.get("train_subset"),
        "auroc": auroc,
        "mean": {
            m: {s: float(np.mean(list(v.values()))) for s, v in per.items()}
            for m, per in auroc.items()
        },
        "train_seconds": seconds,
        "options": _jsonable(options),
    }
    result["table"] = one_class_table(result)
    if out is not None:
        write_json(Path(out) / "one_class.json", result)
        atomic_write(Path(out) / "one_class.md", (result["table"] + "\n").encode())
    return result


def one_class_table(result: Mapping[str, Any]) -> str:
    """Markdown: one row per model and score, one column per digit, and the mean."""
    digits = [str(d) for d in result["digits"]]
    lines = [
        "| model | score | " + " | ".join(digits) + " | mean |",
        "|---|---|" + "---:|" * (len(digits) + 1),
    ]
    for model, per_score in result["auroc"].items():
        for score, values in per_score.items():
            cells = [f"{values[d]:.3f}" for d in digits]
            lines.append(
                f"| {model} | {score} | "
                + " | ".join(cells)
                + f" | **{result['mean'][model][score]:.3f}** |"
            )
    return "\n".join(lines)


def load_tabular(path: str | Path) -> dict[str, np.ndarray]:
    """x [N, D] and optional y (1 = anomaly, 0 = normal), x_test, y_test from an .npz file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("x", "y", "x_test", "y_test") if k in npz.files}
            names = ", ".join(npz.files) or "nothing"
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"{path}: not a readable .npz of numeric arrays ({err})") from None
    if "x" not in arrays:
        raise UsageError(f"{path}: no array 'x' of rows [N, D]; it holds {names}")
    if ("x_test" in arrays) != ("y_test" in arrays) and "x_test" in arrays and "y" in arrays:
        raise UsageError(f"{path}: x_test needs its labels y_test")
    x, x_test = arrays["x"], arrays.get("x_test")
    if x_test is not None and x.ndim == 2 and (x_test.ndim != 2 or x_test.shape[1] != x.shape[1]):
        raise UsageError(f"{path}: x_test has shape {x_test.shape}; its rows need x's {x.shape[1]}")
    return arrays


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise UsageError(f"{name}: expected {n} labels, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise UsageError(
            f"{name}: labels must be 0 (normal) or 1 (anomaly), got "
            f"{sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}"
        )
    return y.astype(bool)


def _rows(x: Any, name: str) -> np.ndarray:
    """Tabular rows checked as scikit-learn does, its complaint turned into a UsageError."""
    try:
        return check_array(x, dtype=np.float64)
    except ValueError as err:
        raise UsageError(f"{name}: {err}") from None


def split_rows(
    is_anomaly: np.ndarray, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of row indices into (train, test): `test_fraction` of the normal
    rows and of the anomalies go to test."""
    if not 0.0 < test_fraction < 1.0:
        raise UsageError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in (False, True):
        rows = rng.permutation(np.flatnonzero(is_anomaly == label))
        cut = round(test_fraction * len(rows))
        test.append(rows[:cut])
        train.append(rows[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def evaluate_tabular(
    x: Any,
    y: Any = None,
    *,
    x_test: Any = None,
    y_test: Any = None,
    model: str = "dense-ae",
    scores: Sequence[str] = ("recon",),
    fit_on: str = "normal",
    test_fraction: float = 0.5,
    split_seed: int = 0,
    out: str | Path | None = None,
    quiet: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Fit on tabular rows and report AUROC where labels say which rows are anomalies.

    With x_test: fit on x, test on x_test/y_test. Else with y: a seeded stratified split
    (`test_fraction` to test). Without labels: fit on and score every row. fit_on="normal" trains
    on the normal training rows only, "all" on every training row (unsupervised). With `out`,
    writes results.json and scores.npz (the test rows' anomaly scores) there.
    """
    if fit_on not in ("normal", "all"):
        raise UsageError(f"fit_on: expected 'normal' or 'all', got {fit_on!r}")
    x = _rows(x, "x")
    labelled = y is not None
    if x_test is not None:
        x_train, x_eval = x, _rows(x_test, "x_test")
        train_anomaly = _labels(y, len(x), "y") if labelled else np.zeros(len(x), bool)
        eval_anomaly = None if y_test is None else _labels(y_test, len(x_eval), "y_test")
    elif labelled:
        is_anomaly = _labels(y, len(x), "y")
        train_rows, test_rows = split_rows(is_anomaly, test_fraction, split_seed)
        x_train, x_eval = x[train_rows], x[test_rows]
        train_anomaly, eval_anomaly = is_anomaly[train_rows], is_anomaly[test_rows]
    else:
        x_train, x_eval, train_anomaly, eval_anomaly = x, x, np.zeros(len(x), bool), None
    if fit_on == "normal":
        x_train = x_train[~train_anomaly]
    params = detector_params(model, options)
    started = time.perf_counter()
    detectors = fit_detectors(model, list(scores), x_train, params)
    result: dict[str, Any] = {
        "protocol": "tabular",
        "model": model,
        "fit_on": fit_on,
        "train_rows": len(x_train),
        "test_rows": len(x_eval),
        "train_seconds": round(time.perf_counter() - started, 3),
        "test_anomalies": None if eval_anomaly is None else int(eval_anomaly.sum()),
        "params": _jsonable(params),
        "scores": {},
    }
    test_scores = {}
    for score, detector in detectors.items():
        anomaly_scores = -detector.score_samples(x_eval)
        flagged = anomaly_scores > detector.threshold_
        test_scores[score] = anomaly_scores
        entry: dict[str, Any] = {"threshold": detector.threshold_, "flagged": int(flagged.sum())}
        if eval_anomaly is not None and 0 < eval_anomaly.sum() < len(eval_anomaly):
            entry.update(detection_metrics(eval_anomaly, anomaly_scores, flagged))
            _say(quiet, f"tabular: {model} {score}: AUROC {entry['auroc']:.4f}")
        result["scores"][score] = entry
    if out is not None:
        write_json(Path(out) / "results.json", result)
        buffer = io.BytesIO()
        np.savez(buffer, **test_scores)
        atomic_write(Path(out) / "scores.npz", buffer.getvalue())
    return result


def _jsonable(value: Any) -> Any:
    """Options as JSON values: tuples → lists, numpy scalars → numbers, other objects → repr."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    value = python_scalar(value)
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)
