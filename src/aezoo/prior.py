"""Generating from a VQ-VAE's discrete codes: the learned PixelCNN prior, trained on the code grids
of the run's training set and saved in RUN_DIR/prior/ (config.json, model.safetensors,
metrics.jsonl); the `uniform` and `used` baselines that show why it is needed; and the
patch-by-patch crossfade between two images' code grids.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from aezoo import runs as ckpt
from aezoo.config import TrainConfig, from_dict, load_json, route_options, to_dict
from aezoo.data import Dataset
from aezoo.data.batches import Batches
from aezoo.device import resolve_device
from aezoo.errors import UsageError
from aezoo.io import write_json
from aezoo.loop import TensorBatches, fit, make_optimizer
from aezoo.models.pixelcnn import PixelCNN, PixelCNNConfig
from aezoo.models.protocols import DiscreteLatent
from aezoo.rundata import RESTORE_DATA, own_data
from aezoo.viz import image_rows, save_figure

PRIOR_DIR = "prior"
SampleMode = Literal["uniform", "used", "prior"]


def code_grid_shape(model: nn.Module) -> tuple[int, int]:
    """The (H, W) grid the prior sees: the model's code grid, or (1, 1) for one code per image."""
    shape = tuple(model.code_shape) or (1, 1)
    return shape[0], shape[1]


@torch.inference_mode()
def encode_dataset(model: nn.Module, dataset: Dataset, device: torch.device) -> Tensor:
    """Every image's code grid, in data-set order: (N, H, W) int64 on `device`."""
    batches = Batches(dataset, 1000, device=device, shuffle=False)
    codes = torch.cat([model.encode_indices(b.x) for b in batches.epoch(0)])
    return codes.reshape(len(dataset), *code_grid_shape(model))


@torch.inference_mode()
def prior_nll(prior: PixelCNN, codes: Tensor, labels: Tensor | None) -> float:
    """Mean −log p(codes) per grid in nats."""
    total = 0.0
    for start in range(0, len(codes), 1000):
        rows = slice(start, start + 1000)
        y = None if labels is None else labels[rows]
        total += float(prior.loss(codes[rows], y)["nll"]) * len(codes[rows])
    return total / len(codes)


def train_prior(
    run_dir: str | Path,
    *,
    conditional: bool = False,
    quiet: bool = False,
    dataset: Any = None,
    labels: Any = None,
    test: Any = None,
    **options: Any,
) -> tuple[PixelCNN, dict[str, Any]]:
    """Fit a gated PixelCNN to the code grids of a VQ-VAE run's training set; save it in
    RUN_DIR/prior/. Options are PixelCNNConfig fields (channels, layers, kernel) and TrainConfig
    fields (epochs, batch_size, lr, seed, device, ...). Returns the prior and its summary. A run
    trained on in-memory data needs its arrays again: dataset=, labels=, test= as aezoo.train
    took them (checked against the recorded sha256)."""
    run_dir = Path(run_dir)
    out = run_dir / PRIOR_DIR
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} already exists; remove it to train a new prior")
    prior_opts, train_opts = route_options(options, PixelCNNConfig)
    train = from_dict(TrainConfig, train_opts)
    device = resolve_device(train.device)
    run = ckpt.load(run_dir, device=device)
    if not isinstance(run.model, DiscreteLatent):
        raise UsageError(f"{run.spec.model} has no discrete codes; train-prior needs a VQ-VAE run")
    given = {"dataset": dataset, "labels": labels, "test": test}
    codes, y, test_codes, test_y, num_classes = _code_data(run, conditional, device, given)
    config = _prior_config(run.model, prior_opts, num_classes)

    torch.manual_seed(train.seed)
    prior = PixelCNN(config).to(device)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / ckpt.CONFIG,
        {"aezoo": run.spec.to_json()["aezoo"], "prior": to_dict(config), "train": to_dict(train)},
    )
    per_grid_bits = codes[0].numel() * math.log(2)

    def evaluate(model: nn.Module) -> dict[str, Any]:
        test_nll = prior_nll(model.eval(), test_codes, test_y)
        return {"test_nll": test_nll, "test_bits_per_code": test_nll / per_grid_bits}

    records: list[dict[str, Any]] = []

    def on_epoch(epoch: int, record: dict[str, Any]) -> None:
        keep = ("epoch", "train_nll", "test_nll", "test_bits_per_code", "seconds")
        records.append({k: record[k] for k in keep})
        with open(out / ckpt.METRICS, "a") as f:
            f.write(json.dumps(records[-1]) + "\n")
        if not quiet:
            print(
                f"prior epoch {epoch}/{train.epochs}  train_nll {record['train_nll']:.3f}  "
                f"test_nll {record['test_nll']:.3f} nats/grid",
                file=sys.stderr,
            )

    batches = TensorBatches(codes, y, train.batch_size, seed=train.seed)
    fit(
        prior, make_optimizer(prior, train), batches, evaluate, train, quiet=True, on_epoch=on_epoch
    )
    ckpt.save_weights(prior, out / ckpt.WEIGHTS)
    summary = {k: v for k, v in records[-1].items() if k != "seconds"}
    summary["train_seconds"] = round(sum(r["seconds"] for r in records), 3)
    write_json(out / ckpt.SUMMARY, summary)
    return prior.eval(), summary


def _prior_config(model: nn.Module, options: dict[str, Any], num_classes: int) -> PixelCNNConfig:
    """The PixelCNN's config: its options, with the codebook and grid of the run's model."""
    grid = {"codebook_size": model.config.codebook_size, "code_shape": code_grid_shape(model)}
    return from_dict(PixelCNNConfig, {**options, **grid, "num_classes": num_classes})


def _code_data(
    run: Any, conditional: bool, device: torch.device, given: dict[str, Any]
) -> tuple[Any, ...]:
    """(codes, labels, test codes, test labels, number of classes) of a run's data sets."""
    train_data, test_data = own_data(run.spec.data, run.spec.data_info, RESTORE_DATA, **given)
    num_classes = train_data.num_classes if conditional else 0
    if conditional and not num_classes:
        raise UsageError("--conditional needs a data set with labels")
    codes, test_codes = (encode_dataset(run.model, d, device) for d in (train_data, test_data))
    labels, test_labels = (
        d.labels.to(device) if num_classes else None for d in (train_data, test_data)
    )
    return codes, labels, test_codes, test_labels, num_classes


def load_prior(run_dir: str | Path, device: str | torch.device = "cpu") -> PixelCNN:
    """The PixelCNN saved in RUN_DIR/prior/ by train_prior."""
    out = Path(run_dir) / PRIOR_DIR
    if not (out / ckpt.CONFIG).is_file():
        raise UsageError(f"{run_dir} has no trained prior; run `aezoo train-prior {run_dir}` first")
    saved = load_json(out / ckpt.CONFIG)
    if not isinstance(saved, dict) or not isinstance(saved.get("prior"), dict):
        raise UsageError(f"{out / ckpt.CONFIG}: not a prior's config (no 'prior' object)")
    prior = PixelCNN(from_dict(PixelCNNConfig, saved["prior"], "prior"))
    ckpt.load_weights(prior, out / ckpt.WEIGHTS)
    return prior.to(device).eval()


def sample_codes(
    model: nn.Module,
    mode: SampleMode,
    n: int,
    *,
    generator: torch.Generator,
    prior: PixelCNN | None = None,
    y: Tensor | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """n code grids (n, *code_shape): `uniform` draws every code equally; `used` draws each
    position independently from the codes' training frequencies; `prior` samples the PixelCNN
    (a class-conditional one with labels `y`, by default 0..C−1 in turn)."""
    k, shape = model.config.codebook_size, (n, *model.code_shape)
    device = generator.device
    if mode == "uniform":
        return torch.randint(k, shape, generator=generator, device=device)
    if mode == "used":
        counts = model.code_counts.to(device)
        if not counts.sum() > 0:
            raise UsageError("this model has no code usage recorded (was it trained?)")
        return torch.multinomial(
            counts, math.prod(shape), replacement=True, generator=generator
        ).reshape(shape)
    if mode == "prior":
        if prior is None:
            raise UsageError("mode 'prior' needs a trained prior (aezoo train-prior RUN_DIR)")
        if y is None and prior.num_classes:
            y = torch.arange(n, device=device) % prior.num_classes
        return prior.sample(n, y, generator, temperature).reshape(shape)
    raise UsageError(f"mode: expected uniform, used or prior, got {mode!r}")


def crossfade_codes(a: Tensor, b: Tensor, frames: int) -> Tensor:
    """Code grids that replace a's codes by b's one position at a time, in raster order:
    (*grid), (*grid) → (frames, *grid), from a (first) to b (last)."""
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    cut = torch.linspace(0, flat_a.numel(), frames).round().long()  # positions taken from b
    position = torch.arange(flat_a.numel())
    taken = position[None, :] < cut[:, None]  # (frames, P)
    return torch.where(taken.to(a.device), flat_b, flat_a).reshape(frames, *a.shape)


@torch.inference_mode()
def write_code_samples(
    run_dir: str | Path,
    modes: tuple[str, ...] | None = None,
    n: int = 100,
    *,
    temperature: float = 1.0,
    label: int | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> list[Path]:
    """figures/samples-<mode>.png for each mode (default: uniform, used, and prior once trained):
    n images decoded from sampled code grids, 10 per row. A conditional prior gets `label`, or
    labels 0..C−1 in turn."""
    if n < 1:
        raise UsageError(f"expected a positive number of samples, got {n}")
    if modes is None:  # every mode that applies: prior once one is trained
        trained = (Path(run_dir) / PRIOR_DIR / ckpt.WEIGHTS).is_file()
        modes = ("uniform", "used", "prior") if trained else ("uniform", "used")
    dev = resolve_device(device)
    run = ckpt.load(run_dir, device=dev)
    prior = load_prior(run_dir, dev) if "prior" in modes else None
    y = None  # a conditional prior's default: labels 0..C−1 in turn (sample_codes)
    if prior is not None and prior.num_classes and label is not None:
        y = torch.full((n,), label, device=dev)
    paths = []
    for mode in modes:
        generator = torch.Generator(dev).manual_seed(seed)
        codes = sample_codes(
            run.model, mode, n, generator=generator, prior=prior, y=y, temperature=temperature
        )  # type: ignore[arg-type]
        images = run.model.decode_indices(codes)
        paths.append(Path(run_dir) / "figures" / f"samples-{mode}.png")
        note = f", T = {temperature:g}" if mode == "prior" and temperature != 1 else ""
        save_figure(
            image_rows(list(images.split(10)), title=f"{run.spec.model}: {mode} codes{note}"),
            paths[-1],
        )
    return paths
