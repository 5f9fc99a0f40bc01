"""The tutorial reference pipeline the benchmark compares with: torchvision's MNIST + ToTensor
feeding a DataLoader (rebuilt here step for step; torchvision is not a dependency), and one
tutorial-style training epoch."""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from aezoo.data import Dataset


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PILMNIST(TorchDataset):
    """torchvision's MNIST with its ToTensor transform, step for step (torchvision is not a
    dependency): a uint8 torch tensor indexed per sample, one PIL image, then ToTensor's copy to
    a (H, W, 1) tensor, permute to (1, H, W), contiguous, float, /255."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.data, self.targets = images, labels  # (N, H, W) uint8, (N,) int64

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img, target = self.data[index], int(self.targets[index])
        pic = Image.fromarray(img.numpy(), mode="L")
        x = torch.from_numpy(np.array(pic, np.uint8, copy=True))  # ToTensor from here on
        x = x.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
        return x.to(dtype=torch.get_default_dtype()).div(255), target


def reference_loader(data: Dataset, batch_size: int = 128) -> DataLoader:
    """The tutorial feeding of a (1-channel) data set: DataLoader over PILMNIST, shuffled."""
    labels = data.labels if data.labels is not None else torch.zeros(len(data), dtype=torch.long)
    dataset = PILMNIST(data.images[:, 0].cpu(), labels.cpu())
    return DataLoader(dataset, batch_size=batch_size, shuffle=True)


def reference_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader
) -> float:
    """Seconds for one tutorial-style epoch: batches copied to the model's device, loss, step."""
    device = next(model.parameters()).device
    synchronize(device)
    started = time.perf_counter()
    for x, y in loader:
        loss = model.loss(x.to(device), y.to(device)).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - started
