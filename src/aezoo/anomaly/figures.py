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


def top_anomalies_figure(
    images: np.ndarray, maps: np.ndarray, anomaly_scores: np.ndarray, title: str | None = None
) -> Figure:
    """The given images (N, C, H, W in [0, 1]) above their anomaly maps (N, C, H, W; channels
    summed), each captioned with its anomaly score; one column per image."""
    n = len(images)
    fig = Figure(figsize=(1.3 * n + 0.4, 3.0), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    heat = maps.sum(1)  # (N, H, W): a pixel's contribution over its channels
    for i in range(n):
        picture = images[i].transpose(1, 2, 0)
        axes[0, i].imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray")
        axes[0, i].set_title(f"{anomaly_scores[i]:.3g}", fontsize=7)
        axes[1, i].imshow(heat[i], cmap="inferno")
        for ax in axes[:, i]:
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
