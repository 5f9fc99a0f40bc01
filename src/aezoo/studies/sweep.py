"""A β sweep: train one model for several β, then a table (recon, KL, active units, ELBO) and a
figure of each run's traversal of its highest-KL dimensions, stacked for comparison."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aezoo.config import split_options
from aezoo.errors import UsageError
from aezoo.explore import traverse
from aezoo.io import atomic_write, new_output_folder
from aezoo.models import preset
from aezoo.runner import train
from aezoo.runs import Run, new_run_dir
from aezoo.tables import markdown_table
from aezoo.viz import image_rows, save_figure

COLUMNS = ("beta", "test_recon", "test_kl", "test_active_units", "test_elbo")


@dataclass(frozen=True)
class SweepResult:
    path: Path
    runs: list[Run]
    rows: list[dict[str, Any]]
    table: str


@torch.inference_mode()
def _traversal_rows(run: Run, dims: int = 4, steps: int = 9) -> tuple[list, list[str]]:
    model, kl = run.model, np.asarray(run.summary["test_kl_per_dim"])
    top = [int(d) for d in np.argsort(-kl, kind="stable")[:dims]]
    base = torch.zeros(len(kl))
    rows = traverse(
        model, base, top, torch.linspace(-3, 3, steps), 0 if model.num_classes else None
    )
    beta = run.spec.model_config.beta
    return rows, [f"β={beta:g} z{d}" for d in top]


def sweep(
    model: str,
    betas: list[float] | tuple[float, ...],
    *,
    out: str | Path | None = None,
    quiet: bool = False,
    **options: Any,
) -> SweepResult:
    """Train `model` once per β (same seed and options) into OUT/beta-B/; write OUT/sweep.json,
    OUT/sweep.md and OUT/traversals.png."""
    if not betas:
        raise UsageError("sweep: give at least one β, e.g. --beta 1,2,4,10")
    if "beta" not in {f for f in preset(model).config.__dataclass_fields__}:
        raise UsageError(f"sweep: model {model!r} has no β (try conv-vae or dense-vae)")
    names = [f"beta-{b:g}" for b in betas]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise UsageError(f"sweep: --beta gives {twice[5:]} twice")
    model_opts = split_options(options)[2]
    for beta in betas:  # every β's config is valid before the first one trains
        preset(model).make_config(**{**model_opts, "beta": float(beta)})
    path = new_output_folder(new_run_dir(f"sweep-{model}", out))
    runs, rows = [], []
    for beta in betas:
        run = train(model, out=path / f"beta-{beta:g}", quiet=quiet, beta=float(beta), **options)
        runs.append(run)
        rows.append({"beta": float(beta), **{k: run.summary.get(k) for k in COLUMNS[1:]}})
    table = markdown_table(rows, COLUMNS)
    atomic_write(path / "sweep.json", (json.dumps(rows, indent=2) + "\n").encode())
    atomic_write(path / "sweep.md", (f"# β sweep of {model}\n\n{table}\n").encode())
    grids, labels = [], []
    for run in runs:
        r, lab = _traversal_rows(run)
        grids += r
        labels += lab
    save_figure(
        image_rows(grids, labels, title=f"{model}: traversals by β", cell=0.6),
        path / "traversals.png",
    )
    return SweepResult(path, runs, rows, table)
