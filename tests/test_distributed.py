"""Data-parallel training: each process's slice of a global batch, the loss scaling that makes
DDP's gradient average exact, and a real two-process torchrun (Gloo) against a one-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import MNIST_DIR

import aezoo
from aezoo.data import Dataset
from aezoo.data.batches import Batches
from aezoo.errors import UsageError
from aezoo.models import MODELS, build


def numbered(n: int) -> Dataset:
    """Image i holds i in its two pixels, so a batch says which images it took."""
    index = torch.arange(n)
    images = torch.stack([index // 256, index % 256], dim=1).to(torch.uint8).view(n, 1, 1, 2)
    return Dataset(images, index % 10, "numbered")


def image_ids(x: torch.Tensor) -> list[int]:
    pixels = (x * 255).round().long().view(len(x), 2)
    return (pixels[:, 0] * 256 + pixels[:, 1]).tolist()


@pytest.mark.parametrize("processes", [2, 3])
def test_the_slices_of_a_batch_are_the_one_process_batch(processes: int) -> None:
    data = numbered(101)  # batches of 16, the last of 5: uneven slices
    whole = Batches(data, 16, seed=3)
    parts = [Batches(data, 16, seed=3, part=(r, processes)) for r in range(processes)]
    for one, *sliced in zip(whole.epoch(2), *(p.epoch(2) for p in parts), strict=True):
        assert image_ids(torch.cat([b.x for b in sliced])) == image_ids(one.x)
        assert torch.equal(torch.cat([b.y for b in sliced]), one.y)
        assert one.loss_scale == 1.0
        # scale_r = processes · n_r / n, so DDP's mean over processes weighs rows equally
        for b in sliced:
            assert b.loss_scale == pytest.approx(processes * len(b.x) / len(one.x))


def test_a_batch_too_small_to_share_is_refused() -> None:
    with pytest.raises(UsageError, match="batch of 1, too few for 2 processes"):
        Batches(numbered(33), 16, part=(0, 2))  # 33 = 2·16 + 1
    with pytest.raises(UsageError, match="rank"):
        Batches(numbered(32), 16, part=(2, 2))
    Batches(numbered(33), 16, part=(1, 2), drop_last=True)  # the odd image is dropped anyway


def test_scaled_slice_gradients_average_to_the_global_gradient() -> None:
    """What DDP computes, without processes: mean_r ∇(scale_r · loss_r) = ∇ loss(global batch)."""
    torch.manual_seed(0)
    model = build("dense-ae")
    data = Dataset((torch.rand(45, 1, 28, 28) * 255).to(torch.uint8), None)
    [whole] = list(Batches(data, 45, shuffle=False).epoch(0))
    model.zero_grad()
    model.loss(whole.x).total.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for rank in range(3):
        [mine] = list(Batches(data, 45, shuffle=False, part=(rank, 3)).epoch(0))
        (model.loss(mine.x).total * mine.loss_scale / 3).backward()  # grads add up over ranks
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_trainable_parameter_gets_a_gradient(name: str) -> None:
    """DDP runs without find_unused_parameters: `loss` must reach every trainable parameter."""
    torch.manual_seed(0)
    model = build(name).train()
    x = torch.rand(4, 1, 28, 28)
    model.loss(x, torch.arange(4), x).total.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    """Two Gloo processes with the global batch split between them train as one process does
    (batch 63 over 1000 images: every slice uneven), and write one run folder."""
    options = {
        "epochs": 1,
        "batch_size": 63,
        "train_subset": 1000,
        "test_subset": 200,
        "device": "cpu",
        "seed": 0,
        "data_dir": str(MNIST_DIR),
    }
    alone = aezoo.train("dense-ae", out=tmp_path / "alone", quiet=True, **options)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    workdir = tmp_path / "torchrun"
    workdir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*launch, "-m", "aezoo", "train", "dense-ae", "--quiet", *flags],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run folder:") == 1  # only rank 0 reports
    [run_dir] = (workdir / "runs").iterdir()  # one folder: rank 0's name, rank 0's writes
    assert sorted(p.name for p in workdir.iterdir()) == ["runs"]
    [record] = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    [expected] = [json.loads(line) for line in (alone.path / "metrics.jsonl").open()]
    for key in ("train_loss", "test_loss", "test_mse"):
        assert record[key] == pytest.approx(expected[key], rel=1e-4), key
    assert (run_dir / "model.safetensors").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 1
