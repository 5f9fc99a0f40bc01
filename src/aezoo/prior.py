"""Generating from a VQ-VAE's discrete codes: the learned PixelCNN prior, trained on the code grids
of the run's training set and saved in RUN_DIR/prior/ (config.json, model.safetensors,
metrics.jsonl); the `uniform` and `used` baselines that show why it is needed; and the
patch-by-patch crossfade between two images' code grids.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from aezoo import runs as ckpt
from aezoo.config import TrainConfig, from_dict, load_json, to_dict
from aezoo.data import Dataset
from aezoo.data.batches import Batches, epoch_seed
from aezoo.device import resolve_device
from aezoo.errors import TrainingError, UsageError
from aezoo.loop import lr_at, make_optimizer
from aezoo.models.pixelcnn import PixelCNN, PixelCNNConfig
from aezoo.models.protocols import DiscreteLatent
from aezoo.runs import load_data
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
    run_dir: str | Path, *, conditional: bool = False, quiet: bool = False, **options: Any
) -> tuple[PixelCNN, dict[str, Any]]:
    """Fit a gated PixelCNN to the code grids of a VQ-VAE run's training set; save it in
    RUN_DIR/prior/. Options are PixelCNNConfig fields (channels, layers, kernel) and TrainConfig
    fields (epochs, batch_size, lr, seed, device, ...). Returns the prior and its summary."""
    run_dir = Path(run_dir)
    out = run_dir / PRIOR_DIR
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} already exists; remove it to train a new prior")
    prior_fields = {f.name for f in dataclasses.fields(PixelCNNConfig)}
    train_opts = {k: v for k, v in options.items() if k not in prior_fields}
    train = from_dict(TrainConfig, train_opts)
    device = resolve_device(train.device)
    run = ckpt.load(run_dir, device=device)
    if not isinstance(run.model, DiscreteLatent):
        raise UsageError(f"{run.spec.model} has no discrete codes; train-prior needs a VQ-VAE run")
    train_data, test_data = load_data(run.spec.data)
    num_classes = train_data.num_classes if conditional else 0
    if conditional and not num_classes:
        raise UsageError("--conditional needs a data set with labels")
    config = from_dict(
        PixelCNNConfig,
        {
            **{k: v for k, v in options.items() if k in prior_fields},
            "codebook_size": run.model.config.codebook_size,
            "code_shape": code_grid_shape(run.model),
            "num_classes": num_classes,
        },
    )
    codes, test_codes = (encode_dataset(run.model, d, device) for d in (train_data, test_data))
    labels, test_labels = (
        d.labels.to(device) if num_classes else None for d in (train_data, test_data)
    )

    torch.manual_seed(train.seed)
    prior = PixelCNN(config).to(device)
    optimizer = make_optimizer(prior, train)
    steps = math.ceil(len(codes) / train.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    ckpt.write_json(
        out / ckpt.CONFIG,
        {"aezoo": run.spec.to_json()["aezoo"], "prior": to_dict(config), "train": to_dict(train)},
    )
    records = []
    for epoch in range(train.epochs):
        seed = epoch_seed(train.seed, epoch)
        torch.manual_seed(seed)
        order = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))
        order = order.to(device)
        prior.train()
        started, nll_sum = time.perf_counter(), torch.zeros((), device=device)
        for i in range(steps):
            rows = order[i * train.batch_size : (i + 1) * train.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(train, epoch * steps + i, train.epochs * steps)
            nll = prior.loss(codes[rows], None if labels is None else labels[rows])["nll"]
            optimizer.zero_grad(set_to_none=True)
            nll.backward()
            if train.clip_grad is not None:
                nn.utils.clip_grad_norm_(prior.parameters(), train.clip_grad)
            optimizer.step()
            nll_sum += nll.detach() * len(rows)
        train_nll = float(nll_sum) / len(codes)  # one host read per epoch
        if not math.isfinite(train_nll):
            raise TrainingError(
                f"the prior's loss became non-finite in epoch {epoch + 1}; try a lower --lr"
            )
        prior.eval()
        test_nll = prior_nll(prior, test_codes, test_labels)
        record = {
            "epoch": epoch + 1,
            "train_nll": train_nll,
            "test_nll": test_nll,
            "test_bits_per_code": test_nll / (codes[0].numel() * math.log(2)),
            "seconds": round(time.perf_counter() - started, 3),
        }
        records.append(record)
        with open(out / ckpt.METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        if not quiet:
            print(
                f"prior epoch {epoch + 1}/{train.epochs}  train_nll {train_nll:.3f}  "
                f"test_nll {test_nll:.3f} nats/grid",
                file=sys.stderr,
            )
    ckpt.save_weights(prior, out / ckpt.WEIGHTS)
    summary = {k: v for k, v in records[-1].items() if k != "seconds"}
    summary["train_seconds"] = round(sum(r["seconds"] for r in records), 3)
    ckpt.write_json(out / ckpt.SUMMARY, summary)
    return prior.eval(), summary


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
        counts = model.quantizer.code_counts.to(device)
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
