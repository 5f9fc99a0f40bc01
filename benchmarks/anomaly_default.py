"""The image default of `AnomalyDetector()` (issue 15) on the three MNIST protocols, each with the
detector's own defaults (model, score, epochs, threshold), into results/anomaly-default.{json,md}.

Protocols (rows merged by (protocol, seed, digit), so a protocol can be run a few digits per call;
--seed sets the detector's random_state, 0 by default, to show how much a figure moves with it):
  recipe     digit 9 held out, 5,000 training images (the tutorial's size)    target ≥ 0.85
  one-class  Ruff et al. 2018: train on one digit, the other nine anomalous   target mean ≥ 0.98
  holdout    each digit held out in turn, every other training image          target mean ≥ 0.93

Beside the default ("auto" = the combined score) each row has the autoencoder's two parts' plain
relatives from the same training: "latent" (a 50-component mixture on the raw codes, its
covariances unshrunk: an earlier image default's score) and "recon" (‖x − x̂‖²). Hold-out rows
also give the share of normal test images flagged at contamination 0.05 (the threshold's target:
within ×1.5 of it).
`--ablation` measures "no_ae" (kept in results/anomaly-default-ablation.json), training nothing:
the default with the autoencoder taken out, i.e. its own pixel part alone (a mixture on the
training images' 32 leading principal components, nudged copies and best-aligned views and all),
fitted to the same training rows with the same seed (the issue's ablation: the classical part
alone on the raw features).

    OMP_NUM_THREADS=1 python benchmarks/anomaly_default.py --protocols recipe,one-class --threads 1
    OMP_NUM_THREADS=1 python benchmarks/anomaly_default.py --protocols holdout --digits 0,1,2,3,4
    OMP_NUM_THREADS=1 python benchmarks/anomaly_default.py --protocols recipe,one-class --ablation
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aezoo
from aezoo.anomaly.combined import fit_pixel_density, lowest_over_views, mixture_copies
from aezoo.anomaly.fitting import threshold_rows
from aezoo.anomaly.params import SMALL_SET
from aezoo.anomaly.protocols import mnist_holdout, mnist_one_class
from aezoo.data import load_dataset
from aezoo.device import machine

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = ("recipe", "one-class", "holdout")
TARGETS = {"recipe": 0.85, "one-class": 0.98, "holdout": 0.93}
SCORES = ("auto", "latent", "recon")  # the default first; one training serves all three
COMPONENTS = 50  # the latent score's mixture, as the combined score's
CODE_WIDTH = 32  # dense-ae's code: the pixel part keeps as many principal components


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


def without_autoencoder(protocol: str, digit: int, seed: int) -> float:
    """AUROC of the default's own pixel part alone (combined.fit_pixel_density: a mixture on the
    training images' leading principal components, as many as the code is wide, nudged copies of
    a small set, whose test images are scored by their best-aligned one-pixel view), fitted to
    the same training rows as the default's (its threshold rows held out) with the same seed: the
    default with the autoencoder's two parts taken out."""
    from sklearn.metrics import roc_auc_score

    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    if protocol == "one-class":
        normal, is_anomaly = train.select(train.labels == digit), test.labels != digit
    else:
        normal, is_anomaly = train.select(train.labels != digit), test.labels == digit
        if protocol == "recipe":
            normal = normal.subset(5000, seed=0)  # the protocol's own subset
    x = normal.images.numpy().astype(np.float32) / 255
    x = np.delete(x, threshold_rows(len(x), seed), axis=0)  # as the default's training rows
    small = len(x) < SMALL_SET  # as the default: nudged copies, half shrinkage, views
    copies, shrinkage = mixture_copies(x, small)
    pixels = fit_pixel_density(copies, CODE_WIDTH, COMPONENTS, seed, shrinkage)
    images = test.images.numpy().astype(np.float32) / 255
    scores = lowest_over_views(pixels.anomaly, images) if small else pixels.anomaly(images)
    return float(roc_auc_score(is_anomaly.numpy(), scores))


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
        ablated = all("no_ae" in r for r in mine)
        if ablated:
            mean["no_ae"] = float(np.mean([r["no_ae"] for r in mine]))
        summary[name] = {
            "mean": mean,
            "digits": [r["digit"] for r in mine],
            "complete": len(mine) == expected,
            "target": TARGETS[protocol],
            "meets_target": len(mine) == expected and mean["auto"] >= TARGETS[protocol],
        }
        flagged = "flagged_normal" in mine[0]
        columns = [*SCORES, "no_ae"] if ablated else list(SCORES)
        head = "| digit | default (auto) | latent | recon |"
        head += " no autoencoder |" if ablated else ""
        head += " flagged @0.05 |" if flagged else ""
        lines += [f"#### {name} (target {TARGETS[protocol]})", "", head]
        lines.append("|---:|---:|---:|---:|" + "---:|" * (ablated + flagged))
        for r in mine:
            cells = [str(r["digit"]), *(f"{r[s]:.3f}" for s in columns)]
            cells += [f"{r['flagged_normal']:.3f}"] if flagged else []
            lines.append("| " + " | ".join(cells) + " |")
        cells = ["**mean**", *(f"**{mean[s]:.4f}**" for s in columns)] + ([""] if flagged else [])
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
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="measure the no-autoencoder figure only (no training; its own JSON file)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    digits = [int(d) for d in args.digits.split(",")]
    path = RESULTS / "anomaly-default.json"
    new, ablation = [], {}
    for protocol in [] if args.table_only else args.protocols.split(","):
        if protocol not in PROTOCOLS:
            raise SystemExit(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
        started = time.perf_counter()
        if args.ablation:
            for digit in [9] if protocol == "recipe" else digits:
                value = without_autoencoder(protocol, digit, args.seed)
                ablation[protocol, args.seed, digit] = value
                print(
                    f"{protocol} {digit} seed {args.seed}: no autoencoder {value:.4f}", flush=True
                )
            continue
        new += run(protocol, digits, args.seed, args.device, RESULTS / "runs" / "anomaly-default")
        print(f"{protocol}: {time.perf_counter() - started:.0f} s", flush=True)
    # Read the file only now: another call may have written other rows meanwhile.
    saved = json.loads(path.read_text()) if path.exists() else {}
    old = [{"seed": 0} | r for r in saved.get("rows", [])]  # rows before --seed were seed 0
    merged = {(r["protocol"], r["seed"], r["digit"]): r for r in old} | {
        (r["protocol"], r["seed"], r["digit"]): r for r in new
    }
    rows = list(merged.values())
    # The ablation trains nothing, so it keeps its own file: a call measuring the default and one
    # adding the ablation never write each other's rows.
    ablated_path = RESULTS / "anomaly-default-ablation.json"
    saved_ablation = json.loads(ablated_path.read_text()) if ablated_path.exists() else {}
    no_ae = {
        (r["protocol"], r["seed"], r["digit"]): r["no_ae"] for r in saved_ablation.get("rows", [])
    }
    no_ae |= ablation
    for row in rows:
        key = (row["protocol"], row["seed"], row["digit"])
        row.pop("no_ae", None)
        if key in no_ae:
            row["no_ae"] = no_ae[key]
    summary, markdown = summarise(rows)
    meta = {
        "machine": machine()["cpu"],  # the CPU model: trainings differ between CPUs
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "aezoo": aezoo.__version__,
    }
    if args.table_only or args.ablation:  # the measuring calls' settings, not this call's
        meta = {k: saved[k] for k in meta if k in saved}
    RESULTS.mkdir(exist_ok=True)
    if ablation:
        ablated = [
            {"protocol": p, "seed": s, "digit": d, "no_ae": v} for (p, s, d), v in no_ae.items()
        ]
        ablated_path.write_text(json.dumps({"rows": ablated}, indent=2) + "\n")
        path.with_suffix(".md").write_text(markdown)
        print(markdown)
        return  # the default's rows are the measuring calls' to write
    path.write_text(json.dumps({**meta, "summary": summary, "rows": rows}, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
