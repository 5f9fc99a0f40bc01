"""The GPU check's figures against issue 17's targets: OUT's JSON files → one Markdown table.

python benchmarks/gpu_summary.py gpu-check-out      # prints the table (gpu_check.sh saves it)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# figure → (bound, what it is): each a "less than" except the speed-up, a "at least"
DENSE_VAE_30_S = 15.0  # dense-vae, 30 epochs on the whole training set, wall-clock
VQVAE_SPEED_S = 3.0  # conv-vqvae 128 codes × 32, 3 epochs (the tutorial claims under 20 s)
ZOO_S = 180.0  # `aezoo zoo` at default epochs, every model
SPEEDUP = 5.0  # every model's training images/s over the tutorial DataLoader pipeline's


def load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def verdict(value: float | None, ok: bool, dry_run: bool) -> str:
    if value is None:
        return "no figure"
    if dry_run:
        return "— (dry run)"
    return "yes" if ok else "**no**"


def timed_row(
    figure: str, seconds: float | None, bound: float, part: dict[str, Any] | None, dry_run: bool
) -> tuple[str, str, str, str]:
    """A wall-clock figure against its bound; a part stopped at its limit took longer than that."""
    target = f"< {bound:g}"
    if seconds is None and part is not None and part["rc"] in (124, 137):
        limit = part["limit_s"]
        # longer than the limit: a miss only when the limit was at least the bound
        met = "— (dry run)" if dry_run else "**no**" if limit >= bound else "unknown"
        return figure, f"> {limit} (stopped)", target, met
    value = "—" if seconds is None else f"{seconds:.1f}"
    return figure, value, target, verdict(seconds, seconds is not None and seconds < bound, dry_run)


def figures(
    out: Path, parts: dict[str, dict[str, Any]], dry_run: bool
) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, met) rows from what the check wrote under `out`."""
    rows = []
    dense = load(out / "dense-vae-30.json")
    s = dense["seconds"] if dense and dense.get("rc") == 0 else None
    run = load(out / "runs" / "dense-vae-30" / "summary.json") or {}
    figure = "dense-vae, 30 epochs (s, wall: start-up, data, training, figures)"
    if "train_seconds" in run:
        figure += f"; {run['epochs']} epochs trained in {run['train_seconds']:.1f} s"
    rows.append(timed_row(figure, s, DENSE_VAE_30_S, parts.get("dense-vae-30"), dry_run))
    vqvae = load(out / "vqvae" / "vqvae.json") or {"rows": []}
    speed = next((r for r in vqvae["rows"] if r["case"] == "speed-128x32"), None)
    s = speed["wall_seconds"] if speed else None
    figure = f"conv-vqvae 128×32, {speed['epochs'] if speed else 3} epochs (s, wall)"
    rows.append(timed_row(figure, s, VQVAE_SPEED_S, parts.get("vqvae-speed"), dry_run))
    zoo = load(out / "zoo.json")
    s = zoo["seconds"] if zoo and zoo.get("rc") == 0 else None
    rows.append(
        timed_row("aezoo zoo, default epochs (s, wall)", s, ZOO_S, parts.get("zoo"), dry_run)
    )
    for path in sorted((out / "bench").glob("bench-*.json")):
        for row in (load(path) or {"models": []})["models"]:
            ratio = row["speedup"]
            rows.append(
                (
                    f"{row['model']}: train img/s, × the tutorial pipeline "
                    f"({row['train_images_per_s']:,} vs "
                    f"{round(row['train_images'] / row['reference_epoch_s']):,})",
                    f"{ratio:.1f}×",
                    f">= {SPEEDUP:g}×",
                    verdict(ratio, ratio >= SPEEDUP, dry_run),
                )
            )
    return rows


def markdown(out: Path) -> str:
    summary = load(out / "summary.json") or {"parts": [], "dry_run": False, "device": "?"}
    dry_run = bool(summary["dry_run"])
    parts = {p["part"]: p for p in summary["parts"]}
    device = (out / "device.txt").read_text().strip() if (out / "device.txt").exists() else ""
    lines = [
        f"# GPU check{' (dry run on the CPU: tiny settings, no verdicts)' if dry_run else ''}",
        "",
        f"device: {summary['device']}{f' ({device})' if device else ''}",
        "",
        "| part | exit code | seconds | limit (s) |",
        "|---|---:|---:|---:|",
        *(
            f"| {p['part']} | {p['rc']} | {p['seconds']:.1f} | {p['limit_s']} |"
            for p in summary["parts"]
        ),
        "",
        "| figure | value | target | met |",
        "|---|---:|---|---|",
        *(f"| {' | '.join(row)} |" for row in figures(out, parts, dry_run)),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/gpu_summary.py OUT_FOLDER")
    print(markdown(Path(sys.argv[1])), end="")


if __name__ == "__main__":
    main()
