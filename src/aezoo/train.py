"""One training loop for every model (`fit`), and `train` which wraps it in a run folder.

Reproducibility: the weights are initialised after `torch.manual_seed(seed)`; epoch k's data order,
corruption and binarisation draw from generators seeded by (seed, k), and the global RNG (dropout,
reparameterisation) is reseeded from (seed, k) at the start of the epoch. So a run resumed from the
checkpoint after epoch k continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aezoo import checkpoint as ckpt
from aezoo.checkpoint import RunSpec
from aezoo.config import DataConfig, TrainConfig, from_dict, load_json, to_dict
from aezoo.data import Dataset, binarize_once, load_dataset
from aezoo.data.batches import Batches, parse_corruption
from aezoo.errors import Interrupted, TrainingError, UsageError
from aezoo.evaluate import evaluate
from aezoo.models import build_from_config, count_parameters, preset

WARMDOWN = 0.3  # the fraction of steps over which lr_schedule="warmdown" decays
TEST_SEED = 12345  # fixes the test set's corruption and binarisation across runs
COLLAPSE_KL = 0.5  # nats per image: below this total KL the latent code carries almost nothing


class PosteriorCollapseWarning(UserWarning):
    """The posterior q(z|x) has fallen back to the prior: the decoder ignores the latent code."""


def collapse_message(record: Mapping[str, Any]) -> str | None:
    """Why an epoch's test metrics look like posterior collapse, with remedies; None if they do
    not (or the model reports no active units / KL)."""
    units, kl = record.get("test_active_units"), record.get("test_kl")
    if units is None or kl is None or (units > 0 and kl >= COLLAPSE_KL):
        return None
    return (
        f"posterior collapse at epoch {record.get('epoch', '?')}: {units} active latent units, "
        f"test KL {kl:.3g} nats per image; remedies: a KL warm-up (--kl-warmup 10), free bits "
        "(--free-bits 0.5), a smaller β, or a smaller decoder"
    )


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda, else mps, else cpu; an explicit device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(kind, False):
        raise UsageError(f"device {name!r} is not available on this machine")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int) -> int:
    """The global-RNG seed for epoch `epoch`: a function of (seed, epoch) alone."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) % (2**63)


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at `step` of `total_steps` (see TrainConfig.lr_schedule); ends at lr/100."""
    progress = min(1.0, step / max(1, total_steps))
    if config.lr_schedule == "cosine":
        return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))
    if config.lr_schedule == "warmdown":
        decay = max(0.0, (progress - (1.0 - WARMDOWN)) / WARMDOWN)  # 0 until the last 30%, → 1
        return config.lr * (1.0 - 0.99 * decay)
    return config.lr


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (= Adam when weight_decay is 0), fused on devices that support it."""
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Batches,
    test: Batches,
    config: TrainConfig,
    *,
    start_epoch: int = 0,
    quiet: bool = False,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train from `start_epoch` to `config.epochs`; returns one metrics record per epoch.

    Each step: terms = model.loss(x, y, x̃); the KL weight follows the schedule; total.backward();
    optional gradient clipping; optimizer step. Terms are summed on the device and read once per
    epoch, so the loop never waits for the accelerator. A non-finite loss stops training with a
    TrainingError before the weights it produced are saved.
    """
    device = next(model.parameters()).device
    check_every = 1 if device.type == "cpu" else 50  # a check is a host sync on accelerators
    steps_per_epoch = len(train)
    total_steps = config.epochs * steps_per_epoch
    records = []
    warned_collapse = False
    show_bar = not quiet and sys.stderr.isatty()
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(epoch_seed(config.seed, epoch))
        model.train()
        sums: dict[str, Tensor] = {}
        seen = 0
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not show_bar,
            leave=False,
            file=sys.stderr,
        )
        for i, batch in enumerate(train.epoch(epoch)):
            step = epoch * steps_per_epoch + i
            lr = lr_at(config, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            kl_weight = config.kl_weight(epoch, i / steps_per_epoch)
            terms = model.loss(batch.x, batch.y, batch.x_in).reweight("kl", kl_weight)
            total = terms.total
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if config.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            n = batch.x.shape[0]
            for name, value in [*terms.items(), ("loss", total)]:
                value = value.detach() * n
                sums[name] = sums[name] + value if name in sums else value
            if (i + 1) % check_every == 0 and not torch.isfinite(sums["loss"]):
                bad = [k for k, v in sums.items() if not torch.isfinite(v)]
                raise TrainingError(
                    f"the loss became non-finite at step {step + 1} (epoch {epoch + 1}; terms: "
                    f"{', '.join(bad)}); try a lower --lr or --clip-grad. The last good "
                    "checkpoint is kept."
                )
            optimizer.step()
            seen += n
            if show_bar and (i % 20 == 0 or i == steps_per_epoch - 1):
                bar.set_postfix({k: f"{float(v) / seen:.4g}" for k, v in sums.items()})
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - started
        if not torch.isfinite(sums["loss"]):
            raise TrainingError(
                f"the loss became non-finite in epoch {epoch + 1}; try a lower "
                "--lr or --clip-grad. The last good checkpoint is kept."
            )
        record: dict[str, Any] = {"epoch": epoch + 1}
        record.update({f"train_{k}": float(v) / seen for k, v in sums.items()})
        started_eval = time.perf_counter()
        record.update(evaluate(model, test, seed=config.seed))
        record.update(
            lr=lr,
            kl_weight=kl_weight,
            seconds=round(seconds, 3),
            eval_seconds=round(time.perf_counter() - started_eval, 3),
        )
        records.append(record)
        collapse = collapse_message(record)
        if collapse is not None and not warned_collapse:
            warnings.warn(collapse, PosteriorCollapseWarning, stacklevel=2)
            warned_collapse = True
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
        if not show_bar and not quiet:
            print(
                f"epoch {epoch + 1}/{config.epochs}  train_loss {record['train_loss']:.4f}  "
                f"test_loss {record['test_loss']:.4f}  test_mse {record['test_mse']:.5f}  "
                f"{seconds:.1f}s",
                file=sys.stderr,
            )
    return records


def split_options(options: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """Sort keyword options into (train, data, model) by the config that has the field."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    data_fields = {f.name for f in dataclasses.fields(DataConfig)}
    train, data, model = {}, {}, {}
    for key, value in options.items():
        (train if key in train_fields else data if key in data_fields else model)[key] = value
    return train, data, model


def load_data(config: DataConfig) -> tuple[Dataset, Dataset]:
    """The (train, test) data sets of a DataConfig, with subsets and static binarisation."""
    train = load_dataset(config.dataset, "train", data_dir=config.data_dir)
    test = load_dataset(config.dataset, "test", data_dir=config.data_dir)
    if config.train_subset is not None:
        train = train.subset(config.train_subset, seed=0)
    if config.test_subset is not None:
        test = test.subset(config.test_subset, seed=0)
    if config.binarize == "static":
        train = binarize_once(train, seed=TEST_SEED + 1)
    if config.binarize != "none":
        test = binarize_once(test, seed=TEST_SEED)
    return train, test


def make_batches(
    spec: RunSpec, train: Dataset, test: Dataset, device: torch.device
) -> tuple[Batches, Batches]:
    corruption = parse_corruption(spec.data.noise) if spec.data.noise else None
    train_batches = Batches(
        train,
        spec.train.batch_size,
        device=device,
        seed=spec.train.seed,
        shuffle=True,
        binarize="dynamic" if spec.data.binarize == "dynamic" else "none",
        corruption=corruption,
    )
    test_batches = Batches(
        test,
        spec.train.eval_batch_size,
        device=device,
        seed=TEST_SEED,
        shuffle=False,
        corruption=corruption,
    )
    return train_batches, test_batches


def default_run_dir(model: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{model}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path("runs") / f"{model}-{stamp}-{suffix}"
    return path


def make_spec(model: str, options: Mapping[str, Any], train_data: Dataset) -> RunSpec:
    """A RunSpec from a model name and flat options; the model's image shape comes from the data."""
    train_opts, data_opts, model_opts = split_options(options)
    p = preset(model)
    fields = {f.name for f in dataclasses.fields(p.config)}
    if "image_shape" in fields:
        model_opts.setdefault("image_shape", train_data.image_shape)
    if (
        "num_classes" in fields
        and p.options.get("num_classes", 0)
        and "num_classes" not in model_opts
    ):
        model_opts["num_classes"] = max(train_data.num_classes, p.options["num_classes"])
    return RunSpec(
        model,
        p.make_config(**model_opts),
        from_dict(TrainConfig, {**p.training, **train_opts}),
        from_dict(DataConfig, data_opts),
    )


def train(
    model: str | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    tensorboard: bool = False,
    **options: Any,
) -> ckpt.Run:
    """Train `model` (a registry name) with flat options, e.g. train("dense-ae", epochs=5,
    latent_dim=16, train_subset=5000), writing a run folder; or continue `resume=RUN_DIR`.
    `tensorboard=True` also logs to RUN_DIR/tensorboard (needs the tensorboard extra)."""
    if tensorboard:
        from aezoo.tblog import summary_writer_class

        summary_writer_class()  # missing tensorboard is an error before anything is written
    if resume is not None:
        return _resume(Path(resume), quiet=quiet, tensorboard=tensorboard, **options)
    if model is None:
        raise UsageError("name a model to train (see `aezoo list`), or pass resume=RUN_DIR")
    preset(model)
    train_opts, data_opts, _ = split_options(options)
    data_config = from_dict(DataConfig, data_opts)
    device = resolve_device(from_dict(TrainConfig, train_opts).device)
    train_data, test_data = load_data(data_config)
    spec = make_spec(model, options, train_data)
    run_dir = Path(out) if out is not None else default_run_dir(model)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder; choose another --out")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(
            f"{run_dir} already exists and is not empty; choose another --out, or "
            f"continue it with --resume {run_dir}"
        )
    torch.manual_seed(spec.train.seed)
    net = build_from_config(spec.model, to_dict(spec.model_config)).to(device)
    optimizer = make_optimizer(net, spec.train)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the run folder {run_dir} ({err.strerror})") from None
    ckpt.write_json(run_dir / ckpt.CONFIG, spec.to_json())
    return _run(run_dir, spec, net, optimizer, (train_data, test_data), 0, [], quiet, tensorboard)


def _resume(
    run_dir: Path, *, quiet: bool = False, tensorboard: bool = False, **options: Any
) -> ckpt.Run:
    extra = sorted(set(options) - {"device"})
    if extra:
        raise UsageError(
            f"--resume takes the run's options from {run_dir / ckpt.CONFIG}; drop {extra[0]!r}"
        )
    if not (run_dir / ckpt.CONFIG).exists():
        raise UsageError(f"{run_dir} is not a run folder (no {ckpt.CONFIG})")
    spec = RunSpec.from_json(load_json(run_dir / ckpt.CONFIG), str(run_dir / ckpt.CONFIG))
    if "device" in options:
        spec = dataclasses.replace(
            spec, train=dataclasses.replace(spec.train, device=options["device"])
        )
    device = resolve_device(spec.train.device)
    net = build_from_config(spec.model, to_dict(spec.model_config)).to(device)
    optimizer = make_optimizer(net, spec.train)
    epoch, _ = ckpt.load_checkpoint(run_dir, net, optimizer)
    records = read_metrics(run_dir)[:epoch]
    ckpt.atomic_write(
        run_dir / ckpt.METRICS, "".join(json.dumps(r) + "\n" for r in records).encode()
    )
    return _run(
        run_dir, spec, net, optimizer, load_data(spec.data), epoch, records, quiet, tensorboard
    )


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of metrics.jsonl (a torn last line from a crash is dropped)."""
    path = Path(run_dir) / ckpt.METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def _run(
    run_dir: Path,
    spec: RunSpec,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[Dataset, Dataset],
    start_epoch: int,
    records: list[dict[str, Any]],
    quiet: bool,
    tensorboard: bool = False,
) -> ckpt.Run:
    device = next(net.parameters()).device
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormal gradients of saturated units slow every step
    train_batches, test_batches = make_batches(spec, *data, device)
    metrics_path = run_dir / ckpt.METRICS
    board = None
    if tensorboard:
        from aezoo.tblog import TensorBoardLog

        board = TensorBoardLog(run_dir, net, test_batches, spec.to_json())

    def on_epoch(epoch: int, record: dict[str, Any]) -> None:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        ckpt.save_checkpoint(run_dir, net, optimizer, epoch, {"seed": spec.train.seed})
        if board is not None:
            board.log(epoch, record)

    if not quiet:
        print(
            f"training {spec.model} ({count_parameters(net):,} parameters) on {spec.data.dataset}"
            f" ({len(data[0])} images, {device}) → {run_dir}",
            file=sys.stderr,
        )
    try:
        records = records + fit(
            net,
            optimizer,
            train_batches,
            test_batches,
            spec.train,
            start_epoch=start_epoch,
            quiet=quiet,
            on_epoch=on_epoch,
        )
    except KeyboardInterrupt:
        done = len(read_metrics(run_dir))
        raise Interrupted(
            f"stopped after {done} complete epoch(s); continue with: aezoo train --resume {run_dir}"
        ) from None
    finally:
        if board is not None:
            board.close()
    return finish_run(run_dir, spec, net, records, test_batches)


def finish_run(
    run_dir: Path,
    spec: RunSpec,
    net: nn.Module,
    records: list[dict[str, Any]],
    test_batches: Batches,
) -> ckpt.Run:
    """Final weights, summary.json, figures and report.html of a trained run."""
    from aezoo.report import write_report
    from aezoo.viz import write_run_figures

    ckpt.save_weights(net, run_dir / ckpt.WEIGHTS)
    last = records[-1] if records else {}
    summary = {
        "model": spec.model,
        "dataset": spec.data.dataset,
        "epochs": len(records),
        "params": count_parameters(net),
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in records), 3),
        **{k: v for k, v in last.items() if k.startswith("test_")},
    }
    ckpt.write_json(run_dir / ckpt.SUMMARY, summary)
    write_run_figures(run_dir, net, test_batches, records)
    write_report(run_dir)
    net.eval()
    return ckpt.Run(path=run_dir, model=net, spec=spec, summary=summary)
