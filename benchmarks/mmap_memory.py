"""Memory of training on a .npy larger than you would load: aezoo maps it and reads batch by batch.

A synthetic uint8 array of 28×28 images (1 GB by default) is written to /tmp once. Each case runs
in a fresh process and reads its memory from /proc/self/status:
- `mapped`: `load_dataset("x.npy")` (memory-mapped), one epoch of shuffled batches through
  `Batches`, then some training steps of dense-ae on them;
- `in-memory`: the same array read whole with np.load — the contrast;
- `mapped` again on a quarter of the array: peak private memory does not grow with the file.

RssAnon is the process's own (private) memory: the figure that must stay flat. RssFile counts the
file's pages the process has touched, which are the kernel's page cache: clean, shared with other
processes reading the file, and dropped under memory pressure, so they do not limit the data size.
VmHWM (peak RSS) is their sum at its highest.

    python benchmarks/mmap_memory.py                  # 1 GB, one epoch of batches + 200 steps
    python benchmarks/mmap_memory.py --gb 0.05 --steps 20 --out /tmp/smoke  # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
IMAGE = (1, 28, 28)
FIELDS = ("RssAnon", "RssFile", "VmRSS", "VmHWM")


def memory() -> dict[str, float]:
    """This process's RssAnon, RssFile, VmRSS and VmHWM in MiB, from /proc/self/status."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in FIELDS:
                found[key] = int(value.split()[0]) / 1024
    return found


def write_array(path: Path, images: int) -> None:
    """A .npy of `images` random uint8 images, written in 16 MB chunks (never whole in memory)."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (images, *IMAGE)}
    rng = np.random.default_rng(0)
    chunk = (16 << 20) // int(np.prod(IMAGE))
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, images, chunk):
            n = min(chunk, images - start)
            f.write(rng.integers(0, 256, (n, *IMAGE), dtype=np.uint8).tobytes())


def worker(mode: str, path: Path, images: int, steps: int, threads: int) -> dict:
    """One case, in this (fresh) process: memory after each phase and the peak private memory."""
    import torch

    from aezoo.config import TrainConfig
    from aezoo.data import Dataset, load_dataset
    from aezoo.data.batches import Batches
    from aezoo.loop import make_optimizer
    from aezoo.models import build

    torch.set_num_threads(threads)
    phases = {"start": memory()}
    if mode == "mapped":
        data = load_dataset(path)
        assert data.mapped
    else:
        data = Dataset(torch.from_numpy(np.load(path)), None, "in-memory")
    if images < len(data):
        data = Dataset(data.images[:images], None, data.name, mapped=data.mapped)
    phases["loaded"] = memory()
    batches = Batches(data, 128, seed=0)
    peak_anon = 0.0
    started = time.perf_counter()
    for i, batch in enumerate(batches.epoch(0)):
        del batch
        if i % 500 == 0:
            peak_anon = max(peak_anon, memory()["RssAnon"])
    epoch_seconds = time.perf_counter() - started
    phases["after one epoch of batches"] = memory()
    torch.manual_seed(0)
    model = build("dense-ae")
    optimizer = make_optimizer(model, TrainConfig())
    started = time.perf_counter()
    for i, batch in enumerate(batches.epoch(1)):
        if i == steps:
            break
        loss = model.loss(batch.x).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i % 50 == 0:
            peak_anon = max(peak_anon, memory()["RssAnon"])
    train_seconds = time.perf_counter() - started
    phases[f"after {steps} training steps"] = memory()
    peak_anon = max([peak_anon, *(p["RssAnon"] for p in phases.values())])
    return {
        "mode": mode,
        "images": len(data),
        "array_mb": round(len(data) * int(np.prod(IMAGE)) / 2**20, 1),
        "batches_per_epoch": len(batches),
        "epoch_of_batches_s": round(epoch_seconds, 2),
        "train_steps": steps,
        "train_steps_s": round(train_seconds, 2),
        "peak_private_mb": round(peak_anon, 1),
        "peak_rss_mb": round(phases[f"after {steps} training steps"]["VmHWM"], 1),
        "phases": phases,
    }


def run_case(mode: str, path: Path, images: int, steps: int, threads: int) -> dict:
    """`worker` in a fresh interpreter, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--worker", mode, "--path", str(path)]
    command += ["--images", str(images), "--steps", str(steps), "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def markdown(result: dict) -> str:
    lines = [
        f"Array: {result['file_mb']:.0f} MiB of uint8 28×28 images in {result['path']}; "
        f"batches of 128, one shuffled epoch, then {result['steps']} dense-ae steps.",
        "",
        "| case | images | array MiB | peak private MiB (RssAnon) | peak RSS MiB (VmHWM) | "
        "epoch of batches s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in result["cases"]:
        lines.append(
            f"| {case['mode']} | {case['images']:,} | {case['array_mb']:.0f} | "
            f"{case['peak_private_mb']:.0f} | {case['peak_rss_mb']:.0f} | "
            f"{case['epoch_of_batches_s']:.1f} |"
        )
    lines += [
        "",
        "Peak RSS of the mapped cases includes the file pages read (RssFile): page cache, clean "
        "and reclaimable, not the process's own memory.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the synthetic array")
    parser.add_argument("--steps", type=int, default=200, help="training steps after the epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--path", type=Path, default=None, help="where the array goes (/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the array file afterwards")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--worker", choices=["mapped", "in-memory"], help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.images, args.steps, args.threads)))
        return
    images = int(args.gb * 1e9) // int(np.prod(IMAGE))
    path = args.path or Path("/tmp") / f"aezoo-mmap-{args.gb:g}gb.npy"
    if not path.exists() or path.stat().st_size < images * int(np.prod(IMAGE)):
        write_array(path, images)
    try:
        cases = [
            run_case("mapped", path, images, args.steps, args.threads),
            run_case("mapped", path, images // 4, args.steps, args.threads),
            run_case("in-memory", path, images, args.steps, args.threads),
        ]
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    result = {
        "benchmark": "mmap_memory",
        "path": str(path),
        "file_mb": round(images * int(np.prod(IMAGE)) / 2**20, 1),
        "steps": args.steps,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "cases": cases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mmap_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "mmap_memory.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
