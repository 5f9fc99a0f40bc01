"""Rewrite the README's model table from the benchmark results in benchmarks/results/*.json.

The table sits between `<!-- models:start -->` and `<!-- models:end -->`; every figure in it is
read from a result file written by a benchmark script (foundation.py, vae.py, vqvae.py), never
typed by hand. Rows whose benchmark has not been run are left out.

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
START, END = "<!-- models:start -->", "<!-- models:end -->"
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


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = "\n".join([START, *HEADER, *foundation(), *vae(), *vqvae(), END])
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.replace("MODEL_TABLE", block)
    readme.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
