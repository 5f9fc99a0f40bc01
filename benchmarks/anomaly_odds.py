"""`benchmarks/anomaly.py --parts odds`: the six ODDS tables in ../shared/data/odds (its README's
protocol: stratified 60/40 splits, seeds 0–4, fit on all training rows unlabelled, outliers
included; test AUROC, outliers positive), every method on the same splits in one run:

  aezoo default       AnomalyDetector() (the tabular recipe), random_state = seed
  ablation            the same recipe with the autoencoders taken out (its IsolationForest alone)
  aezoo <model> <s>   each other aezoo score: dense-ae recon/latent, dense-vae recon/elbo/nll
                      (one training per model, default epochs)
  IsolationForest     scikit-learn defaults, random_state = seed
  LOF                 LocalOutlierFactor(novelty=True) on standardised columns
  ECOD, KNN           PyOD's, when pyod is importable (never required)

Also the threshold: the flagged share of the test *normal* rows for the default fitted on the
normal training rows at contamination 0.05 and 0.1 (target: within ×1.5 of c).
Writes benchmarks/results/anomaly-odds.{json,md}.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import StandardScaler

import aezoo
from aezoo import AnomalyDetector
from aezoo.anomaly import rescore
from aezoo.anomaly.tabular import TabularEnsemble
from aezoo.device import machine

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data/odds from the repository root (a worktree one level deeper: ../../shared);
# ODDS_DIR overrides.
ODDS = next(
    (
        p
        for p in (
            Path(os.environ.get("ODDS_DIR", ROOT / "no-odds")),
            ROOT.parent / "shared" / "data" / "odds",
            ROOT.parent.parent / "shared" / "data" / "odds",
        )
        if p.is_dir()
    ),
    ROOT.parent / "shared" / "data" / "odds",
)
RESULTS = ROOT / "benchmarks" / "results"
SEEDS = range(5)
MODEL_SCORES = {"dense-ae": ("recon", "latent"), "dense-vae": ("recon", "elbo", "nll")}
Scorer = Callable[[np.ndarray], np.ndarray]  # test rows → anomaly scores (higher = outlier)


Fitter = Callable[[np.ndarray, int], Scorer]  # (training rows, seed) → fitted scorer


def _default(x: np.ndarray, seed: int) -> Scorer:
    d = AnomalyDetector(random_state=seed).fit(x)
    return lambda t: -d.score_samples(t)


def _ablation(x: np.ndarray, seed: int) -> Scorer:
    recipe = TabularEnsemble(seed, use_ae=False)
    recipe.fit(x)
    return recipe.anomaly


def _forest(x: np.ndarray, seed: int) -> Scorer:
    forest = IsolationForest(random_state=seed).fit(x)
    return lambda t: -forest.score_samples(t)


def _lof(x: np.ndarray, seed: int) -> Scorer:
    scaler = StandardScaler().fit(x)
    lof = LocalOutlierFactor(novelty=True).fit(scaler.transform(x))
    return lambda t: -lof.score_samples(scaler.transform(t))


def classical() -> dict[str, Fitter]:
    """The default, its ablation and the classical peers (PyOD's when importable)."""
    out: dict[str, Fitter] = {
        "aezoo default": _default,
        "ablation: recipe without the AE": _ablation,
        "IsolationForest": _forest,
        "LOF (novelty)": _lof,
    }
    try:
        from pyod.models.ecod import ECOD
        from pyod.models.knn import KNN
    except ImportError:
        return out
    out["PyOD ECOD"] = lambda x, seed: ECOD().fit(x).decision_function
    out["PyOD KNN"] = lambda x, seed: KNN().fit(x).decision_function
    return out


def model_scores(
    xtr: np.ndarray, xte: np.ndarray, yte: np.ndarray, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    """(AUROC, seconds) of every other aezoo score; one training per model, and each score's
    seconds are that training plus its own rescoring and scoring (what a user of it pays)."""
    auroc, seconds = {}, {}
    for model, scores in MODEL_SCORES.items():
        started = time.perf_counter()
        first = AnomalyDetector(model, anomaly_score=scores[0], random_state=seed).fit(xtr)
        training = time.perf_counter() - started
        for score in scores:
            started = time.perf_counter()
            d = first if score == scores[0] else rescore(first, xtr, anomaly_score=score)
            values = -d.score_samples(xte)
            name = f"aezoo {model} {score}"
            auroc[name] = float(roc_auc_score(yte, values))
            seconds[name] = training + time.perf_counter() - started
    return auroc, seconds


def one_split(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[dict, dict, dict]:
    """(AUROC, seconds of fit + score) per method, and the threshold check, for one split."""
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.4, stratify=y, random_state=seed)
    auroc, seconds = {}, {}
    for name, fit in classical().items():
        started = time.perf_counter()
        values = fit(xtr, seed)(xte)
        seconds[name] = time.perf_counter() - started
        auroc[name] = float(roc_auc_score(yte, values))
    more = model_scores(xtr, xte, yte, seed)
    auroc.update(more[0])
    seconds.update(more[1])
    threshold = {}
    for c in (0.05, 0.1):
        d = AnomalyDetector(contamination=c, random_state=seed).fit(xtr[ytr == 0])
        threshold[f"normal@{c}"] = float((d.predict(xte[yte == 0]) == -1).mean())
    return auroc, seconds, threshold


def run() -> dict[str, Any] | None:
    """Every table and seed; None (with a message) when the ODDS folder is absent."""
    if not ODDS.is_dir():
        print(f"odds: {ODDS} not found; the ODDS part needs the shared tables (skipped)")
        return None
    auroc: dict[str, dict[str, float]] = {}
    seconds: dict[str, list[float]] = {}
    threshold: dict[str, dict[str, float]] = {}
    for path in sorted(ODDS.glob("*.npz")):
        with np.load(path) as npz:
            x, y = npz["X"].astype(np.float64), npz["y"].astype(int)
        splits = [one_split(x, y, seed) for seed in SEEDS]
        for name in splits[0][0]:
            auroc.setdefault(name, {})[path.stem] = float(np.mean([s[0][name] for s in splits]))
            seconds.setdefault(name, []).extend(s[1][name] for s in splits)
        threshold[path.stem] = {k: float(np.mean([s[2][k] for s in splits])) for k in splits[0][2]}
        print(path.stem, {k: round(v[path.stem], 3) for k, v in auroc.items()}, flush=True)
    return summarise(auroc, seconds, threshold)


def summarise(auroc: dict, seconds: dict, threshold: dict) -> dict[str, Any]:
    tables = list(auroc["IsolationForest"])
    forest = auroc["IsolationForest"]
    rows = [
        {
            "method": name,
            "auroc": per,
            "mean": float(np.mean([per[t] for t in tables])),
            "worst_vs_iforest": float(min(per[t] - forest[t] for t in tables)),
            "median_seconds": float(np.median(seconds[name])),
        }
        for name, per in auroc.items()
    ]
    return {
        "tables": tables,
        "seeds": list(SEEDS),
        "rows": rows,
        "threshold": threshold,
        "machine": machine()["cpu"],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "aezoo": aezoo.__version__,
    }


def markdown(result: dict[str, Any]) -> str:
    tables = result["tables"]
    lines = [
        "| method | " + " | ".join(tables) + " | mean | worst Δ vs IF | median s |",
        "|---|" + "---:|" * (len(tables) + 3),
    ]
    for r in result["rows"]:
        cells = " | ".join(f"{r['auroc'][t]:.3f}" for t in tables)
        lines.append(
            f"| {r['method']} | {cells} | **{r['mean']:.4f}** | {r['worst_vs_iforest']:+.3f} | "
            f"{r['median_seconds']:.2f} |"
        )
    keys = list(next(iter(result["threshold"].values())))
    lines += ["", "| flagged share of test normal rows | " + " | ".join(keys) + " |"]
    lines.append("|---|" + "---:|" * len(keys))
    for table, values in result["threshold"].items():
        lines.append(f"| {table} | " + " | ".join(f"{values[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines)


def main() -> None:
    result = run()
    if result is None:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "anomaly-odds.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / "anomaly-odds.md").write_text(text + "\n")
    print(text)
