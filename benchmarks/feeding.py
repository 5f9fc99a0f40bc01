"""Seconds per training epoch: aezoo's on-device batches vs the tutorial DataLoader, side by side.

The reference feeds the same model the way the usual MNIST tutorials do: a torch DataLoader
(batch 128, shuffle) over a Dataset whose __getitem__ makes one PIL image per sample and converts
it to a float tensor (what torchvision's MNIST + ToTensor does). Same model, same optimiser, same
loss; only the feeding differs. The two alternate within one process, so machine noise hits both.

    python benchmarks/feeding.py --model dense-ae --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from aezoo.config import TrainConfig
from aezoo.data import load_dataset
from aezoo.data.batches import Batches
from aezoo.device import machine
from aezoo.loop import make_optimizer
from aezoo.models import build
from aezoo.studies.reference import reference_epoch, reference_loader

RESULTS = Path(__file__).parent / "results"


def epoch_aezoo(model, optimizer, batches: Batches, index: int) -> float:
    started = time.perf_counter()
    for batch in batches.epoch(index):
        loss = model.loss(batch.x, batch.y, batch.x_in).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dense-ae")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--subset", type=int, default=None, help="train images (default all)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    data = load_dataset("mnist", "train")
    if args.subset:
        data = data.subset(args.subset, seed=0)
    loader = reference_loader(data, batch_size=128)
    batches = Batches(data, 128, device="cpu", seed=0, shuffle=True)
    torch.manual_seed(0)
    model = build(args.model)
    optimizer = make_optimizer(model, TrainConfig())
    ours, ref = [], []
    epoch_aezoo(model, optimizer, batches, 0)  # warm-up: allocator, kernels
    for r in range(args.repeats):
        ref.append(reference_epoch(model, optimizer, loader))
        ours.append(epoch_aezoo(model, optimizer, batches, r + 1))
    result = {
        "benchmark": "feeding",
        "model": args.model,
        "images": len(data),
        "threads": torch.get_num_threads(),
        "machine": machine()["cpu"],
        "torch": torch.__version__,
        "aezoo_seconds": ours,
        "reference_seconds": ref,
        "aezoo_median_s": statistics.median(ours),
        "reference_median_s": statistics.median(ref),
        "speedup": statistics.median(ref) / statistics.median(ours),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"feeding-{args.model}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.model}: aezoo {result['aezoo_median_s']:.2f} s/epoch, reference "
        f"{result['reference_median_s']:.2f} s/epoch, speed-up {result['speedup']:.2f}x "
        f"({len(data)} images, {result['threads']} threads) → {out}"
    )


if __name__ == "__main__":
    main()
