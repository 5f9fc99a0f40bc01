"""The PNG figures every run folder gets (figures/*.png), drawn with aezoo.viz's plain Figure
functions: reconstructions, training curves, and for discrete codes the code usage and a
code-space crossfade."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from aezoo.models.protocols import DiscreteLatent
from aezoo.prior import crossfade_codes
from aezoo.viz import code_usage_figure, image_rows, save_figure, training_curves

FIGURES_DIR = "figures"


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
    if batch.x_in is batch.x:  # no corruption (the slices above are new tensors either way)
        return image_rows([x, recon], ["original", "reconstruction"])
    return image_rows([x, x_in, recon], ["original", "corrupted", "reconstruction"])


def write_run_figures(
    run_dir: Path, model: nn.Module, test_batches: Any, records: Sequence[dict[str, Any]]
) -> list[Path]:
    """The figures every run folder gets: reconstructions and training curves."""
    out = Path(run_dir) / FIGURES_DIR
    paths = [out / "reconstructions.png", out / "training_curves.png"]
    save_figure(reconstruction_figure(model, test_batches), paths[0])
    save_figure(training_curves(records), paths[1])
    if isinstance(model, DiscreteLatent):  # usage histogram and code-space crossfade
        paths += write_code_figures(run_dir, model, test_batches)
    return paths


@torch.inference_mode()
def write_code_figures(
    run_dir: str | Path, model: nn.Module, test_batches: Any, pairs: int = 4, frames: int = 10
) -> list[Path]:
    """figures/code-usage.png (test-set usage of each code) and figures/crossfade.png (test
    images' code grids crossfaded position by position), for a run with discrete codes."""
    was_training = model.training
    model.eval()
    out = Path(run_dir) / FIGURES_DIR
    counts = model.code_usage(test_batches).cpu()
    paths = [out / "code-usage.png", out / "crossfade.png"]
    save_figure(code_usage_figure({"test set": counts}), paths[0])
    x = next(iter(test_batches.epoch(0))).x[: 2 * pairs]  # (2·pairs, C, H, W)
    codes = model.encode_indices(x)
    rows = [
        model.decode_indices(crossfade_codes(codes[2 * i], codes[2 * i + 1], frames))
        for i in range(len(x) // 2)
    ]
    save_figure(
        image_rows(rows, title="crossfade in code space: b's codes replace a's in raster order"),
        paths[1],
    )
    model.train(was_training)
    return paths
