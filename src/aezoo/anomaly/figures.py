"""The anomaly protocols' figures: ROC curves and score histograms (matplotlib Figures, drawn
like aezoo.viz's; kept here so that importing aezoo does not import scikit-learn's metrics)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve


def roc_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str | None = None
) -> Figure:
    """ROC curves, one per entry {name: (is_anomaly, anomaly_scores)}, AUROC in the legend."""
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, (is_anomaly, scores) in curves.items():
        fpr, tpr, _ = roc_curve(is_anomaly, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(is_anomaly, scores):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate (normal flagged)")
    ax.set_ylabel("true positive rate (anomalies flagged)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def score_histogram(
    normal: np.ndarray,
    anomalous: np.ndarray,
    threshold: float | None = None,
    xlabel: str = "anomaly score",
    labels: tuple[str, str] = ("normal", "anomalous"),
) -> Figure:
    """Overlaid density histograms of the anomaly scores of two groups, and the threshold."""
    normal, anomalous = np.asarray(normal, float), np.asarray(anomalous, float)
    edges = np.histogram_bin_edges(np.concatenate([normal, anomalous]), bins=60)
    fig = Figure(figsize=(5.4, 3.4), layout="constrained")
    ax = fig.subplots()
    for values, label in ((normal, labels[0]), (anomalous, labels[1])):
        ax.hist(values, bins=edges, density=True, alpha=0.55, label=f"{label} ({len(values)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return fig
