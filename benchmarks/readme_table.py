"""Rewrite the README's model table from the benchmark results in benchmarks/results/*.json.

The table sits between `<!-- models:start -->` and `<!-- models:end -->`; every figure in it is
read from a result file written by a benchmark script, never typed by hand.

    python benchmarks/readme_table.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- models:start -->", "<!-- models:end -->"


def rows() -> list[str]:
    lines = [
        "| model | options | params | test MSE (classic recipe) | test MSE (aezoo defaults) "
        "| target | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    default = RESULTS / "foundation-default.json"
    classic = RESULTS / "foundation-classic.json"
    if not default.exists():
        return lines
    ours = {r["case"]: r for r in json.loads(default.read_text())["rows"]}
    ref = (
        {r["case"]: r for r in json.loads(classic.read_text())["rows"]} if classic.exists() else {}
    )
    for case, r in ours.items():
        opts = (
            ", ".join(f"{k}={v}" for k, v in r["options"].items() if k not in ("lr", "lr_schedule"))
            or "defaults"
        )
        classic_mse = f"{ref[case]['test_mse']:.5f}" if case in ref else "—"
        lines.append(
            f"| `{r['model']}` | {opts} | {r['params']:,} | {classic_mse} | "
            f"**{r['test_mse']:.5f}** | <= {r['target']} | {r['train_seconds']:.0f} |"
        )
    return lines


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = "\n".join([START, *rows(), END])
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.replace("MODEL_TABLE", block)
    readme.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
