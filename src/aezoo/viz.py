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


def image_rows(
    rows: Sequence[torch.Tensor | np.ndarray],
    labels: Sequence[str] = (),
    title: str | None = None,
    cell: float = 0.9,
) -> Figure:
    """A grid with one row per entry of `rows` (each N images), labelled on the left."""
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


def training_curves(records: Sequence[dict[str, Any]], columns: int = 3) -> Figure:
    """One panel per loss term (train and test against epoch), then the test MSE and BCE; up to
    `columns` panels to a row, so the text stays legible however many terms a model has."""
    first = records[0] if records else {}
    terms = [k[len("train_") :] for k in first if k.startswith("train_")]
    terms += [t for t in ("mse", "bce") if f"test_{t}" in first and t not in terms]
    n_cols = max(1, min(columns, len(terms)))
    n_rows = max(1, -(-len(terms) // n_cols))
    fig = Figure(figsize=(4.0 * n_cols, 3.0 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    epochs = [r["epoch"] for r in records]
    units = {
        "recon": "nats per image",
        "kl": "nats per image",
        "elbo": "nats per image",
        "loss": "nats per image",
        "bce": "nats per image",
        "mse": "per pixel",
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
