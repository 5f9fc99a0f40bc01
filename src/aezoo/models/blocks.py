"""Building blocks shared by composition: MLPs, strided conv encoders and the two decoders.

Conv shapes follow out = ⌊(in + 2p − k) / s⌋ + 1 with k=3, s=2, p=1, so 28 → 14 → 7 → 4; the
decoders retrace the recorded sizes exactly (4 → 7 → 14 → 28), whatever the input size.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from aezoo.errors import UsageError


def mlp(
    sizes: Sequence[int], *, final_activation: bool = False, dropout: float = 0.0
) -> nn.Sequential:
    """Linear layers with ReLU between them; optional dropout on the input (denoising AE)."""
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def conv_out(size: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
    """Spatial size after one convolution."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_sizes(image_shape: Sequence[int], depth: int) -> list[tuple[int, int]]:
    """(H, W) at the input and after each of `depth` stride-2 convolutions."""
    h, w = image_shape[1], image_shape[2]
    sizes = [(h, w)]
    for _ in range(depth):
        h, w = conv_out(h), conv_out(w)
        sizes.append((h, w))
    return sizes


def _norm(channels: int, batchnorm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batchnorm else nn.Identity()


class ConvEncoder(nn.Module):
    """Stride-2 3×3 convolutions (+BatchNorm) with ReLU: (B, C, H, W) → (B, channels[-1], h, w)."""

    def __init__(self, in_channels: int, channels: Sequence[int], batchnorm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip([in_channels, *channels[:-1]], channels, strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 3, 2, 1, bias=not batchnorm),
                _norm(c_out, batchnorm),
                nn.ReLU(),
            ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _with_head(layers: list[nn.Module], head: int, out_channels: int, batchnorm: bool) -> None:
    """With `head` > 0 the last stage emits `head` channels, and one more 3×3 convolution at full
    resolution maps them to the output logits: a non-linear step where the pixels are made."""
    if head:
        layers += [_norm(head, batchnorm), nn.ReLU(), nn.Conv2d(head, out_channels, 3, 1, 1)]


class TransposedDecoder(nn.Module):
    """ConvTranspose2d stages retracing `sizes` (smallest first); the last stage (or `head`)
    emits logits."""

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int,
        sizes: Sequence[tuple[int, int]],
        batchnorm: bool = True,
        head: int = 0,
    ) -> None:
        super().__init__()
        outs = [*channels[1:], head or out_channels]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels, outs, strict=True)):
            (h, w), (th, tw) = sizes[i], sizes[i + 1]
            pad = (th - (2 * h - 1), tw - (2 * w - 1))  # output_padding that lands on the target
            layers.append(
                nn.ConvTranspose2d(
                    c_in,
                    c_out,
                    3,
                    2,
                    1,
                    output_padding=pad,
                    bias=not batchnorm or (i == len(outs) - 1 and not head),
                )
            )
            if i < len(outs) - 1:
                layers += [_norm(c_out, batchnorm), nn.ReLU()]
        _with_head(layers, head, out_channels, batchnorm)
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class UpsampleDecoder(nn.Module):
    """Bilinear upsampling to each recorded size, then a 3×3 convolution: no transposed convs,
    hence no checkerboard artefacts (Odena et al. 2016)."""

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int,
        sizes: Sequence[tuple[int, int]],
        batchnorm: bool = True,
        head: int = 0,
    ) -> None:
        super().__init__()
        outs = [*channels[1:], head or out_channels]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels, outs, strict=True)):
            last = i == len(outs) - 1 and not head
            layers += [
                nn.Upsample(size=sizes[i + 1], mode="bilinear", align_corners=False),
                nn.Conv2d(c_in, c_out, 3, 1, 1, bias=not batchnorm or last),
            ]
            if i < len(outs) - 1:
                layers += [_norm(c_out, batchnorm), nn.ReLU()]
        _with_head(layers, head, out_channels, batchnorm)
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


def one_hot(y: Tensor | None, num_classes: int, batch: int, device: torch.device) -> Tensor:
    """One-hot labels (B, K) for conditioning; an error if a conditional model gets none."""
    if y is None:
        raise UsageError(
            f"this model is conditioned on labels: pass y with values in 0..{num_classes - 1}"
        )
    if y.shape != (batch,):
        raise UsageError(f"labels must have shape ({batch},), got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UsageError(
            f"labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}"
        )
    return nn.functional.one_hot(y.long(), num_classes).to(device=device, dtype=torch.float32)


def sample_labels(
    n: int, y: int | Tensor | None, num_classes: int, device: torch.device
) -> Tensor | None:
    """Labels for n generated images: None if unconditional (num_classes 0); else y as given, an
    int repeated, or (y None) 0..K−1 in turn. one_hot checks their range."""
    if not num_classes:
        return None
    if y is None:
        return torch.arange(n, device=device) % num_classes
    if isinstance(y, int):
        return torch.full((n,), y, dtype=torch.long, device=device)
    return torch.as_tensor(y, device=device)
