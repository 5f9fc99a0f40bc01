"""The tabular protocol: fit on rows with or without labels (a seeded stratified split), AUROC and
the confusion at the threshold, scores written beside the results."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.validation import check_array

from aezoo.anomaly.evaluation import (
    detection_metrics,
    detector_params,
    fit_detectors,
    jsonable,
    say,
)
from aezoo.data import check_npz_size
from aezoo.data.tables import read_table
from aezoo.errors import UsageError
from aezoo.io import atomic_write, write_json


def read_rows(path: str | Path, label_column: str | None = None) -> dict[str, np.ndarray]:
    """x [N, D] and optional y (1 = anomaly, 0 = normal) from a .csv/.tsv/.parquet table (the
    data layer's reader; `label_column` names the labels) or an .npz (load_tabular)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        if label_column is not None:
            raise UsageError(f"{path}: --label-column is for tables; an .npz holds x and y")
        return load_tabular(path)
    if path.suffix.lower() not in (".csv", ".tsv", ".parquet"):
        raise UsageError(f"{path}: expected a .csv, .tsv, .parquet or .npz file")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    raw = read_table(path, label_column)
    arrays = {"x": np.asarray(raw.x, dtype=np.float64)}
    if raw.y is not None:
        if raw.classes:
            raise UsageError(
                f"{path}: label column {label_column!r} holds text ({', '.join(raw.classes[:4])}); "
                "it must hold 0 (normal) or 1 (anomaly)"
            )
        arrays["y"] = raw.y
    return arrays


def load_tabular(path: str | Path) -> dict[str, np.ndarray]:
    """x [N, D] and optional y (1 = anomaly, 0 = normal), x_test, y_test from an .npz file."""
    path = Path(path)
    if path.is_file():
        check_npz_size(path)  # refused before numpy allocates what the headers announce
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


def _parts(
    x: Any, y: Any, x_test: Any, y_test: Any, test_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(training rows, test rows, training labels, test labels or None) as evaluate_tabular
    describes."""
    x = _rows(x, "x")
    labelled = y is not None
    if x_test is not None:
        x_eval = _rows(x_test, "x_test")
        train_anomaly = _labels(y, len(x), "y") if labelled else np.zeros(len(x), bool)
        eval_anomaly = None if y_test is None else _labels(y_test, len(x_eval), "y_test")
        return x, x_eval, train_anomaly, eval_anomaly
    if labelled:
        is_anomaly = _labels(y, len(x), "y")
        train_rows, test_rows = split_rows(is_anomaly, test_fraction, split_seed)
        return x[train_rows], x[test_rows], is_anomaly[train_rows], is_anomaly[test_rows]
    return x, x, np.zeros(len(x), bool), None


def evaluate_tabular(
    x: Any,
    y: Any = None,
    *,
    x_test: Any = None,
    y_test: Any = None,
    model: str | None = None,
    scores: Sequence[str] = ("auto",),
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
    x_train, x_eval, train_anomaly, eval_anomaly = _parts(
        x, y, x_test, y_test, test_fraction, split_seed
    )
    if fit_on == "normal":
        x_train = x_train[~train_anomaly]
    params = detector_params(model, options)
    started = time.perf_counter()
    detectors = fit_detectors(model, list(scores), x_train, params)
    result: dict[str, Any] = {
        "protocol": "tabular",
        "model": model or "auto",
        "fit_on": fit_on,
        "train_rows": len(x_train),
        "test_rows": len(x_eval),
        "train_seconds": round(time.perf_counter() - started, 3),
        "test_anomalies": None if eval_anomaly is None else int(eval_anomaly.sum()),
        "params": jsonable(params),
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
            say(quiet, f"tabular: {model} {score}: AUROC {entry['auroc']:.4f}")
        result["scores"][score] = entry
    if out is not None:
        write_json(Path(out) / "results.json", result)
        buffer = io.BytesIO()
        np.savez(buffer, **test_scores)
        atomic_write(Path(out) / "scores.npz", buffer.getvalue())
    return result
