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
import platform
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


def classical(x: np.ndarray, seed: int) -> dict[str, Scorer]:
    """The default, its ablation and the classical peers, each fitted on x."""
    default = AnomalyDetector(random_state=seed).fit(x)
    ablation = TabularEnsemble(seed, use_ae=False)
    ablation.fit(x.astype(np.float64))
    forest = IsolationForest(random_state=seed).fit(x)
    scaler = StandardScaler().fit(x)
    lof = LocalOutlierFactor(novelty=True).fit(scaler.transform(x))
    out: dict[str, Scorer] = {
        "aezoo default": lambda t: -default.score_samples(t),
        "ablation: recipe without the AE": lambda t: ablation.anomaly(t.astype(np.float64)),
        "IsolationForest": lambda t: -forest.score_samples(t),
        "LOF (novelty)": lambda t: -lof.score_samples(scaler.transform(t)),
    }
    try:
        from pyod.models.ecod import ECOD
        from pyod.models.knn import KNN
    except ImportError:
        return out
    ecod, knn = ECOD().fit(x), KNN().fit(x)
    out["PyOD ECOD"], out["PyOD KNN"] = ecod.decision_function, knn.decision_function
    return out


def model_scorers(x: np.ndarray, seed: int) -> dict[str, Scorer]:
    """Every other aezoo score, one training per model."""
    out: dict[str, Scorer] = {}
    for model, scores in MODEL_SCORES.items():
        first = AnomalyDetector(model, anomaly_score=scores[0], random_state=seed).fit(x)
        for score in scores:
            d = first if score == scores[0] else rescore(first, x, anomaly_score=score)
            out[f"aezoo {model} {score}"] = lambda t, d=d: -d.score_samples(t)
    return out


def one_split(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[dict, dict, dict]:
    """(AUROC, seconds of fit+score) per method, and the threshold check, for one split."""
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.4, stratify=y, random_state=seed)
    auroc, seconds = {}, {}
    for family in (classical, model_scorers):
        started = time.perf_counter()
        scorers = family(xtr, seed)
        fit_seconds = (time.perf_counter() - started) / len(scorers)  # shared trainings
        for name, scorer in scorers.items():
            started = time.perf_counter()
            auroc[name] = float(roc_auc_score(yte, scorer(xte)))
            seconds[name] = fit_seconds + time.perf_counter() - started
    seconds["aezoo default"] = timed_default(xtr, xte, seed)
    threshold = {}
    for c in (0.05, 0.1):
        d = AnomalyDetector(contamination=c, random_state=seed).fit(xtr[ytr == 0])
        threshold[f"normal@{c}"] = float((d.predict(xte[yte == 0]) == -1).mean())
    return auroc, seconds, threshold


def timed_default(xtr: np.ndarray, xte: np.ndarray, seed: int) -> float:
    """The default's own fit+score time (the shared timing above splits several fits)."""
    started = time.perf_counter()
    AnomalyDetector(random_state=seed).fit(xtr).score_samples(xte)
    return time.perf_counter() - started


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
        "machine": platform.processor() or platform.machine(),
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
