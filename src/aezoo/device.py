"""Where training runs: choosing the device, process-wide set-up, bf16 support, model placement,
and the machine described in words for results."""

from __future__ import annotations

import os
import platform
import re
from typing import Any

import torch
from torch import nn

from aezoo.config import DEVICE_PATTERN, TrainConfig
from aezoo.errors import UsageError


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


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda, else mps, else cpu; an explicit device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not re.fullmatch(DEVICE_PATTERN, name):
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


def machine(device: torch.device | None = None) -> dict[str, Any]:
    """The hardware numbers were measured on: CPU model, cores, torch threads, the GPU if `device`
    (default: cuda where there is one) is one, and the versions."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return {**info, "torch": torch.__version__, "python": platform.python_version()}


def machine_text(device: torch.device | None = None) -> str:
    """`machine()` in words, for a results page."""
    info = machine(device)
    if "gpu" in info:
        return f"{info['gpu']}, torch {info['torch']}"
    return (
        f"{info['cores']}-core {info['cpu']} CPU, {info['threads']} torch threads, "
        f"torch {info['torch']}"
    )
