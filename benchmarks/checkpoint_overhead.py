"""The cost of checkpointing every epoch: save_checkpoint (weights + AdamW moments, temporary file,
fsync, rename) and the metrics line, against the epoch it follows.

Trains `--model` (conv-ae) with aezoo's own loop (`fit`) on `--subset` training images and times
each epoch's checkpoint where a run writes it (`--dir`, default runs/). A checkpoint does not grow
with the data, the epoch does: the full-data epoch time is the subset's scaled by 60000/N (training)
and 10000/n (evaluation), and `--subset 60000 --test-subset 10000` measures it outright.

    python benchmarks/checkpoint_overhead.py --threads 1            # subset, extrapolated
    python benchmarks/checkpoint_overhead.py --threads 1 --subset 60000 --test-subset 10000
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from aezoo import runs as ckpt
from aezoo.config import DataConfig, to_dict
from aezoo.device import resolve_device
from aezoo.loop import fit, make_optimizer
from aezoo.metrics import evaluator
from aezoo.models import build_from_config
from aezoo.runs import load_data, make_batches, make_spec

RESULTS = Path(__file__).parent / "results"
FULL_TRAIN, FULL_TEST = 60_000, 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conv-ae")
    parser.add_argument("--subset", type=int, default=6000, help="training images (60000: all)")
    parser.add_argument("--test-subset", type=int, default=2000, help="test images per evaluation")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dir", default="runs", help="where the checkpoints are written")
    parser.add_argument("--out", type=Path, default=RESULTS / "checkpoint-overhead.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as aezoo.device.set_up_device does

    subsets = {
        "train_subset": args.subset if args.subset < FULL_TRAIN else None,
        "test_subset": args.test_subset if args.test_subset < FULL_TEST else None,
    }
    train_data, test_data = load_data(DataConfig(**subsets))
    options = {"epochs": args.epochs + 1, "device": args.device, "seed": 0, **subsets}
    spec = make_spec(args.model, options, train_data)
    torch.manual_seed(0)
    net = build_from_config(spec.model, to_dict(spec.model_config)).to(device)
    optimizer = make_optimizer(net, spec.train)
    train_batches, test_batches = make_batches(spec, train_data, test_data, device)

    Path(args.dir).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="checkpoint-overhead-", dir=args.dir))
    saves: list[float] = []

    def on_epoch(epoch: int, record: dict) -> None:
        started = time.perf_counter()
        with open(run_dir / ckpt.METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        ckpt.save_checkpoint(run_dir, net, optimizer, epoch, {"seed": 0})
        if device.type == "cuda":
            torch.cuda.synchronize()
        saves.append(time.perf_counter() - started)

    try:
        records = fit(
            net,
            optimizer,
            train_batches,
            evaluator(test_batches, seed=spec.train.seed),
            spec.train,
            quiet=True,
            on_epoch=on_epoch,
        )
        size = (run_dir / ckpt.CHECKPOINT).stat().st_size
    finally:
        shutil.rmtree(run_dir)

    timed = records[1:]  # the first epoch warms up allocators and caches
    train_s = statistics.median(r["seconds"] for r in timed)
    eval_s = statistics.median(r["eval_seconds"] for r in timed)
    save_s = statistics.median(saves[1:])
    full_epoch = train_s * FULL_TRAIN / len(train_data) + eval_s * FULL_TEST / len(test_data)
    result = {
        "model": args.model,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "train_images": len(train_data),
        "test_images": len(test_data),
        "epochs_timed": len(timed),
        "checkpoint_bytes": size,
        "checkpoint_seconds": round(save_s, 4),
        "epoch_seconds": round(train_s + eval_s, 3),
        "overhead_pct": round(100 * save_s / (train_s + eval_s), 2),
        "full_epoch_seconds": round(full_epoch, 2),
        "full_epoch_overhead_pct": round(100 * save_s / full_epoch, 3),
        "extrapolated": len(train_data) < FULL_TRAIN or len(test_data) < FULL_TEST,
        "checkpoint_dir": str(Path(args.dir).resolve()),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    what = "extrapolated" if result["extrapolated"] else "measured"
    print(
        f"{args.model}: checkpoint {size / 1e6:.1f} MB in {save_s * 1e3:.1f} ms; epoch on "
        f"{len(train_data)} images {train_s + eval_s:.2f} s ({result['overhead_pct']}%); full "
        f"epoch ({what}) {full_epoch:.1f} s → overhead {result['full_epoch_overhead_pct']}%"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
