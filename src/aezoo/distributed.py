"""Data-parallel training over the processes torchrun starts, on PyTorch's own engine (DDP).

    torchrun --nproc-per-node 4 -m aezoo train conv-vae ...                  # one machine
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29500 -m aezoo train conv-vae ...          # each machine

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `train` then runs inside a process group (NCCL for
CUDA tensors, Gloo for CPU ones) and every process:
- takes its slice of each global batch (`Batches(part=(rank, size))`): `batch_size` stays the
  global batch and the data order is the single-process order;
- computes `model.loss` through DistributedDataParallel, scaled by its slice's share of the global
  batch (`Batch.loss_scale`), so DDP's gradient average is the global batch's gradient — uneven
  last batches included — and a step equals the single-process step;
- on CUDA, normalises BatchNorm over the global batch (SyncBatchNorm; PyTorch has no CPU kernel
  for it, so on the CPU each process normalises its own slice);
- all-reduces the epoch's metric sums and takes rank 0's weights and buffers at each epoch's end;
- leaves writing the run folder, printing and warning to rank 0.

Why DDP rather than all-reducing the gradients by hand after backward (which would be exact too):
DDP overlaps its bucketed all-reduces with the backward pass, which is what pays across machines,
and it broadcasts rank 0's initial weights and the buffers. It syncs only through its `forward`,
so the training loop calls `model.loss` as the forward of a small module (train.LossOf). Alone
(no WORLD_SIZE, or WORLD_SIZE=1) everything here is a no-op.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from aezoo.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])


def launched() -> bool:
    """Whether torchrun (or another launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, number of processes) of the running process group; (0, 1) alone."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def is_main() -> bool:
    """Rank 0, the process that writes and prints (True alone; read from RANK outside a group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, CUDA means this process's own GPU, cuda:LOCAL_RANK."""
    if device.type != "cuda" or not launched():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.index not in (None, local_rank):
        raise UsageError(
            f"device {device}: under torchrun each process uses the GPU of its LOCAL_RANK; "
            "pass --device cuda (or auto)"
        )
    return torch.device("cuda", local_rank)


@contextmanager
def process_group() -> Iterator[None]:
    """Under torchrun, a process group for the block (joined if one runs, else started and torn
    down after); on ranks other than 0 the block's warnings are silenced. Alone, nothing."""
    if not launched():
        yield
        return
    started = not dist.is_initialized()
    if started:
        backend = "gloo"
        if torch.cuda.is_available() and dist.is_nccl_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            backend = "cpu:gloo,cuda:nccl"  # each collective goes to its tensors' device
        dist.init_process_group(backend)
    try:
        with warnings.catch_warnings():
            if not is_main():
                warnings.simplefilter("ignore")  # one copy of each warning, from rank 0
            yield
    finally:
        if started:
            dist.destroy_process_group()


def in_process_group(fn: F) -> F:
    """Decorate `fn` to run inside `process_group()`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with process_group():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def data_parallel(module: nn.Module) -> nn.Module:
    """`module` itself; in a process group, `module` in DistributedDataParallel (and, on CUDA, with
    its BatchNorm layers turned into SyncBatchNorm in place: the parameters stay the same objects,
    so an optimizer made before still holds them). DDP syncs gradients only through `forward`."""
    if not active():
        return module
    device = next(module.parameters()).device
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    # Every registered model uses all its trainable parameters in `loss` (tested), so DDP need
    # not search the graph for unused ones.
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        gradient_as_bucket_view=True,
    )


@torch.no_grad()
def end_epoch(
    model: nn.Module, sums: dict[str, Tensor], seen: int
) -> tuple[dict[str, Tensor], int]:
    """The epoch's metric sums and image count over all processes; every process then takes rank
    0's weights and buffers (BatchNorm statistics on the CPU and codebook updates are computed from
    each process's own slice, so they could drift apart). Alone: `sums, seen` unchanged."""
    if not active():
        return sums, seen
    values = [v.double() for v in sums.values()]
    flat = torch.stack([*values, values[0].new_tensor(float(seen))])
    dist.all_reduce(flat)
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)
    totals = {k: flat[i].to(v.dtype) for i, (k, v) in enumerate(sums.items())}
    return totals, int(flat[-1].item())


def on_main(fn: Callable[..., Any], *args: Any) -> None:
    """`fn(*args)` on rank 0 only (writing, say); a UsageError it raises is raised on every
    process, so that all of them stop with the same one-line message. Alone: `fn(*args)`."""
    if not active():
        fn(*args)
        return
    error = None
    if is_main():
        try:
            fn(*args)
        except UsageError as err:
            error = str(err)
    error = broadcast_object(error)
    if error is not None:
        raise UsageError(error)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every process (a run folder's name, say); `obj` itself alone."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
