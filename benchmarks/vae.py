"""The VAE family's numbers (issue 3): ELBO, IWAE test NLL, CVAE label accuracy, Fréchet LeNet
distance, and active units with and without KL warm-up / free bits.

Each case trains through the public API into benchmarks/results/runs/vae-<case>/ and records its
numbers next to the target in benchmarks/results/vae.{json,md} (merged with earlier results by
case).

    python benchmarks/vae.py                                  # every case, full settings
    python benchmarks/vae.py --cases nll-dense-vae-50,nll-conv-vae-32 --nll-subset 2000
    python benchmarks/vae.py --small                          # smoke test: seconds, no targets
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

import aezoo
from aezoo.classifier import generation_metrics, reference_classifier, train_classifier
from aezoo.device import machine, resolve_device
from aezoo.metrics import iwae_nll
from aezoo.runs import load_data, make_batches

RESULTS = Path(__file__).parent / "results"
DYNAMIC = {"binarize": "dynamic"}

# name → (model, options, epochs, metric, target, how the metric compares with the target)
CASES: dict[str, tuple[str, dict[str, Any], int, str, float | None, str]] = {
    # batch 64: twice the steps of the default 128 in the same 30 epochs (128 gave 100.19)
    "elbo-dense-vae": ("dense-vae", {"batch_size": 64}, 30, "test_elbo", 100.0, "<="),
    "nll-dense-vae-50": (
        "dense-vae",
        {**DYNAMIC, "latent_dim": 50, "kl_warmup": 10},
        100,
        "test_nll",
        86.0,
        "<=",
    ),
    "nll-iwae-dense-vae-50": (  # trained on the K = 10 importance-weighted bound (IWAE)
        "dense-vae",
        {**DYNAMIC, "latent_dim": 50, "iw_samples": 10, "batch_size": 64},
        100,
        "test_nll",
        86.0,
        "<=",
    ),
    "nll-dreg-dense-vae-50": (  # the same bound, with DReG's encoder gradient
        "dense-vae",
        {**DYNAMIC, "latent_dim": 50, "iw_samples": 10, "iw_gradient": "dreg", "batch_size": 64},
        100,
        "test_nll",
        86.0,
        "<=",
    ),
    "nll-conv-vae-32": (
        "conv-vae",
        {**DYNAMIC, "latent_dim": 32, "channels": (64, 128), "kl_warmup": 10},
        100,
        "test_nll",
        86.0,
        "<=",
    ),
    "cvae": ("cvae", {}, 30, "label_accuracy", 0.95, ">="),
    "au-plain": ("dense-vae", {**DYNAMIC, "latent_dim": 50}, 30, "test_active_units", None, ""),
    "au-warmup": (
        "dense-vae",
        {**DYNAMIC, "latent_dim": 50, "kl_warmup": 10},
        30,
        "test_active_units",
        None,
        "> au-plain",
    ),
    "au-free-bits": (
        "dense-vae",
        {**DYNAMIC, "latent_dim": 50, "free_bits": 0.25},
        30,
        "test_active_units",
        None,
        "> au-plain",
    ),
}
REPORTED = (
    "test_elbo",
    "test_iwae",
    "test_recon",
    "test_recon_mean",
    "test_kl",
    "test_active_units",
    "test_nll",
    "fld",
    "label_accuracy",
)


def classifier_for(small: bool, device: torch.device) -> Any:
    """The cached reference classifier; under --small a throw-away one (1 epoch, 3000 images)."""
    if not small:
        return reference_classifier(device, quiet=False)
    train = aezoo.load_dataset("mnist", "train").subset(3000)
    test = aezoo.load_dataset("mnist", "test").subset(500)
    return train_classifier(train, test, epochs=1, device=device)[0]


def run_case(case: str, args: argparse.Namespace, classifier: Any) -> dict[str, Any]:
    model, options, epochs, metric, target, compares = CASES[case]
    epochs = args.epochs or epochs
    out = RESULTS / "runs" / f"vae-{case}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    run = aezoo.train(
        model,
        out=out,
        epochs=epochs,
        quiet=True,
        seed=0,
        device=args.device,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        **options,
    )
    row: dict[str, Any] = {
        "case": case,
        "model": model,
        "options": options,
        "epochs": epochs,
        "params": run.summary["params"],
        "train_seconds": run.summary["train_seconds"],
    }
    row.update({k: run.summary[k] for k in REPORTED if k in run.summary})
    device = next(run.model.parameters()).device
    _, test = load_data(run.spec.data)
    if metric == "test_nll" or args.nll_all:
        subset = test if args.nll_subset is None else test.subset(args.nll_subset, seed=0)
        _, batches = make_batches(run.spec, subset, subset, device)
        row.update(
            test_nll=iwae_nll(run.model, batches, args.nll_samples, seed=0),
            nll_samples=args.nll_samples,
            nll_images=len(subset),
        )
    if hasattr(run.model, "sample"):
        row.update(generation_metrics(run.model, test, classifier, n=args.fld_samples))
    value = row.get(metric)
    row.update(
        metric=metric,
        value=value,
        target=target,
        compares=compares,
        seconds=round(time.perf_counter() - started, 1),
    )
    if target is not None and value is not None:
        row["meets_target"] = value <= target if compares == "<=" else value >= target
    goal = "" if target is None else f" (target {compares} {target})"
    print(f"{case:<18} {metric} {value:.4g}{goal}  {row['seconds']:.0f}s", flush=True)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    columns = (
        "case",
        "epochs",
        "test_elbo",
        "test_nll",
        "test_kl",
        "test_active_units",
        "fld",
        "label_accuracy",
        "target",
        "meets_target",
        "train_seconds",
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        target = "" if r.get("target") is None else f"{r['metric']} {r['compares']} {r['target']}"
        values = [target if c == "target" else cell(r.get(c)) for c in columns]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--epochs", type=int, help="override every case's epochs")
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--test-subset", type=int)
    parser.add_argument("--nll-samples", type=int, default=1000)
    parser.add_argument("--nll-subset", type=int, help="IWAE NLL on N test images (default all)")
    parser.add_argument("--nll-all", action="store_true", help="IWAE NLL for every case")
    parser.add_argument("--fld-samples", type=int, default=10_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--small",
        action="store_true",
        help="smoke test: 1 epoch on 2000 images, K=5, 500 FLD samples, a "
        "throw-away classifier; results go to vae-small.*",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.small:
        args.epochs, args.train_subset, args.test_subset = 1, 2000, 500
        args.nll_samples, args.fld_samples = 5, 500
    device = resolve_device(args.device)
    classifier = classifier_for(args.small, device)
    rows = [run_case(case, args, classifier) for case in args.cases.split(",")]
    meta = {
        "machine": machine()["cpu"],
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "aezoo": aezoo.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / ("vae-small" if args.small else "vae")
    json_path = stem.with_suffix(".json")
    previous = json.loads(json_path.read_text())["rows"] if json_path.exists() else []
    merged = {r["case"]: r for r in previous} | {r["case"]: r for r in rows}
    json_path.write_text(json.dumps({**meta, "rows": list(merged.values())}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(list(merged.values())))


if __name__ == "__main__":
    main()
