"""`train`: a run folder from a model name and flat options, or an interrupted run continued;
the final weights, summary, figures and report of a trained run.

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
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aezoo import distributed, figures, report, tblog
from aezoo import runs as ckpt
from aezoo.config import (
    DataConfig,
    TrainConfig,
    describe,
    from_dict,
    load_json,
    split_options,
    to_dict,
)
from aezoo.data import Dataset
from aezoo.data.batches import Batches
from aezoo.device import place_model, resolve_device, set_up_device
from aezoo.errors import Interrupted, TrainingError, UsageError
from aezoo.io import atomic_write, remove_temporaries, write_json
from aezoo.loop import anomaly_detection, fit, make_optimizer
from aezoo.metrics import evaluator
from aezoo.models import build_from_config, count_parameters, preset
from aezoo.resume import Progress, Stop, StopOnSigint
from aezoo.rundata import ARRAY, RESTORE_DATA, data_summary, own_data
from aezoo.runfiles import check_model_size, check_writable, no_links
from aezoo.runs import (
    RunSpec,
    check_data,
    create_run_dir,
    make_batches,
    make_spec,
    new_run_dir,
    read_data,
    read_metrics,
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
    Under torchrun, data-parallel over its processes; rank 0 writes (aezoo.distributed).
    `dataset` may be an array, tensor or Dataset, with `labels=`, `test=(X, y)` (docs/data.md);
    such a run resumes on the same arrays given again: train(resume=RUN_DIR, dataset=X, ...)."""
    quiet = quiet or not distributed.is_main()
    if tensorboard:
        tblog.summary_writer_class()  # missing tensorboard is an error before anything is written
    if resume is not None:
        return _resume(Path(resume), quiet=quiet, tensorboard=tensorboard, **options)
    if model is None:
        raise UsageError("name a model to train (see `aezoo list`), or pass resume=RUN_DIR")
    source, labels, test = _in_memory(options)
    train_opts, data_opts, model_opts = split_options(options)
    preset(model).make_config(**model_opts)  # a bad model option is found before data loads
    data_config = from_dict(DataConfig, data_opts)
    device = distributed.local_device(resolve_device(from_dict(TrainConfig, train_opts).device))
    train_data, test_data, info = read_data(data_config, source, labels=labels, test=test)
    if (source is not None or test is not None) and not quiet:
        print(
            "the data is in memory: the run records its checksum only, so evaluating it later "
            "needs --dataset, and resuming or exploring it the same arrays again (dataset=)",
            file=sys.stderr,
        )
    spec = make_spec(model, options, train_data, info)
    set_up_device(device, spec.train)
    check_data(spec, train_data, test_data)
    run_dir = new_run_dir(model, out)
    run_dir = distributed.broadcast_object(run_dir)  # rank 0's name (it holds a timestamp)
    check_model_size(spec.model, to_dict(spec.model_config), "the options")
    torch.manual_seed(spec.train.seed)
    net = place_model(build_from_config(spec.model, to_dict(spec.model_config)), device, spec.train)
    optimizer = make_optimizer(net, spec.train)
    distributed.on_main(create_run_dir, run_dir, spec)  # the one process that writes
    return _run(run_dir, spec, net, optimizer, (train_data, test_data), 0, [], quiet, tensorboard)


def _in_memory(options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Pop the data that is not a name or a path from `options` (arrays, tensors, Datasets; `test`
    also as an (X, y) pair) and put "array" in its place: config.json records it by checksum."""
    labels, test = options.pop("labels", None), options.pop("test", None)
    if test is not None:
        if options.get("test_dataset") is not None:
            raise UsageError("test= and test_dataset= name the same thing: give one of them")
        options["test_dataset"] = test
    found = []
    for key in ("dataset", "test_dataset"):
        value = options.get(key)
        if isinstance(value, os.PathLike):
            options[key] = value = os.fspath(value)
        found.append(None if value is None or isinstance(value, str) else value)
        if found[-1] is not None:
            options[key] = ARRAY
    return found[0], labels, found[1]


def _resume(
    run_dir: Path, *, quiet: bool = False, tensorboard: bool = False, **options: Any
) -> ckpt.Run:
    # A run trained on in-memory data resumes on the same arrays, given again (rundata.own_data).
    given = {
        k: options.pop(k)
        for k in ("dataset", "labels", "test")
        if options.get(k) is not None and not isinstance(options[k], (str, os.PathLike))
    }
    extra = sorted(set(options) - {"device"})
    if extra:
        raise UsageError(
            f"--resume takes the run's options from {run_dir / ckpt.CONFIG}; drop {extra[0]!r}"
        )
    if not (run_dir / ckpt.CONFIG).exists():
        raise UsageError(f"{run_dir} is not a run folder (no {ckpt.CONFIG})")
    no_links(run_dir)
    spec = RunSpec.from_json(load_json(run_dir / ckpt.CONFIG), str(run_dir / ckpt.CONFIG))
    if "device" in options:
        spec = dataclasses.replace(
            spec, train=dataclasses.replace(spec.train, device=options["device"])
        )
    check_model_size(spec.model, to_dict(spec.model_config), run_dir / ckpt.CONFIG)
    device = distributed.local_device(resolve_device(spec.train.device))
    set_up_device(device, spec.train)
    # Killed before its first checkpoint: the seed rebuilds the very start, as train() made it.
    from_start = not (run_dir / ckpt.CHECKPOINT).exists() and not (run_dir / ckpt.WEIGHTS).exists()
    torch.manual_seed(spec.train.seed)
    net = place_model(build_from_config(spec.model, to_dict(spec.model_config)), device, spec.train)
    optimizer = make_optimizer(net, spec.train)
    epoch, state = (0, {}) if from_start else ckpt.load_checkpoint(run_dir, net, optimizer)
    records = _resumable_records(run_dir, spec, epoch, state)  # before anything is written
    data = own_data(spec.data, spec.data_info, RESTORE_DATA, **given)  # … as is the data's check
    check_data(spec, *data)
    if from_start and not quiet:
        print(f"{run_dir} has no checkpoint yet: training from the start", file=sys.stderr)
    if distributed.is_main():
        check_writable(run_dir)
        remove_temporaries(run_dir)  # what a kill in mid-write left
        atomic_write(
            run_dir / ckpt.METRICS, "".join(json.dumps(r) + "\n" for r in records).encode()
        )
    progress = Progress.from_checkpoint(epoch, state)
    return _run(run_dir, spec, net, optimizer, data, epoch, records, quiet, tensorboard, progress)


# Fields of config.json that change no number a run computes: a resume may differ in them.
PRESENTATION = {("aezoo",), ("train", "device"), ("train", "compile"), ("data", "data_dir")}


def _changed_field(saved: Any, current: Any, at: tuple[str, ...] = ()) -> str | None:
    """The first field (dotted) where config.json differs from the checkpoint's copy."""
    if at in PRESENTATION:
        return None
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            found = _changed_field(saved.get(key), current.get(key), (*at, str(key)))
            if found is not None:
                return found
        return None
    return None if saved == current else ".".join(at)


def _resumable_records(
    run_dir: Path, spec: RunSpec, epoch: int, state: dict[str, Any]
) -> list[dict[str, Any]]:
    """The metrics records a resume continues from, once config.json, the checkpoint and
    metrics.jsonl are seen to agree; anything else is refused naming the file and field."""
    where, total = run_dir / ckpt.CONFIG, spec.train.epochs
    saved = state.get("config", {"train": {"seed": state.get("seed", spec.train.seed)}})
    current = spec.to_json() if "config" in state else {"train": {"seed": spec.train.seed}}
    field = _changed_field(saved, current)
    if field == "train.epochs" and total >= epoch and _extends_exactly(spec, saved, current):
        field = None
    if field is not None:
        raise UsageError(
            f"{where}: {field or 'config'} is {describe(_at(current, field))}, its checkpoint "
            f"was trained with {describe(_at(saved, field))}; a resume cannot change it (train a "
            "new run)"
        )
    if epoch > total:
        raise UsageError(f"{run_dir / ckpt.CHECKPOINT}: epoch {epoch} is beyond the run's {total}")
    records = read_metrics(run_dir)
    if len(records) < epoch:
        raise UsageError(
            f"{run_dir / ckpt.METRICS} holds {len(records)} complete epoch(s), the checkpoint "
            f"{epoch}; the run folder is damaged"
        )
    return records[:epoch]


def _extends_exactly(spec: RunSpec, saved: Any, current: dict[str, Any]) -> bool:
    """More epochs continue a run exactly only where no schedule depends on their number."""
    if spec.train.lr_schedule != "constant" or spec.train.kl_cycles:
        return False
    if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict):
        return False
    extended = {**saved, "train": {**saved["train"], "epochs": spec.train.epochs}}
    return _changed_field(extended, current) is None


def _at(obj: Any, field: str) -> Any:
    for key in field.split(".") if field else []:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


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
    board = None
    if tensorboard and distributed.is_main():
        board = tblog.TensorBoardLog(run_dir, net, test_batches, spec.to_json())

    def on_epoch(epoch: int, record: dict[str, Any]) -> None:
        _save_epoch(run_dir, spec, net, optimizer, epoch, record)
        if board is not None:
            board.log(epoch, record)

    if not quiet:
        size, where = f"{count_parameters(net):,} parameters", f"{len(data[0])} images, {device}"
        text = f"training {spec.model} ({size}) on {spec.data.dataset} ({where}) → {run_dir}"
        print(text, file=sys.stderr)
    try:
        with StopOnSigint() as stop, anomaly_detection(spec.train.detect_anomaly):
            records = records + fit(
                net,
                optimizer,
                train_batches,
                evaluator(test_batches, seed=spec.train.seed),
                spec.train,
                start_epoch=start_epoch,
                resume=progress,
                quiet=quiet,
                on_epoch=on_epoch if distributed.is_main() else None,
                stop=stop,
            )
    except Stop as stopped:
        where = _save_stopped(run_dir, spec, net, optimizer, stopped.progress)
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


def _save_epoch(
    run_dir: Path,
    spec: RunSpec,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    record: dict[str, Any],
) -> None:
    """Append the epoch's record to metrics.jsonl and checkpoint it."""
    with writing(run_dir, f"epoch {epoch}'s metrics and checkpoint"):
        with open(run_dir / ckpt.METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        ckpt.save_checkpoint(run_dir, net, optimizer, epoch, _state(spec))


def _save_stopped(
    run_dir: Path,
    spec: RunSpec,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: Progress | None,
) -> str:
    """Checkpoint an epoch stopped mid-way (Ctrl-C); returns where training stopped, in words."""
    if progress is None or not distributed.is_main():
        return f"after epoch {len(read_metrics(run_dir))}"
    state, tensors = progress.to_checkpoint()
    with writing(run_dir, "the checkpoint of the interrupted epoch"):
        ckpt.save_checkpoint(
            run_dir, net, optimizer, progress.epoch, {**_state(spec), **state}, tensors
        )
    return f"at step {progress.step} of epoch {progress.epoch + 1}"


def _state(spec: RunSpec) -> dict[str, Any]:
    """What a checkpoint records of its run: the seed and the whole config, which a resume
    compares with config.json."""
    return {"seed": spec.train.seed, "config": spec.to_json()}


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


def finish_run(
    run_dir: Path,
    spec: RunSpec,
    net: nn.Module,
    records: list[dict[str, Any]],
    test_batches: Batches,
) -> ckpt.Run:
    """Final weights, summary.json, figures and report.html of a trained run."""
    ckpt.save_weights(net, run_dir / ckpt.WEIGHTS)
    last = records[-1] if records else {}
    summary = {
        "model": spec.model,
        "dataset": spec.data.dataset,
        "epochs": len(records),
        "params": count_parameters(net),
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in records), 3),
        **{k: v for k, v in last.items() if k.startswith("test_")},
        **({} if spec.data_info is None else {"data": data_summary(spec.data_info)}),
    }
    write_json(run_dir / ckpt.SUMMARY, summary)
    figures.write_run_figures(run_dir, net, test_batches, records)
    report.write_report(run_dir)
    net.eval()
    return ckpt.Run(path=run_dir, model=net, spec=spec, summary=summary)
