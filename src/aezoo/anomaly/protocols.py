"""The anomaly-detection protocols on `AnomalyDetector`: MNIST with one digit held out, the MNIST
one-class benchmark (Ruff et al. 2018); tabular rows are tabular_protocol.py's.

Each takes flat options as `aezoo train` does (`detector_params` sorts them into the detector's
parameters and its model options), trains each model once and derives every requested score from
that one training (`rescore`), and returns a JSON-ready dict; with `out`, it also writes files.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aezoo.anomaly.evaluation import (
    applicable_scores,
    check_shared_options,
    detection_metrics,
    detector_params,
    fit_detectors,
    jsonable,
    say,
)
from aezoo.anomaly.figures import roc_figure, score_histogram, top_anomalies_figure
from aezoo.data import Dataset, load_dataset
from aezoo.errors import UsageError
from aezoo.io import atomic_write, write_json
from aezoo.models import preset
from aezoo.viz import save_figure


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


def mnist_holdout(
    anomaly: int = 9,
    *,
    model: str | None = None,
    scores: Sequence[str] = ("auto",),
    out: str | Path | None = None,
    quiet: bool = False,
    top_k: int = 16,
    **options: Any,
) -> dict[str, Any]:
    """Train on every digit but `anomaly`, score the test set: normal digits vs the held-out one.

    Returns AUROC, average precision and the confusion at the detector's threshold per score;
    with `out`, also writes results.json and figures there: ROC curves, score histograms, and
    the `top_k` most anomalous test images under the first score beside their anomaly maps.
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
        "model": model or "auto",
        **{"train_images": len(normal), "test_images": len(test)},
        "test_anomalies": int(is_anomaly.sum()),
        **{"train_seconds": round(seconds, 3), "params": jsonable(params), "scores": {}},
    }
    curves = {}
    for score, detector in detectors.items():
        anomaly_scores = -detector.score_samples(test.images.numpy())
        metrics = detection_metrics(
            is_anomaly, anomaly_scores, anomaly_scores > detector.threshold_
        )
        result["scores"][score] = {**metrics, "threshold": detector.threshold_}
        curves[score] = (is_anomaly, anomaly_scores, detector.threshold_)
        say(
            quiet,
            f"holdout {anomaly}: {model} {score}: AUROC {metrics['auroc']:.4f}, "
            f"AP {metrics['average_precision']:.4f}",
        )
    if out is not None:
        write_holdout(Path(out), result, curves)
        first = next(iter(detectors))
        path = Path(out) / "figures" / "top_anomalies.png"
        write_top_anomalies(path, detectors[first], test.images.numpy(), curves[first][1], top_k)
    return result


def write_top_anomalies(
    path: Path, detector: Any, images: np.ndarray, anomaly_scores: np.ndarray, k: int
) -> Path:
    """The k most anomalous images (uint8 [N, C, H, W]) beside their anomaly maps, as a PNG."""
    if k < 1:
        raise UsageError(f"top_k: expected a positive number of images, got {k}")
    top = np.argsort(-anomaly_scores, kind="stable")[:k]
    maps = detector.anomaly_map(images[top])  # (k, C, H, W), the layout given
    figure = top_anomalies_figure(
        images[top] / 255.0, maps, anomaly_scores[top], title="most anomalous test images, |x − x̂|²"
    )
    save_figure(figure, path)
    return path


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
    scores: Sequence[str] = ("auto",),
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
    check_shared_options(models, options)
    if not any(applicable_scores(m, scores) for m in models):
        raise UsageError(f"none of the models can give the scores {', '.join(scores)}")
    auroc: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    for model in models:
        params = detector_params(model, options, strict=False)
        model_scores = applicable_scores(model, scores)
        if not model_scores:
            continue
        started = time.perf_counter()
        parts = (train, test, options.get("train_subset"))
        auroc[model] = _one_class_model(model, model_scores, digits, parts, params, quiet)
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
        "options": jsonable(options),
    }
    result["table"] = one_class_table(result)
    if out is not None:
        write_json(Path(out) / "one_class.json", result)
        atomic_write(Path(out) / "one_class.md", (result["table"] + "\n").encode())
    return result


def _one_class_model(
    model: str,
    scores: Sequence[str],
    digits: Sequence[int],
    parts: tuple[Dataset, Dataset, int | None],
    params: Mapping[str, Any],
    quiet: bool,
) -> dict[str, dict[str, float]]:
    """{score: {digit: AUROC}} of one model, trained once per digit on that digit alone; parts:
    (train, test, training images per digit or None for all)."""
    train, test, subset = parts
    auroc: dict[str, dict[str, float]] = {s: {} for s in scores}
    for digit in digits:
        normal = _subset(train.select(train.labels == digit), subset)
        detectors = fit_detectors(model, scores, normal.images.numpy(), params)
        is_anomaly = (test.labels != digit).numpy()
        for score, detector in detectors.items():
            anomaly_scores = -detector.score_samples(test.images.numpy())
            no_flags = np.zeros(len(test), bool)
            auroc[score][str(digit)] = detection_metrics(is_anomaly, anomaly_scores, no_flags)[
                "auroc"
            ]
        say(
            quiet,
            f"one-class {digit}: {model} "
            + ", ".join(f"{s} {auroc[s][str(digit)]:.4f}" for s in scores),
        )
    return auroc


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
