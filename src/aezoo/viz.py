"""Figures: arrays in, matplotlib Figure out (no pyplot, so no global state and no display).

`save_figure` writes a PNG atomically; `write_run_figures` draws the figures every run gets.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from aezoo.checkpoint import atomic_write


def as_images(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] → (N, H, W) or (N, H, W, 3) numpy for imshow."""
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)
    if a.ndim == 4:
        a = a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
    return np.clip(a, 0.0, 1.0)


def image_rows(rows: Sequence[torch.Tensor | np.ndarray], labels: Sequence[str] = (),
               title: str | None = None, cell: float = 0.9) -> Figure:
    """A grid with one row per entry of `rows` (each N images), labelled on the left."""
    rows = [as_images(r) for r in rows]
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = Figure(figsize=(cell * n_cols + (1.2 if labels else 0.2), cell * n_rows + 0.5),
                 layout="constrained")
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


def training_curves(records: Sequence[dict[str, Any]]) -> Figure:
    """One panel per loss term: train and test value against epoch."""
    terms = [k[len("train_"):] for k in records[0] if k.startswith("train_")] if records else []
    fig = Figure(figsize=(4.0 * max(1, len(terms)), 3.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(terms)), squeeze=False)[0]
    epochs = [r["epoch"] for r in records]
    for ax, term in zip(axes, terms, strict=False):
        for split, style in (("train", "-o"), ("test", "--s")):
            values = [r.get(f"{split}_{term}") for r in records]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, label=split, markersize=3)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image" if term in ("recon", "kl", "loss") else "value")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> None:
    """PNG, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write(Path(path), buf.getvalue())


@torch.inference_mode()
def reconstruction_figure(model: nn.Module, batches: Any, n: int = 10) -> Figure:
    """Test images over their reconstructions (with the corrupted input between, if denoising)."""
    was_training = model.training
    model.eval()
    batch = next(iter(batches.epoch(0)))
    x, x_in = batch.x[:n], batch.x_in[:n]
    y = batch.y[:n] if batch.y is not None else None
    recon = model.decode(model.encode(x_in, y), y)
    model.train(was_training)
    if x_in is x:
        return image_rows([x, recon], ["original", "reconstruction"])
    return image_rows([x, x_in, recon], ["original", "corrupted", "reconstruction"])


def write_run_figures(run_dir: Path, model: nn.Module, test_batches: Any,
                      records: Sequence[dict[str, Any]]) -> list[Path]:
    """The figures every run folder gets: reconstructions and training curves."""
    out = Path(run_dir) / "figures"
    paths = [out / "reconstructions.png", out / "training_curves.png"]
    save_figure(reconstruction_figure(model, test_batches), paths[0])
    save_figure(training_curves(records), paths[1])
    return paths
