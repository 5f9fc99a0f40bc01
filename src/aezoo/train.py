"""One training loop for every model (`fit`), and `train` which wraps it in a run folder.

Reproducibility: the weights are initialised after `torch.manual_seed(seed)`; epoch k's data order,
corruption and binarisation draw from generators seeded by (seed, k), and the global RNG (dropout,
reparameterisation) is reseeded from (seed, k) at the start of the epoch. So a run resumed from the
checkpoint after epoch k continues exactly as the uninterrupted run would have; one stopped by
Ctrl-C mid-epoch also saves where the epoch stood (aezoo.resume.Progress) and continues it exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aezoo import checkpoint as ckpt
from aezoo import distributed
from aezoo.checkpoint import RunSpec
from aezoo.config import DataConfig, TrainConfig, from_dict, load_json, to_dict
from aezoo.data import Dataset, binarize_once, load_dataset
from aezoo.data.batches import Batches, parse_corruption
from aezoo.errors import Interrupted, TrainingError, UsageError
from aezoo.evaluate import evaluate
from aezoo.models import build_from_config, count_parameters, preset
from aezoo.resume import Progress, Stop, StopOnSigint

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
    if "test_iwae" in record:  # trained on the importance-weighted bound: no KL weight to adjust
        remedies = (
            "train on the ELBO (--iw-samples 1) with a KL warm-up (--kl-warmup 10) or free bits "
            "(--free-bits 0.5), or a smaller decoder"
        )
    else:
        remedies = (
            "a KL warm-up (--kl-warmup 10), free bits (--free-bits 0.5), a smaller β, or a "
            "smaller decoder"
        )
    return (
        f"posterior collapse at epoch {record.get('epoch', '?')}: {units} active latent units, "
        f"test KL {kl:.3g} nats per image; remedies: {remedies}"
    )


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda, else mps, else cpu; an explicit device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", name):
        raise UsageError(f"device: expected auto, cpu, cuda, cuda:N or mps, got {name!r}")
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
        f = config.warmdown
        decay = min(1.0, max(0.0, (progress - (1.0 - f)) / f))  # 0 until the last f, then → 1
        return config.lr * (1.0 - 0.99 * decay)
    return config.lr


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (= Adam when weight_decay is 0), fused on devices that support it."""
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


class LossOf(nn.Module):
    """`model.loss` as a module's forward — what DDP (it syncs gradients through forward) and
    torch.compile (it compiles forward) act on — under bf16 autocast with precision="bf16"."""

    def __init__(self, model: nn.Module, precision: str = "fp32") -> None:
        super().__init__()
        self.model, self.bf16 = model, precision == "bf16"
        self.device_type = next(model.parameters()).device.type

    def forward(self, *args: Any) -> Any:
        if not self.bf16:
            return self.model.loss(*args)
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model.loss(*args)


def training_loss(model: nn.Module, config: TrainConfig) -> nn.Module:
    """How `fit` calls `model.loss`: through DDP under torchrun, compiled with `compile`."""
    module = distributed.data_parallel(LossOf(model, config.precision))
    return torch.compile(module) if config.compile else module


def set_up_device(device: torch.device, config: TrainConfig) -> None:
    """Process-wide settings for training on `device`: threads, denormals, TF32; bf16 only where
    the hardware runs it natively (elsewhere it would be slower than fp32)."""
    if config.precision == "bf16" and not _native_bf16(device):
        raise UsageError(
            f"precision bf16: {device} has no native bfloat16 (CUDA, or a CPU with AVX512-BF16 "
            "or AMX), where it would be slower than fp32; use --precision fp32"
        )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormal gradients of saturated units slow every step
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matrix products on tensor cores
        torch.backends.cudnn.allow_tf32 = True


def place_model(net: nn.Module, device: torch.device, config: TrainConfig) -> nn.Module:
    """`net` on `device`, in channels-last layout where `config.memory_format` asks for it (auto:
    convolutional models on a CPU, where oneDNN computes in that layout and would otherwise
    reorder every activation). Saved weights are made contiguous, so runs load anywhere."""
    net = net.to(device)
    layout = config.memory_format
    if layout == "auto":
        convolutional = any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in net.modules())
        layout = "channels_last" if convolutional and device.type == "cpu" else "contiguous"
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)
    return net


def _native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


@contextlib.contextmanager
def anomaly_detection(enabled: bool) -> Iterator[None]:
    """With `enabled`, autograd checks every backward op for NaN and names the forward op that
    made it (PyTorch prints that op's traceback as a warning); slow, for debugging only."""
    if not enabled:
        yield
        return
    with torch.autograd.detect_anomaly(check_nan=True):
        try:
            yield
        except RuntimeError as err:
            if "returned nan values" not in str(err):
                raise
            raise TrainingError(
                f"autograd anomaly detection: {err}; the forward operation that made it is in "
                "the warning above. The last good checkpoint is kept."
            ) from None


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Batches,
    test: Batches,
    config: TrainConfig,
    *,
    start_epoch: int = 0,
    resume: Progress | None = None,
    quiet: bool = False,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    stop: StopOnSigint | None = None,
) -> list[dict[str, Any]]:
    """Train from `start_epoch` (or from within the epoch `resume` left) to `config.epochs`;
    returns one metrics record per epoch.

    Each step: terms = model.loss(x, y, x̃); the KL weight follows the schedule; total.backward();
    optional gradient clipping; optimizer step. Terms are summed on the device and read once per
    epoch, so the loop never waits for the accelerator. A non-finite loss stops training with a
    TrainingError before the weights it produced are saved. When `stop.requested` turns true
    (Ctrl-C), the loop ends after the current step with `Stop(progress)`, or at the end of the
    epoch, checkpointed, with `Stop(None)` if that step was the epoch's last.
    """
    device = next(model.parameters()).device
    check_every = 1 if device.type == "cpu" else 50  # a check is a host sync on accelerators
    steps_per_epoch = len(train)
    total_steps = config.epochs * steps_per_epoch
    records = []
    warned_collapse = False
    show_bar = not quiet and sys.stderr.isatty()
    start_epoch = start_epoch if resume is None else resume.epoch
    loss_of = training_loss(model, config)  # model.loss (through DDP under torchrun)
    rank, _ = distributed.world()
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(epoch_seed(config.seed, epoch) + rank)  # each process its own dropout
        model.train()
        noise = train.noise(epoch)
        first, seen = 0, 0
        sums: dict[str, Tensor] = {}
        if resume is not None and resume.epoch == epoch:
            first, seen, sums = resume.restore(noise, device)
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not show_bar,
            leave=False,
            file=sys.stderr,
        )
        for i, batch in enumerate(train.epoch(epoch, first, noise), start=first):
            step = epoch * steps_per_epoch + i
            lr = lr_at(config, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            kl_weight = config.kl_weight(epoch, i / steps_per_epoch)
            terms = loss_of(batch.x, batch.y, batch.x_in).reweight("kl", kl_weight)
            total = terms.total
            optimizer.zero_grad(set_to_none=True)
            (total * batch.loss_scale).backward()  # loss_scale: 1 but in data-parallel training
            if config.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            n = batch.x.shape[0]
            for name, value in [*terms.items(), ("loss", total)]:
                value = value.detach() * n
                sums[name] = sums[name] + value if name in sums else value
            stopping = stop is not None and stop.requested and i + 1 < steps_per_epoch
            if ((i + 1) % check_every == 0 or stopping) and not torch.isfinite(sums["loss"]):
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
            if stopping:
                bar.close()
                raise Stop(Progress.capture(epoch, i + 1, seen, sums, noise, device))
        bar.close()
        sums, seen = distributed.end_epoch(model, sums, seen)  # over all processes (torchrun)
        if not torch.isfinite(sums["loss"]):
            raise TrainingError(
                f"the loss became non-finite in epoch {epoch + 1}; try a lower "
                "--lr or --clip-grad. The last good checkpoint is kept."
            )
        seconds = time.perf_counter() - started  # after the check's sync: the device is done
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
        if stop is not None and stop.requested and epoch + 1 < config.epochs:
            raise Stop(None)
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
        part=distributed.world(),  # under torchrun, this process's slice of each batch
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


@distributed.in_process_group
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
    `tensorboard=True` also logs to RUN_DIR/tensorboard (needs the tensorboard extra).
    Under torchrun, data-parallel over its processes; rank 0 writes (aezoo.distributed)."""
    quiet = quiet or not distributed.is_main()
    if tensorboard:
        from aezoo.tblog import summary_writer_class

        summary_writer_class()  # missing tensorboard is an error before anything is written
    if resume is not None:
        return _resume(Path(resume), quiet=quiet, tensorboard=tensorboard, **options)
    if model is None:
        raise UsageError("name a model to train (see `aezoo list`), or pass resume=RUN_DIR")
    train_opts, data_opts, model_opts = split_options(options)
    preset(model).make_config(**model_opts)  # a bad model option is found before data loads
    data_config = from_dict(DataConfig, data_opts)
    device = distributed.local_device(resolve_device(from_dict(TrainConfig, train_opts).device))
    train_data, test_data = load_data(data_config)
    spec = make_spec(model, options, train_data)
    set_up_device(device, spec.train)
    check_data(spec, train_data, test_data)
    run_dir = Path(out) if out is not None else default_run_dir(model)
    run_dir = distributed.broadcast_object(run_dir)  # rank 0's name (it holds a timestamp)
    torch.manual_seed(spec.train.seed)
    net = place_model(build_from_config(spec.model, to_dict(spec.model_config)), device, spec.train)
    optimizer = make_optimizer(net, spec.train)
    distributed.on_main(create_run_dir, run_dir, spec)  # the one process that writes
    return _run(run_dir, spec, net, optimizer, (train_data, test_data), 0, [], quiet, tensorboard)


def create_run_dir(run_dir: Path, spec: RunSpec) -> None:
    """A new, empty run folder holding config.json; an existing non-empty one is an error."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder; choose another --out")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(
            f"{run_dir} already exists and is not empty; choose another --out, or "
            f"continue it with --resume {run_dir}"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the run folder {run_dir} ({err.strerror})") from None
    try:
        ckpt.write_json(run_dir / ckpt.CONFIG, spec.to_json())
    except OSError as err:
        raise UsageError(f"cannot write to the run folder {run_dir} ({err.strerror})") from None


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
    device = distributed.local_device(resolve_device(spec.train.device))
    set_up_device(device, spec.train)
    if distributed.is_main():
        ckpt.remove_temporaries(run_dir)  # what a kill in mid-write left
    # Killed before its first checkpoint: the seed rebuilds the very start, as train() made it.
    from_start = not (run_dir / ckpt.CHECKPOINT).exists() and not (run_dir / ckpt.WEIGHTS).exists()
    torch.manual_seed(spec.train.seed)
    net = place_model(build_from_config(spec.model, to_dict(spec.model_config)), device, spec.train)
    optimizer = make_optimizer(net, spec.train)
    epoch, state = (0, {}) if from_start else ckpt.load_checkpoint(run_dir, net, optimizer)
    if from_start and not quiet:
        print(f"{run_dir} has no checkpoint yet: training from the start", file=sys.stderr)
    records = read_metrics(run_dir)[:epoch]
    if distributed.is_main():
        ckpt.atomic_write(
            run_dir / ckpt.METRICS, "".join(json.dumps(r) + "\n" for r in records).encode()
        )
    data = load_data(spec.data)
    check_data(spec, *data)
    progress = Progress.from_checkpoint(epoch, state)
    return _run(run_dir, spec, net, optimizer, data, epoch, records, quiet, tensorboard, progress)


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
    progress: Progress | None = None,
) -> ckpt.Run:
    device = next(net.parameters()).device
    train_batches, test_batches = make_batches(spec, *data, device)
    metrics_path = run_dir / ckpt.METRICS
    board = None
    if tensorboard and distributed.is_main():
        from aezoo.tblog import TensorBoardLog

        board = TensorBoardLog(run_dir, net, test_batches, spec.to_json())

    def on_epoch(epoch: int, record: dict[str, Any]) -> None:
        with writing(run_dir, f"epoch {epoch}'s metrics and checkpoint"):
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
        with StopOnSigint() as stop, anomaly_detection(spec.train.detect_anomaly):
            records = records + fit(
                net,
                optimizer,
                train_batches,
                test_batches,
                spec.train,
                start_epoch=start_epoch,
                resume=progress,
                quiet=quiet,
                on_epoch=on_epoch if distributed.is_main() else None,
                stop=stop,
            )
    except Stop as stopped:
        where = f"after epoch {len(read_metrics(run_dir))}"
        if stopped.progress is not None and distributed.is_main():
            state, tensors = stopped.progress.to_checkpoint()
            with writing(run_dir, "the checkpoint of the interrupted epoch"):
                ckpt.save_checkpoint(
                    run_dir,
                    net,
                    optimizer,
                    stopped.progress.epoch,
                    {"seed": spec.train.seed, **state},
                    tensors,
                )
            where = f"at step {stopped.progress.step} of epoch {stopped.progress.epoch + 1}"
        raise Interrupted(
            f"stopped {where}, checkpoint saved; continue with: aezoo train --resume {run_dir}"
        ) from None
    except KeyboardInterrupt:
        done = len(read_metrics(run_dir))
        raise Interrupted(
            f"stopped after {done} complete epoch(s); continue with: aezoo train --resume {run_dir}"
        ) from None
    finally:
        if board is not None:
            board.close()
    if not distributed.is_main():  # rank 0 writes the results
        return ckpt.Run(path=run_dir, model=net.eval(), spec=spec)
    with writing(run_dir, "the final weights, summary and figures"):
        return finish_run(run_dir, spec, net, records, test_batches)


@contextlib.contextmanager
def writing(run_dir: Path, what: str) -> Iterator[None]:
    """An OSError (a full disk, a read-only folder) while writing `what` becomes one clear
    TrainingError; atomic writes leave the previous checkpoint as it was."""
    try:
        yield
    except OSError as err:
        raise TrainingError(
            f"cannot write {what} in {run_dir} ({err.strerror or err}); the last checkpoint is "
            f"kept: make room, then continue with: aezoo train --resume {run_dir}"
        ) from None


def check_data(spec: RunSpec, train: Dataset, test: Dataset) -> None:
    """Data the model cannot take is an error before the first step, naming what it expects."""
    shape = getattr(spec.model_config, "image_shape", None)
    classes = getattr(spec.model_config, "num_classes", 0)
    for split, data in (("training", train), ("test", test)):
        if shape is not None and data.image_shape != tuple(shape):
            raise UsageError(
                f"the {split} images of {data.name} are {data.image_shape} (C, H, W); "
                f"{spec.model} expects {tuple(shape)}"
            )
        if classes and data.labels is None:
            raise UsageError(
                f"{spec.model} is conditioned on labels, and the {split} set of {data.name} "
                "has none"
            )
        if classes and data.num_classes > classes:
            raise UsageError(
                f"the {split} labels of {data.name} go up to {data.num_classes - 1}; "
                f"{spec.model} takes labels 0..{classes - 1} (num_classes {classes})"
            )


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
