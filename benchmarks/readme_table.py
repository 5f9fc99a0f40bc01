"""Rewrite the README's model table and docs/benchmarks.md's tables from benchmarks/results/.

Each table sits between `<!-- NAME:start -->` and `<!-- NAME:end -->`; every figure in it is read
from a result file written by a benchmark script, never typed by hand. A table whose benchmark has
not been run says so.

    python benchmarks/readme_table.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HEADER = [
    "| model | setting | params | epochs | metric | aezoo | tutorial recipe | target | met |",
    "|---|---|---|---|---|---|---|---|---|",
]


def _rows(name: str) -> dict[str, dict[str, Any]]:
    path = RESULTS / f"{name}.json"
    return {r["case"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}


def _setting(options: dict[str, Any]) -> str:
    shown = {k: v for k, v in options.items() if k not in ("lr", "lr_schedule")}
    return ", ".join(f"`{k}={v}`" for k, v in shown.items()) or "defaults"


def _fmt(value: float, metric: str) -> str:
    return f"{value:.5f}" if "mse" in metric else f"{value:.4g}"


def foundation() -> Iterator[str]:
    ours, classic = _rows("foundation-default"), _rows("foundation-classic")
    for case, r in ours.items():
        ref = f"{classic[case]['test_mse']:.5f}" if case in classic else "—"
        yield (
            f"| `{r['model']}` | {_setting(r['options'])} | {r['params']:,} | {r['epochs']} | "
            f"test MSE | **{r['test_mse']:.5f}** | {ref} | ≤ {r['target']} | "
            f"{'yes' if r['meets_target'] else 'no'} |"
        )


def vae() -> Iterator[str]:
    for r in _rows("vae").values():
        if r.get("target") is None or r.get("value") is None:
            continue
        yield (
            f"| `{r['model']}` | {_setting(r['options'])} | {r['params']:,} | {r['epochs']} | "
            f"{r['metric']} | **{_fmt(r['value'], r['metric'])}** | — | "
            f"{r['compares'].replace('<=', '≤').replace('>=', '≥')} {r['target']} | "
            f"{'yes' if r.get('meets_target') else 'no'} |"
        )


def vqvae() -> Iterator[str]:
    rows = _rows("vqvae")
    for case, r in rows.items():
        if not r.get("targets") or r.get("test_mse") is None:
            continue
        used = f"{r['test_codes_used_pct']:.1f}% codes" if r.get("test_codes_used_pct") else ""
        targets = "; ".join(f"{k} {v}" for k, v in r["targets"].items())
        yield (
            f"| `conv-vqvae` | {case}: {_setting(r['options'])} | {r['params']:,} | "
            f"{r['epochs']} | test MSE, codes used | **{r['test_mse']:.5f}**, {used} | — | "
            f"{targets.replace('<=', '≤').replace('>=', '≥')} | "
            f"{'yes' if r.get('meets_target') else 'no'} |"
        )
    samples = _json("vqvae.json") or {}
    priors = [s for s in samples.get("samples", []) if s.get("mode") == "prior"]
    if priors:  # the best prior's samples, at temperature 1
        best = max(
            (s for s in priors if s.get("temperature") == 1),
            key=lambda s: s["confident_share"],
            default=None,
        )
        if best is not None:
            run = rows.get(best["run"], {})
            yield (
                f"| `conv-vqvae` | {best['run']} + PixelCNN prior ({best['prior']}) | "
                f"{run.get('params', 0):,} | {run.get('epochs', '')} | prior samples classified "
                f"with p ≥ 0.9 | **{100 * best['confident_share']:.1f}%** | — | ≥ 90%, 10 digits,"
                f" none > 25% | {'yes' if best.get('meets_target') else 'no'} |"
            )


def _file(name: str) -> list[str]:
    """A Markdown table a benchmark wrote (without its title lines)."""
    path = RESULTS / name
    if not path.exists():
        return [f"*Not run yet: `{path.relative_to(ROOT)}` does not exist.*"]
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines and lines[-1]:
            lines.append("")  # keeps two tables apart
    return lines[:-1] if lines and not lines[-1] else lines


def _json(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def feeding() -> list[str]:
    lines = [
        "| model | images | threads | aezoo s/epoch | reference s/epoch | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("feeding-*.json")):
        r = json.loads(path.read_text())
        lines.append(
            f"| `{r['model']}` | {r['images']:,} | {r['threads']} | "
            f"{r['aezoo_median_s']:.2f} | {r['reference_median_s']:.2f} | "
            f"**{r['speedup']:.2f}x** |"
        )
    return lines


def anomaly(part: str) -> list[str]:
    """One part's table (grid, holdout, one-class) of benchmarks/anomaly.py."""
    r = _json("anomaly.json")
    if r is None or part not in r["parts"]:
        return [f"*Not run yet: `python benchmarks/anomaly.py --parts {part}`.*"]
    got = r["parts"][part]
    settings = got.get("settings", {})
    note = ", ".join(f"{k} {v}" for k, v in settings.items() if k != "seconds_last_call")
    return [*got["markdown"].strip().splitlines(), "", f"*Settings: {note}.*"]


def anomaly_odds() -> list[str]:
    """The README's view of anomaly-odds.json: mean AUROC over the six ODDS tables per method."""
    r = _json("anomaly-odds.json")
    if r is None:
        return ["*Not run yet: `python benchmarks/anomaly.py --parts odds`.*"]
    lines = [
        "| method | mean AUROC (6 ODDS tables) | worst table vs IsolationForest | median s |",
        "|---|---:|---:|---:|",
    ]
    for row in sorted(r["rows"], key=lambda row: -row["mean"]):
        lines.append(
            f"| {row['method']} | **{row['mean']:.4f}** | {row['worst_vs_iforest']:+.3f} | "
            f"{row['median_seconds']:.2f} |"
        )
    return lines


def bench() -> list[str]:
    """Every bench-cpu*.md that `aezoo bench` wrote, each under its own settings line."""
    lines: list[str] = []
    for path in sorted(RESULTS.glob("bench-cpu*.md")):
        if "quick" in path.name:
            continue
        first = path.read_text().splitlines()[0]
        lines += [f"`{path.name}` — {first}", "", *_file(path.name), ""]
    return lines[:-1] or ["*Not run yet: `python benchmarks/bench.py`.*"]


def checkpoint_overhead() -> list[str]:
    r = _json("checkpoint-overhead.json")
    if r is None:
        return ["*Not run yet.*"]
    return ["```json", json.dumps(r, indent=2), "```"]


def zoo_timing() -> list[str]:
    r = _json("zoo-timing.json")
    if r is None:
        return ["*Not run yet.*"]
    return [
        f"`{r['command']}`: **{r['seconds']:.0f} s** wall-clock on {r['machine']} "
        f"({r['models']} models); the page `zoo.html` opened in headless Chromium "
        "without console errors in `tests/test_zoo.py`."
    ]


def _replace(path: Path, name: str, lines: list[str]) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text()
    if start not in text:
        return
    block = "\n".join([start, *lines, end])
    path.write_text(
        re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    )


def main() -> None:
    _replace(ROOT / "README.md", "models", [*HEADER, *foundation(), *vae(), *vqvae()])
    _replace(ROOT / "README.md", "zoo", _file("zoo.md"))
    _replace(ROOT / "README.md", "anomaly-odds", anomaly_odds())
    docs = ROOT / "docs" / "benchmarks.md"
    tables = {
        "foundation-table": [*_file("foundation-default.md"), "", *_file("foundation-classic.md")],
        "feeding-table": feeding(),
        "vae-table": _file("vae.md"),
        "vq-table": _file("vqvae.md"),
        "anomaly-grid": anomaly("grid"),
        "anomaly-recipe": anomaly("recipe"),
        "anomaly-holdout": anomaly("holdout"),
        "anomaly-one-class": anomaly("one-class"),
        "anomaly-tabular": _file("anomaly-tabular.md"),
        "anomaly-odds": _file("anomaly-odds.md"),
        "checkpoint-overhead": checkpoint_overhead(),
        "zoo-timing": zoo_timing(),
        "mmap-table": _file("mmap_memory.md"),
        "bench-table": bench(),
    }
    for name, lines in tables.items():
        _replace(docs, name, lines)
    print("rewrote README.md and docs/benchmarks.md")


if __name__ == "__main__":
    main()
