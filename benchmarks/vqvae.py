"""VQ-VAE numbers (issue 4): codebook health, the 20-code codebook, speed, and prior samples.

Each case trains conv-vqvae through the public API into benchmarks/results/runs/vqvae-CASE and
records test MSE, codes used and perplexity next to the targets. The `health-512x64` run then gets
a PixelCNN prior; 1,000 images from each sampling mode (uniform, used, prior) are judged by the
reference classifier (the share classified with probability >= 0.9, the classes covered, the
largest class share). Writes benchmarks/results/vqvae.json and vqvae.md.

    python benchmarks/vqvae.py                       # everything (long on a CPU: run on a GPU)
    python benchmarks/vqvae.py --cases speed-128x32 --threads 2          # the CPU speed target
    python benchmarks/vqvae.py --cases health-512x64 --reuse --temperature 1,0.8,0.6
                                         # judge the trained run's prior at other temperatures
    python benchmarks/vqvae.py --epochs 1 --train-subset 2000 --test-subset 500 \\
        --prior-epochs 1 --prior-channels 8 --prior-layers 2 --samples 50 --no-classifier  # smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

import aezoo
from aezoo.device import resolve_device
from aezoo.prior import load_prior, sample_codes, train_prior
from aezoo.studies.codebook import HEALTH_OFF
from aezoo.tables import markdown_table

RESULTS = Path(__file__).parent / "results"
# The classic tutorial: ±1/K init, codebook + commitment loss, no BatchNorm, Adam 1e-3 constant.
TUTORIAL = {**HEALTH_OFF, "batchnorm": False, "lr": 1e-3, "lr_schedule": "constant"}
SPEED = {"codebook_size": 128, "embedding_dim": 32, "channels": (64, 64)}

# name → (options, epochs, targets: metric → (op, bound))
CASES: dict[str, tuple[dict[str, Any], int, dict[str, tuple[str, float]]]] = {
    "health-512x64": ({}, 5, {"test_mse": ("<=", 0.0040), "test_codes_used_pct": (">=", 90.0)}),
    "tutorial-512x64": (TUTORIAL, 5, {}),
    "health-20": (
        {"codebook_size": 20},
        5,
        {"test_mse": ("<=", 0.010), "test_codes_used_pct": (">=", 100.0)},
    ),
    "plain-20": ({"codebook_size": 20, **HEALTH_OFF}, 5, {}),
    "speed-128x32": (
        SPEED,
        3,
        {
            "test_mse": ("<=", 0.0057),
            "test_codes_used_pct": (">=", 90.0),
            "wall_seconds": ("<=", 45.0),
        },
    ),
    "speed-128x32-bf16": (  # the same under bfloat16 autocast (a CPU with AVX512-BF16 or AMX)
        {**SPEED, "precision": "bf16"},
        3,
        {
            "test_mse": ("<=", 0.0057),
            "test_codes_used_pct": (">=", 90.0),
            "wall_seconds": ("<=", 45.0),
        },
    ),
    "tutorial-128x32": ({**SPEED, **TUTORIAL}, 3, {}),
}
PRIOR_CASE = "health-512x64"
GPU_SPEED_TARGET = 3.0


def meets(value: float, op: str, bound: float) -> bool:
    return value <= bound if op == "<=" else value >= bound


@torch.inference_mode()
def judge_samples(
    run: aezoo.Run, mode: str, n: int, classifier: Any, prior: Any, temperature: float
) -> dict[str, Any]:
    """Classifier verdicts on n images decoded from code grids sampled in `mode`."""
    device = next(run.model.parameters()).device
    generator = torch.Generator(device).manual_seed(0)
    codes = sample_codes(
        run.model, mode, n, generator=generator, prior=prior, temperature=temperature
    )  # type: ignore[arg-type]
    images = torch.cat([run.model.decode_indices(c) for c in codes.split(250)])
    if classifier is None:
        return {"mode": mode, "samples": n}
    probs = torch.softmax(classifier(images.to(next(classifier.parameters()).device)), 1).cpu()
    confident, label = probs.max(1)
    shares = torch.bincount(label, minlength=10).double() / n
    return {
        "mode": mode,
        "samples": n,
        "confident_share": float((confident >= 0.9).double().mean()),
        "classes_covered": int((shares > 0).sum()),
        "largest_class_share": float(shares.max()),
        "meets_target": bool(
            (confident >= 0.9).double().mean() >= 0.9
            and (shares > 0).all()
            and shares.max() <= 0.25
        ),
    }


def sample_key(row: dict[str, Any]) -> tuple:
    return row["run"], row["mode"], row.get("prior"), row.get("temperature")


def describe_prior(path: Path) -> str:
    """A short label of the prior in a run folder: size, epochs, test NLL, conditional or not."""
    config = json.loads((path / "prior" / "config.json").read_text())
    summary = json.loads((path / "prior" / "summary.json").read_text())
    net, train = config["prior"], config["train"]
    kind = "conditional" if net["num_classes"] else "unconditional"
    return (
        f"{kind} {net['channels']}ch×{net['layers']}, {train['epochs']} ep, "
        f"test NLL {summary['test_nll']:.1f}"
    )


def judge_prior(
    run: aezoo.Run, case: str, args: argparse.Namespace, temperatures: list[float]
) -> list[dict[str, Any]]:
    """Train (or with --reuse, load) the run's prior; judge uniform, used and prior samples."""
    if not (args.reuse and (run.path / "prior").exists()):
        shutil.rmtree(run.path / "prior", ignore_errors=True)
        started = time.perf_counter()
        train_prior(
            run.path,
            epochs=args.prior_epochs,
            seed=0,
            channels=args.prior_channels,
            layers=args.prior_layers,
            conditional=args.conditional,
            device=args.device,
            quiet=True,
        )
        print(f"prior of {case}: {time.perf_counter() - started:.0f} s", flush=True)
    device = next(run.model.parameters()).device
    prior = load_prior(run.path, device)
    label = describe_prior(run.path)
    classifier = None
    if not args.no_classifier:
        from aezoo.classifier import reference_classifier

        classifier = reference_classifier(device)
    samples = []
    for mode, temperature in [("uniform", None), ("used", None)] + [
        ("prior", t) for t in temperatures
    ]:
        verdict = judge_samples(run, mode, args.samples, classifier, prior, temperature or 1.0)
        samples.append(
            {
                "run": case,
                **verdict,
                "prior": label if mode == "prior" else None,
                "temperature": temperature,
            }
        )
        print(json.dumps(samples[-1]), flush=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--epochs", type=int, help="override every case's epochs (smoke tests)")
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--test-subset", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--prior-epochs", type=int, default=10)
    parser.add_argument("--prior-channels", type=int, default=64)
    parser.add_argument("--prior-layers", type=int, default=8)
    parser.add_argument(
        "--temperature", default="1.0", help="prior sampling temperature(s), comma-separated"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="load the cases' earlier runs (and the prior, if trained) instead of training again",
    )
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--prior-case", default=PRIOR_CASE, help="the case whose run gets a prior")
    parser.add_argument(
        "--conditional", action="store_true", help="a class-conditional prior (labels 0..9)"
    )
    parser.add_argument("--no-classifier", action="store_true", help="skip the classifier verdicts")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where the JSON, Markdown and runs go"
    )
    args = parser.parse_args()
    results = args.results
    if args.threads:
        torch.set_num_threads(args.threads)
    temperatures = [float(t) for t in args.temperature.split(",")]
    data = {"train_subset": args.train_subset, "test_subset": args.test_subset}
    rows, runs = [], {}
    for case in args.cases.split(","):
        options, epochs, targets = CASES[case]
        epochs = args.epochs or epochs
        out = results / "runs" / f"vqvae-{case}"
        if args.reuse:  # its row stays as recorded
            runs[case] = aezoo.load(out, device=resolve_device(args.device))
            continue
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        run = aezoo.train(
            "conv-vqvae",
            out=out,
            epochs=epochs,
            seed=0,
            device=args.device,
            quiet=True,
            **data,
            **options,
        )
        wall = time.perf_counter() - started  # data loading and moving, training, evaluation
        runs[case] = run
        s = {**run.summary, "wall_seconds": round(wall, 2)}
        on_gpu = next(run.model.parameters()).device.type == "cuda"
        if on_gpu and "wall_seconds" in targets:
            targets = {**targets, "wall_seconds": ("<=", GPU_SPEED_TARGET)}
        verdicts = {k: meets(s[k], op, bound) for k, (op, bound) in targets.items()}
        rows.append(
            {
                "case": case,
                "epochs": epochs,
                "options": options,
                **{
                    k: s.get(k)
                    for k in (
                        "test_mse",
                        "test_codes_used",
                        "test_codes_used_pct",
                        "test_perplexity",
                        "train_seconds",
                        "wall_seconds",
                        "params",
                    )
                },
                "targets": {k: f"{op} {b:g}" for k, (op, b) in targets.items()},
                "meets_target": all(verdicts.values()) if verdicts else None,
            }
        )
        print(json.dumps(rows[-1]))
    samples = []
    if args.prior_case in runs:
        samples = judge_prior(runs[args.prior_case], args.prior_case, args, temperatures)
    meta = {
        "benchmark": "vqvae",
        "torch": torch.__version__,
        "machine": platform.machine(),
        "device": str(args.device),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    results.mkdir(parents=True, exist_ok=True)
    if (results / "vqvae.json").exists():  # merge with earlier cases run separately
        previous = json.loads((results / "vqvae.json").read_text())
        rows = list(
            ({r["case"]: r for r in previous["rows"]} | {r["case"]: r for r in rows}).values()
        )
        old = [r for r in previous.get("samples", []) if "mode" in r]
        for r in old:  # results from before per-run keys: the health-512x64 run's prior
            r.setdefault("run", PRIOR_CASE)
            folder = results / "runs" / f"vqvae-{r['run']}"
            if r["mode"] == "prior" and not r.get("prior") and (folder / "prior").is_dir():
                r["prior"] = describe_prior(folder)
        samples = list(
            ({sample_key(r): r for r in old} | {sample_key(r): r for r in samples}).values()
        )
    (results / "vqvae.json").write_text(
        json.dumps({**meta, "rows": rows, "samples": samples}, indent=2) + "\n"
    )
    columns = (
        "case",
        "epochs",
        "test_mse",
        "test_codes_used_pct",
        "test_perplexity",
        "train_seconds",
        "wall_seconds",
        "targets",
        "meets_target",
    )
    md = ["# VQ-VAE benchmark", "", f"`{json.dumps(meta)}`", "", markdown_table(rows, columns)]
    if samples:
        md += [
            "Samples judged by the reference classifier (a conditional prior samples labels "
            "0..9 in turn):",
            "",
            markdown_table(
                samples,
                (
                    "run",
                    "mode",
                    "prior",
                    "temperature",
                    "samples",
                    "confident_share",
                    "classes_covered",
                    "largest_class_share",
                    "meets_target",
                ),
            ),
            "",
        ]
    (results / "vqvae.md").write_text("\n".join(md))
    print((results / "vqvae.md").read_text())


if __name__ == "__main__":
    main()
