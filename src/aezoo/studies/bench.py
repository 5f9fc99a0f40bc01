"""How fast every model trains here, next to the way the usual tutorials feed MNIST.

For each model, in one process: training and evaluation images/s, peak memory, seconds per epoch on
the training set, and seconds to reach a stated quality; beside them the tutorial reference — a
torch DataLoader (batch 128, shuffle) over a Dataset that makes one PIL image per sample and
converts it to a float tensor, as torchvision's MNIST + ToTensor do — training the same model with
the same optimiser. Reference and aezoo epochs alternate, so machine noise hits both, and the ratio
survives a noisy machine better than either time. Scaling: seconds per epoch against the number
of training images and against the batch size. aezoo's side is always `loop.fit` itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from aezoo.config import DataConfig, to_dict
from aezoo.data import Dataset
from aezoo.device import machine, place_model, resolve_device, set_up_device
from aezoo.errors import UsageError
from aezoo.loop import fit, make_optimizer
from aezoo.metrics import evaluator
from aezoo.models import MODELS, build_from_config, count_parameters, preset
from aezoo.runs import load_data, make_batches, make_spec
from aezoo.studies.reference import reference_epoch, reference_loader
from aezoo.tables import markdown_header, markdown_row

# name → (metric, bound): the quality whose training time is reported. dense-vae's and conv-ae's
# are issue 7's; the others are provisional, to be confirmed by a full run.
TARGETS: dict[str, tuple[str, float]] = {
    "dense-ae": ("test_mse", 0.010),
    "conv-ae": ("test_mse", 0.006),
    "upsample-ae": ("test_mse", 0.006),
    "dense-vae": ("test_elbo", 105.0),
    "conv-vae": ("test_elbo", 105.0),
    "cvae": ("test_elbo", 105.0),
    "conv-cvae": ("test_elbo", 105.0),
    "conv-vqvae": ("test_mse", 0.006),
    "dense-vqvae": ("test_mse", 0.050),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a benchmark run measures; `quick()` is the seconds-long smoke test."""

    train_images: int | None = None  # None: the whole training set
    test_images: int | None = None
    repeats: int = 3  # timed epochs per model, after one warm-up epoch
    quality_epochs: int = 20  # the most epochs spent trying to reach the target
    scaling_models: tuple[str, ...] = ("dense-ae", "conv-ae")
    scaling_images: tuple[int, ...] = (1_000, 10_000, 60_000)
    scaling_batches: tuple[int, ...] = (64, 128, 256, 512, 1024)
    options: tuple[tuple[str, Any], ...] = ()  # training options: device, precision, compile...
    tag: str = ""  # added to the result files' names

    def __post_init__(self) -> None:
        counts = {"repeats": self.repeats, "quality_epochs": self.quality_epochs}
        counts["train_images"] = 1 if self.train_images is None else self.train_images
        for name, value in counts.items():
            if value < 1:
                raise UsageError(f"bench {name.replace('_', '-')}: must be > 0, got {value}")

    @classmethod
    def quick(cls, **changes: Any) -> Settings:
        small = cls(2_000, 500, 1, 1, ("dense-ae",), (500, 1_000, 2_000), (64, 256, 1_024))
        return dataclasses.replace(small, tag="quick", **changes)


# --- measurements ------------------------------------------------------------------------------
class _Reached(Exception):
    """Raised from fit's on_epoch once the quality target is met."""


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif os.path.exists("/proc/self/clear_refs"):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: the peak RSS (VmHWM) restarts from the current RSS


def _peak_mb(device: torch.device) -> float | None:
    """Peak memory since `_reset_peak`: allocated CUDA memory, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _setup(name: str, train: Dataset, test: Dataset, settings: Settings, **overrides: Any):
    """A fresh model (seed 0), its optimizer, batches and spec, as `aezoo train` makes them."""
    spec = make_spec(name, {**dict(settings.options), **overrides}, train)
    device = resolve_device(spec.train.device)
    set_up_device(device, spec.train)
    torch.manual_seed(0)
    net = place_model(build_from_config(spec.model, to_dict(spec.model_config)), device, spec.train)
    train_batches, test_batches = make_batches(spec, train, test, device)
    return spec, net, make_optimizer(net, spec.train), train_batches, test_batches


def bench_model(name: str, train: Dataset, test: Dataset, settings: Settings) -> dict[str, Any]:
    """Throughput and peak memory of `fit` on `name`, alternating with the reference epochs."""
    spec, net, optimizer, train_batches, test_batches = _setup(name, train, test, settings)
    device = next(net.parameters()).device
    # The tutorial's side: the same model and optimizer, built as a tutorial builds them (fp32,
    # default memory layout), fed by the DataLoader.
    torch.manual_seed(0)
    ref_net = build_from_config(spec.model, to_dict(spec.model_config)).to(device)
    ref_optimizer = make_optimizer(ref_net, spec.train)
    loader = reference_loader(train, 128)
    reference: list[float] = []
    peak: list[float | None] = []

    def after_epoch(epoch: int, record: dict[str, Any]) -> None:
        if epoch == 1:  # our warm-up epoch and its evaluation: the peak is ours alone
            peak.append(_peak_mb(device))
        else:
            reference.append(reference_epoch(ref_net, ref_optimizer, loader))

    _reset_peak(device)
    config = dataclasses.replace(spec.train, epochs=1 + settings.repeats)
    evaluate = evaluator(test_batches, seed=config.seed)
    records = fit(net, optimizer, train_batches, evaluate, config, quiet=True, on_epoch=after_epoch)
    reference.append(reference_epoch(ref_net, ref_optimizer, loader))
    seconds = statistics.median(r["seconds"] for r in records[1:])
    eval_seconds = statistics.median(r["eval_seconds"] for r in records[1:])
    ref_seconds = statistics.median(reference)
    return {
        "model": name,
        "params": count_parameters(net),
        "train_images": len(train),
        "epoch_s": round(seconds, 3),
        "first_epoch_s": round(records[0]["seconds"], 3),  # warm-up, and compile with --compile
        "train_images_per_s": round(len(train) / seconds),
        "eval_images_per_s": round(len(test) / eval_seconds),
        "peak_memory_mb": None if peak[0] is None else round(peak[0], 1),
        "reference_epoch_s": round(ref_seconds, 3),
        "speedup": round(ref_seconds / seconds, 2),
        "epoch_seconds": [r["seconds"] for r in records],
        "reference_seconds": [round(s, 3) for s in reference],
    }


def time_to_target(name: str, train: Dataset, test: Dataset, settings: Settings) -> dict[str, Any]:
    """Training seconds (evaluations excluded) until the test metric meets TARGETS[name], with the
    preset's training defaults and a learning-rate schedule over `quality_epochs` epochs."""
    metric, bound = TARGETS[name]
    spec, net, optimizer, train_batches, test_batches = _setup(
        name, train, test, settings, epochs=settings.quality_epochs
    )
    elapsed, best = 0.0, float("inf")

    def check(epoch: int, record: dict[str, Any]) -> None:
        nonlocal elapsed, best
        elapsed += record["seconds"]
        best = min(best, record.get(metric, float("inf")))
        if best <= bound:
            raise _Reached(epoch)

    result = {"metric": metric, "target": bound}
    try:
        evaluate = evaluator(test_batches, seed=spec.train.seed)
        fit(net, optimizer, train_batches, evaluate, spec.train, quiet=True, on_epoch=check)
    except _Reached as reached:
        return {**result, "reached": True, "epochs": reached.args[0], "seconds": round(elapsed, 2)}
    return {**result, "reached": False, "epochs": settings.quality_epochs, "best": best}


def scaling(name: str, train: Dataset, test: Dataset, settings: Settings) -> list[dict[str, Any]]:
    """Seconds per epoch against the number of training images (batch 128) and against the
    batch size (all the training images of the run)."""
    points = [(n, 128) for n in settings.scaling_images if n <= len(train)]
    points += [(len(train), b) for b in settings.scaling_batches]
    rows = []
    for images, batch_size in points:
        subset = train.subset(images, seed=0)
        spec, net, optimizer, train_batches, test_batches = _setup(
            name, subset, test, settings, batch_size=batch_size
        )
        config = dataclasses.replace(spec.train, epochs=1 + settings.repeats)
        evaluate = evaluator(test_batches, seed=config.seed)
        records = fit(net, optimizer, train_batches, evaluate, config, quiet=True)
        seconds = statistics.median(r["seconds"] for r in records[1:])
        rows.append(
            {
                "model": name,
                "images": images,
                "batch_size": batch_size,
                "epoch_s": round(seconds, 3),
                "images_per_s": round(images / seconds),
            }
        )
    return rows


# --- the whole benchmark -------------------------------------------------------------------
def run(
    models: Sequence[str] | None = None,
    *,
    out: str | Path,
    settings: Settings | None = None,
    quality: bool = True,
    scale: bool = True,
    quiet: bool = False,
) -> Path:
    """Benchmark `models` (default: all registered) and write OUT/bench-DEVICE[-TAGS].json and
    .md (tags: quick, compile, bf16, threadsN); returns the Markdown file's path."""
    settings = settings or Settings()
    models = list(models) if models else list(MODELS)
    check_models(models)
    check_models(settings.scaling_models)
    train, test = load_data(
        DataConfig(train_subset=settings.train_images, test_subset=settings.test_images)
    )
    device = resolve_device(dict(settings.options).get("device", "auto"))
    result: dict[str, Any] = {
        "benchmark": "bench",
        "settings": {**dataclasses.asdict(settings), "options": dict(settings.options)},
        "device": str(device),
        "machine": machine(device),
        "models": [],
        "scaling": [],
    }
    if not quiet:
        print(HEADER, flush=True)
    for name in models:
        row = bench_model(name, train, test, settings)
        if quality and name in TARGETS:
            row["quality"] = time_to_target(name, train, test, settings)
        result["models"].append(row)
        if not quiet:
            print(model_row(row), flush=True)
    for name in settings.scaling_models if scale else ():
        result["scaling"] += scaling(name, train, test, settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(settings.options)
    tags = [settings.tag, "compile" if options.get("compile") else ""]
    tags += [options.get("precision") if options.get("precision") == "bf16" else ""]
    tags += [f"threads{options['threads']}" if options.get("threads") else ""]
    stem = out / "-".join(filter(None, ("bench", device.type, *tags)))
    result = merge_previous(result, stem.with_suffix(".json"))
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    return stem.with_suffix(".md")


def merge_previous(result: dict[str, Any], path: Path) -> dict[str, Any]:
    """`result` with the rows of an earlier run in the same file that it did not measure again
    (same device and data size), so a long benchmark can be run a few models at a time."""
    if not path.exists():
        return result
    try:
        previous = json.loads(path.read_text())
        same = previous["device"] == result["device"] and [
            r["train_images"] for r in previous["models"][:1]
        ] == [r["train_images"] for r in result["models"][:1]]
    except (ValueError, KeyError, TypeError):
        return result  # not a result file of this version: replaced
    if not same:
        return result
    measured = {r["model"] for r in result["models"]}
    scaled = {r["model"] for r in result["scaling"]}
    return {
        **result,
        "models": [r for r in previous["models"] if r["model"] not in measured] + result["models"],
        "scaling": [r for r in previous["scaling"] if r["model"] not in scaled] + result["scaling"],
    }


# --- Markdown ---------------------------------------------------------------------------------
HEADER = markdown_header(
    (
        "model",
        "params",
        "train img/s",
        "eval img/s",
        "peak MiB",
        "s/epoch",
        "reference s/epoch",
        "speed-up",
        "to target",
    ),
    (False, *[True] * 7, False),
)


def _quality(row: dict[str, Any]) -> str:
    q = row.get("quality")
    if q is None:
        return "—"
    goal = f"{q['metric']} ≤ {q['target']:g}"
    if q["reached"]:
        return f"{q['seconds']:.1f} s ({q['epochs']} ep.) to {goal}"
    return f"not in {q['epochs']} ep. (best {q['best']:.4g}) to {goal}"


def model_row(row: dict[str, Any]) -> str:
    peak = "—" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}"
    return markdown_row(
        (
            row["model"],
            f"{row['params']:,}",
            f"{row['train_images_per_s']:,}",
            f"{row['eval_images_per_s']:,}",
            peak,
            f"{row['epoch_s']:.2f}",
            f"{row['reference_epoch_s']:.2f}",
            f"{row['speedup']:.2f}×",
            _quality(row),
        )
    )


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        f"Device {result['device']}: {m.get('gpu', m['cpu'])}, {m['threads']} threads, "
        f"torch {m['torch']}. Training images per epoch: {result['models'][0]['train_images']:,}"
        f"; {s['repeats']} timed epochs after a warm-up (the last call; each row's epochs are in "
        f"the JSON); options {s['options'] or 'default'}.",
        "",
        HEADER,
        *(model_row(row) for row in result["models"]),
    ]
    if result["scaling"]:
        lines += [
            "",
            "Scaling (seconds per epoch):",
            "",
            markdown_header(
                ("model", "images", "batch", "s/epoch", "img/s"), (False, True, True, True, True)
            ),
        ]
        lines += [
            markdown_row(
                (
                    r["model"],
                    f"{r['images']:,}",
                    r["batch_size"],
                    f"{r['epoch_s']:.3f}",
                    f"{r['images_per_s']:,}",
                )
            )
            for r in result["scaling"]
        ]
    return "\n".join(lines) + "\n"


def check_models(names: Sequence[str]) -> None:
    """Unknown names are errors before anything runs."""
    for name in names:
        preset(name)
    if len(set(names)) != len(names):
        raise UsageError("bench: a model is named twice in --models")
