"""Quality of the deterministic autoencoders: 10 epochs, batch 128, full MNIST (issue 2's numbers).

Each case trains through the public API into benchmarks/results/runs/ and records its test MSE
next to the target. `--recipe classic` reruns the tutorial recipe (Adam 1e-3, constant learning
rate) for contrast; the default recipe is each preset's own training defaults (the registry).

    python benchmarks/foundation.py                    # aezoo's defaults, all four cases
    python benchmarks/foundation.py --recipe classic   # the tutorial recipe
    python benchmarks/foundation.py --cases dense-ae --epochs 1 --train-subset 2000  # smoke test
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

import aezoo
from aezoo.device import machine

RESULTS = Path(__file__).parent / "results"

# name → (model, options, target test MSE, what the MSE compares)
CASES = {
    "dense-ae": ("dense-ae", {}, 0.0080, "reconstruction vs clean"),
    "denoising-dense-ae": (
        "dense-ae",
        {"dropout": 0.2, "noise": "gaussian:0.3"},
        0.0125,
        "reconstruction of noisy test images vs the clean ones",
    ),
    "conv-ae": ("conv-ae", {}, 0.0011, "reconstruction vs clean"),
    "upsample-ae": ("upsample-ae", {}, 0.0025, "reconstruction vs clean"),
}
CLASSIC = {"lr": 1e-3, "lr_schedule": "constant"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--recipe", choices=["default", "classic"], default="default")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for case in args.cases.split(","):
        model, options, target, compares = CASES[case]
        options = {**options, **(CLASSIC if args.recipe == "classic" else {})}
        out = RESULTS / "runs" / f"{case}-{args.recipe}"
        shutil.rmtree(out, ignore_errors=True)
        run = aezoo.train(
            model,
            out=out,
            epochs=args.epochs,
            batch_size=128,
            quiet=True,
            train_subset=args.train_subset,
            seed=0,
            **options,
        )
        s = run.summary
        rows.append(
            {
                "case": case,
                "model": model,
                "recipe": args.recipe,
                "options": options,
                "epochs": args.epochs,
                "train_images": args.train_subset or 60000,
                "test_mse": s["test_mse"],
                "target": target,
                "meets_target": s["test_mse"] <= target,
                "compares": compares,
                "train_seconds": s["train_seconds"],
                "params": s["params"],
            }
        )
        print(
            f"{case:<20} {args.recipe:<8} test_mse {s['test_mse']:.5f} (target <= {target})"
            f"  {s['train_seconds']:.0f}s",
            flush=True,
        )
    meta = {
        "machine": machine()["cpu"],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "aezoo": aezoo.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"foundation-{args.recipe}"
    previous = (
        json.loads(stem.with_suffix(".json").read_text())["rows"]
        if stem.with_suffix(".json").exists()
        else []
    )
    merged = {r["case"]: r for r in previous} | {r["case"]: r for r in rows}
    stem.with_suffix(".json").write_text(
        json.dumps({**meta, "rows": list(merged.values())}, indent=2) + "\n"
    )
    lines = [
        "| case | recipe | epochs | test MSE | target | train s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['case']} | {r['recipe']} | {r['epochs']} | {r['test_mse']:.5f} | "
        f"<= {r['target']} | {r['train_seconds']:.0f} |"
        for r in merged.values()
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
