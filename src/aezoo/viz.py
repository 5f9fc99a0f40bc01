"""Figures: arrays in, matplotlib Figure out (no pyplot, so no global state and no display).

`save_figure` writes a PNG atomically; aezoo.figures draws the figures every run gets.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from aezoo.io import atomic_write


def as_images(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] → (N, H, W) or (N, H, W, 3) numpy for imshow."""
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)
    if a.ndim == 4:
        a = a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
    return np.clip(a, 0.0, 1.0)


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)


def are_vectors(rows: Sequence[torch.Tensor | np.ndarray]) -> bool:
    """Rows of vectors stored as data sets store them, [N, 1, 1, D] (D > 1): not 1×D images."""
    return all(r.ndim == 4 and tuple(r.shape[1:3]) == (1, 1) and r.shape[3] > 1 for r in rows)


def image_rows(
    rows: Sequence[torch.Tensor | np.ndarray],
    labels: Sequence[str] = (),
    title: str | None = None,
    cell: float = 0.9,
) -> Figure:
    """A grid with one row per entry of `rows` (each N images), labelled on the left; vectors
    [N, 1, 1, D] are drawn as vectors instead (`vector_rows`)."""
    if rows and are_vectors(rows):
        return vector_rows(rows, labels, title)
    rows = [as_images(r) for r in rows]
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = Figure(
        figsize=(cell * n_cols + (1.2 if labels else 0.2), cell * n_rows + 0.5),
        layout="constrained",
    )
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, images in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        if r < len(labels):
            axes[r, 0].set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def vector_rows(
    rows: Sequence[torch.Tensor | np.ndarray],
    labels: Sequence[str] = (),
    title: str | None = None,
    lines: int = 3,
) -> Figure:
    """Vectors as vectors: one heat-strip panel per entry of `rows` (each N vectors: one strip per
    vector, feature along x, value 0..1 as colour), then, for two or three entries (original,
    reconstruction), the first `lines` vectors of each as line plots over the feature index. Entries
    without labels (samples split into groups) are joined into one panel."""
    arrays = [np.clip(_numpy(r).reshape(len(r), -1), 0.0, 1.0) for r in rows]
    if not labels and len({a.shape[1] for a in arrays}) == 1:
        arrays = [np.concatenate(arrays)]
    n_lines = min(lines, *(len(a) for a in arrays)) if 1 < len(arrays) <= 3 else 0
    heights = [min(6.0, max(1.0, 0.16 * len(a) + 0.5)) for a in arrays] + [1.6] * n_lines
    fig = Figure(figsize=(9.0, sum(heights) + 0.6), layout="constrained")
    axes = fig.subplots(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0]
    for k, (ax, a) in enumerate(zip(axes, arrays, strict=False)):
        shown = ax.imshow(
            a, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest"
        )
        ax.set_ylabel(labels[k] if k < len(labels) else "vector", fontsize=9)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xticks([])
    axes[len(arrays) - 1].set_xlabel("feature")
    shrink = min(0.8, 4.0 / sum(heights[: len(arrays)]))  # about 4 inches at most
    fig.colorbar(shown, ax=list(axes[: len(arrays)]), shrink=shrink, label="value")
    for i, ax in enumerate(axes[len(arrays) :]):
        for k, a in enumerate(arrays):
            name = labels[k] if k < len(labels) else f"row {k}"
            ax.plot(a[i], "-" if k == 0 else "--", lw=0.8, label=name, color=f"C{k}")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(f"vector {i}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right", frameon=False, ncol=len(arrays))
    if n_lines:
        axes[-1].set_xlabel("feature index")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def training_curves(
    records: Sequence[dict[str, Any]],
    columns: int = 3,
    units: dict[str, str] | None = None,
) -> Figure:
    """One panel per loss term (train and test against epoch), then the test MSE and BCE; up to
    `columns` panels to a row, so the text stays legible however many terms a model has. `units`:
    each term's axis label (default: a Bernoulli likelihood on images, see
    aezoo.figures.curve_units)."""
    first = records[0] if records else {}
    terms = [k[len("train_") :] for k in first if k.startswith("train_")]
    terms += [t for t in ("mse", "bce") if f"test_{t}" in first and t not in terms]
    n_cols = max(1, min(columns, len(terms)))
    n_rows = max(1, -(-len(terms) // n_cols))
    fig = Figure(figsize=(4.0 * n_cols, 3.0 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    epochs = [r["epoch"] for r in records]
    units = units or {t: "nats per image" for t in ("recon", "kl", "elbo", "loss", "bce")} | {
        "mse": "per pixel"
    }
    for ax in axes[len(terms) :]:
        ax.set_axis_off()
    for ax, term in zip(axes, terms, strict=False):
        for split, style in (("train", "-o"), ("test", "--s")):
            values = [r.get(f"{split}_{term}") for r in records]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, label=split, markersize=4)
        ax.set_title(term if term not in ("mse", "bce") else f"test {term.upper()}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(units.get(term, "value"))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def latent_scatter(
    points: np.ndarray,
    labels: np.ndarray | None = None,
    title: str | None = None,
    axis_name: str = "z",
) -> Figure:
    """Points (N, 2) coloured by integer label (10-colour map, with a legend) or plain."""
    points = np.asarray(points, dtype=float)
    fig = Figure(figsize=(5.4, 4.8), layout="constrained")
    ax = fig.subplots()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6)
    else:
        labels = np.asarray(labels)
        for label in np.unique(labels):
            chosen = points[labels == label]
            ax.scatter(
                chosen[:, 0],
                chosen[:, 1],
                s=3,
                alpha=0.6,
                label=str(label),
                color=f"C{int(label) % 10}",
            )
        ax.legend(markerscale=4, fontsize=8, loc="best", frameon=False)
    ax.set_xlabel(f"{axis_name}₁")
    ax.set_ylabel(f"{axis_name}₂")
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def code_usage_figure(counts: dict[str, torch.Tensor | np.ndarray]) -> Figure:
    """One panel per entry: each code's share of the uses, codes sorted by use (a dead codebook
    shows as a long flat tail at zero)."""
    fig = Figure(figsize=(4.0 * len(counts), 3.0), layout="constrained")
    axes = fig.subplots(1, len(counts), squeeze=False)[0]
    for ax, (name, c) in zip(axes, counts.items(), strict=True):
        c = np.sort(np.asarray(c, dtype=float))[::-1]
        share = c / max(c.sum(), 1.0)
        nz = share[share > 0]
        ppl = float(np.exp(-(nz * np.log(nz)).sum())) if len(nz) else 0.0
        ax.bar(np.arange(len(c)), share, width=1.0)
        ax.set_title(f"{name}: {len(nz)}/{len(c)} used, perplexity {ppl:.0f}", fontsize=9)
        ax.set_xlabel("code (sorted by use)")
        ax.set_ylabel("share of uses")
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> None:
    """PNG, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write(Path(path), buf.getvalue())
