"""The image default of `AnomalyDetector()` (issue 15) on the three MNIST protocols, each with the
detector's own defaults (model, score, epochs, threshold), into results/anomaly-default.{json,md}.

Protocols (rows merged by (protocol, seed, digit), so a protocol can be run a few digits per call;
--seed sets the detector's random_state, 0 by default, to show how much a figure moves with it):
  recipe     digit 9 held out, 5,000 training images (the tutorial's size)    target ≥ 0.85
  one-class  Ruff et al. 2018: train on one digit, the other nine anomalous   target mean ≥ 0.98
  holdout    each digit held out in turn, every other training image          target mean ≥ 0.93

Beside the default ("auto" = the combined score) each row has the two parts' plain relatives from
the same training: "latent" (a 50-component mixture on the raw codes, its covariances unshrunk:
the previous image default's score) and "recon" (‖x − x̂‖²). Hold-out rows also give the share of
normal test images flagged at contamination 0.05 (the threshold's target: within ×1.5 of it).

    OMP_NUM_THREADS=1 python benchmarks/anomaly_default.py --protocols recipe,one-class --threads 1
    OMP_NUM_THREADS=1 python benchmarks/anomaly_default.py --protocols holdout --digits 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aezoo
from aezoo.anomaly.protocols import mnist_holdout, mnist_one_class

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = ("recipe", "one-class", "holdout")
TARGETS = {"recipe": 0.85, "one-class": 0.98, "holdout": 0.93}
SCORES = ("auto", "latent", "recon")  # the default first; one training serves all three
COMPONENTS = 50  # the latent score's mixture, as the combined score's


def holdout_row(protocol: str, seed: int, result: dict[str, Any]) -> dict[str, Any]:
    auto = result["scores"]["auto"]["confusion"]
    return {
        "protocol": protocol,
        "seed": seed,
        "digit": result["anomaly"],
        "train_images": result["train_images"],
        **{s: result["scores"][s]["auroc"] for s in SCORES},
        "flagged_normal": auto["fp"] / (auto["fp"] + auto["tn"]),
        "seconds": result["train_seconds"],
    }


def run(
    protocol: str, digits: list[int], seed: int, device: str, out: Path
) -> list[dict[str, Any]]:
    """The rows of one protocol for `digits`, the detector's defaults throughout but its seed."""
    options = {"scores": SCORES, "latent_components": COMPONENTS, "seed": seed, "device": device}
    if protocol == "one-class":
        result = mnist_one_class(("dense-ae",), digits=digits, **options)  # dense-ae = default
        per_score = result["auroc"]["dense-ae"]
        return [
            {"protocol": protocol, "seed": seed, "digit": d}
            | {s: per_score[s][str(d)] for s in SCORES}
            for d in digits
        ]
    if protocol == "recipe":
        folder = out / f"holdout-9-5000-seed{seed}"  # results and figures: the top anomalies
        result = mnist_holdout(9, train_subset=5000, out=folder, **options)
        return [holdout_row(protocol, seed, result)]
    return [holdout_row(protocol, seed, mnist_holdout(d, **options)) for d in digits]


def order(key: tuple[str, int]) -> tuple[int, int]:
    """Protocols in PROTOCOLS order, seeds ascending."""
    return PROTOCOLS.index(key[0]), key[1]


def summarise(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """Per protocol and seed: mean AUROC of each score, the target and whether every digit is in."""
    summary, lines = {}, []
    for protocol, seed in sorted({(r["protocol"], r["seed"]) for r in rows}, key=order):
        mine = [r for r in rows if r["protocol"] == protocol and r["seed"] == seed]
        mine.sort(key=lambda r: r["digit"])
        name = protocol if seed == 0 else f"{protocol}, seed {seed}"
        expected = 1 if protocol == "recipe" else 10
        mean = {s: float(np.mean([r[s] for r in mine])) for s in SCORES}
        summary[name] = {
            "mean": mean,
            "digits": [r["digit"] for r in mine],
            "complete": len(mine) == expected,
            "target": TARGETS[protocol],
            "meets_target": len(mine) == expected and mean["auto"] >= TARGETS[protocol],
        }
        flagged = "flagged_normal" in mine[0]
        head = "| digit | default (auto) | latent | recon |"
        head += " flagged @0.05 |" if flagged else ""
        lines += [f"#### {name} (target {TARGETS[protocol]})", "", head]
        lines.append("|---:|---:|---:|---:|" + ("---:|" if flagged else ""))
        for r in mine:
            cells = [str(r["digit"]), *(f"{r[s]:.3f}" for s in SCORES)]
            cells += [f"{r['flagged_normal']:.3f}"] if flagged else []
            lines.append("| " + " | ".join(cells) + " |")
        cells = ["**mean**", *(f"**{mean[s]:.4f}**" for s in SCORES)] + ([""] if flagged else [])
        lines += ["| " + " | ".join(cells) + " |", ""]
    return summary, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--seed", type=int, default=0, help="the detector's random_state (0)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--table-only", action="store_true", help="rewrite the tables from the JSON, no runs"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    digits = [int(d) for d in args.digits.split(",")]
    path = RESULTS / "anomaly-default.json"
    new = []
    for protocol in [] if args.table_only else args.protocols.split(","):
        if protocol not in PROTOCOLS:
            raise SystemExit(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
        started = time.perf_counter()
        new += run(protocol, digits, args.seed, args.device, RESULTS / "runs" / "anomaly-default")
        print(f"{protocol}: {time.perf_counter() - started:.0f} s", flush=True)
    # Read the file only now: another call may have written other rows meanwhile.
    saved = json.loads(path.read_text()) if path.exists() else {}
    old = [{"seed": 0} | r for r in saved.get("rows", [])]  # rows before --seed were seed 0
    merged = {(r["protocol"], r["seed"], r["digit"]): r for r in old} | {
        (r["protocol"], r["seed"], r["digit"]): r for r in new
    }
    rows = list(merged.values())
    summary, markdown = summarise(rows)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "aezoo": aezoo.__version__,
    }
    if args.table_only:  # the measuring calls' settings, not this call's
        meta = {k: saved[k] for k in meta if k in saved}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({**meta, "summary": summary, "rows": rows}, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
