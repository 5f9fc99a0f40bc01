"""The codebook study: conv-vqvae trained with several codebook sizes, with and without the
codebook-health options (EMA updates, dead-code restarts, k-means initialisation), compared on
test MSE, codes used and usage perplexity, with a usage histogram per run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aezoo.config import split_options
from aezoo.errors import UsageError
from aezoo.io import atomic_write, new_output_folder, write_json
from aezoo.models import preset
from aezoo.runner import train
from aezoo.runs import load_data, make_batches, new_run_dir
from aezoo.tables import markdown_table
from aezoo.viz import code_usage_figure, save_figure

SIZES = (20, 40, 512)
# The original recipe: codes learned by the codebook loss from a ±1/K start, never restarted.
HEALTH_OFF = {"codebook_ema": 0.0, "dead_code_restart": 0, "codebook_init": "uniform"}
COLUMNS = (
    "codebook_size",
    "health",
    "test_mse",
    "test_codes_used",
    "test_codes_used_pct",
    "test_perplexity",
    "train_seconds",
)


@dataclass(frozen=True)
class StudyResult:
    path: Path
    rows: list[dict[str, Any]]
    table: str


def codebook_study(
    out: str | Path | None = None,
    sizes: tuple[int, ...] = SIZES,
    *,
    model: str = "conv-vqvae",
    quiet: bool = False,
    **options: Any,
) -> StudyResult:
    """Train `model` for each size in `sizes`, with the health options on (its defaults) and off;
    writes study.json, study.md and code-usage.png in `out`, and one run folder per setting."""
    clash = sorted(set(options) & {"codebook_size", *HEALTH_OFF})
    if clash:
        raise UsageError(f"the codebook study sets {clash[0]!r} itself; drop it")
    model_opts = split_options(options)[2]
    for size in sizes:  # every setting's config is valid before the first one trains
        for health in (True, False):
            extra = {} if health else HEALTH_OFF
            preset(model).make_config(**{**model_opts, **extra, "codebook_size": size})
    path = new_output_folder(new_run_dir("codebook-study", out))
    rows, usage = [], {}
    for size in sizes:
        for health in (True, False):
            name = f"k{size}-{'health' if health else 'plain'}"
            run = train(
                model,
                out=path / name,
                quiet=quiet,
                codebook_size=size,
                **({} if health else HEALTH_OFF),
                **options,
            )
            device = next(run.model.parameters()).device
            _, test = load_data(run.spec.data)
            _, test_batches = make_batches(run.spec, test, test, device)
            usage[name] = run.model.code_usage(test_batches).cpu()
            rows.append(
                {
                    "run": name,
                    "codebook_size": size,
                    "health": health,
                    **{k: run.summary.get(k) for k in COLUMNS[2:]},
                }
            )
    table = markdown_table(rows, COLUMNS)
    write_json(path / "study.json", {"model": model, "options": options, "rows": rows})
    atomic_write(path / "study.md", table.encode())
    save_figure(code_usage_figure(usage), path / "code-usage.png")
    atomic_write(
        path / "usage.json", json.dumps({k: v.tolist() for k, v in usage.items()}).encode()
    )
    return StudyResult(path, rows, table)
