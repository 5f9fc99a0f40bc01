"""Gated PixelCNN (van den Oord et al. 2016) over grids of code indices: the VQ-VAE's prior.

    p(k) = Π_i p(k_i | k_<i [, y])          raster order over the (H, W) grid of codes

Two stacks of masked convolutions avoid the original PixelCNN's blind spot: the vertical stack
sees every position in the rows above, the horizontal stack the positions to the left in the
current row (plus the vertical stack). The first layer's masks exclude the centre (type A); later
layers include it (type B), which is safe because their inputs already depend only on k_<i. Each
layer's activation is gated: tanh(W_f ∗ h + V_f y) ⊙ σ(W_g ∗ h + V_g y).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aezoo.config import option, validate
from aezoo.errors import UsageError
from aezoo.models.terms import Terms


@dataclass(frozen=True)
class PixelCNNConfig:
    codebook_size: int = option(
        512, "number of codes K (from the VQ-VAE)", positive=True, cli=False
    )
    code_shape: tuple[int, ...] = option(
        (7, 7), "(H, W) of the code grid (from the VQ-VAE)", positive=True, cli=False
    )
    channels: int = option(64, "feature channels of the PixelCNN", positive=True)
    layers: int = option(
        8, "gated layers (the receptive field grows one row per layer)", positive=True
    )
    kernel: int = option(3, "kernel width of the masked convolutions (odd)", positive=True)
    num_classes: int = option(
        0,
        "class-conditional prior on labels 0..N−1 (0: unconditional; --conditional sets it)",
        low=0,
        cli=False,
    )

    def __post_init__(self) -> None:
        validate(self)
        if len(self.code_shape) != 2:
            raise UsageError(f"code_shape: expected (H, W), got {self.code_shape}")
        if self.kernel % 2 == 0:
            raise UsageError(f"kernel: must be odd, got {self.kernel}")


def causal_mask(height: int, width: int, *, include_centre: bool) -> Tensor:
    """1 where a (height × width) kernel may look: rows above the centre; in the centre row, the
    columns left of it (and the centre itself for type B)."""
    mask = torch.zeros(height, width)
    ch, cw = height // 2, width // 2
    mask[:ch] = 1.0
    mask[ch, : cw + include_centre] = 1.0
    return mask


class MaskedConv2d(nn.Module):
    """A same-size convolution whose kernel is multiplied by a fixed 0/1 mask."""

    def __init__(self, c_in: int, c_out: int, mask: Tensor) -> None:
        super().__init__()
        conv = nn.Conv2d(c_in, c_out, tuple(mask.shape))  # for its default initialisation
        self.weight, self.bias = conv.weight, conv.bias
        self.register_buffer("mask", mask, persistent=False)
        self.padding = (mask.shape[0] // 2, mask.shape[1] // 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def gate(a: Tensor) -> Tensor:
    """tanh(a_f) ⊙ σ(a_g), the two halves of the channels."""
    f, g = a.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One layer of both stacks; the first is type A (no centre) and has no residual path."""

    def __init__(self, channels: int, kernel: int, first: bool, num_classes: int) -> None:
        super().__init__()
        c, k = channels, kernel
        # Vertical: rows strictly above in the first layer, rows up to the centre afterwards
        # (whose features by then depend on rows above only).
        v_mask = torch.zeros(k, k)
        v_mask[: k // 2 + (not first)] = 1.0
        self.vertical = MaskedConv2d(c, 2 * c, v_mask)
        self.horizontal = MaskedConv2d(c, 2 * c, causal_mask(1, k, include_centre=not first))
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_out = nn.Conv2d(c, c, 1)
        self.label = nn.Embedding(num_classes, 2 * c) if num_classes else None
        self.residual = not first

    def forward(self, v: Tensor, h: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        v_feat = self.vertical(v)  # (B, 2C, H, W)
        h_feat = self.horizontal(h) + self.v_to_h(v_feat)  # (B, 2C, H, W)
        if self.label is not None:
            bias = self.label(y)[:, :, None, None]  # V y: (B, 2C, 1, 1)
            v_feat, h_feat = v_feat + bias, h_feat + bias
        h_new = self.h_out(gate(h_feat))  # (B, C, H, W)
        return gate(v_feat), h + h_new if self.residual else h_new


class PixelCNN(nn.Module):
    """An autoregressive prior over (B, H, W) grids of code indices; `forward` gives logits."""

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        c = config.channels
        self.embed = nn.Embedding(config.codebook_size, c)
        self.layers = nn.ModuleList(
            GatedLayer(c, config.kernel, i == 0, config.num_classes) for i in range(config.layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, config.codebook_size, 1)
        )

    def _check(self, codes: Tensor, y: Tensor | None) -> None:
        if tuple(codes.shape[1:]) != self.config.code_shape or codes.is_floating_point():
            shape = ", ".join(map(str, self.config.code_shape))
            raise UsageError(
                f"expected integer code grids (B, {shape}), got {codes.dtype} {tuple(codes.shape)}"
            )
        if self.num_classes and (y is None or y.shape != codes.shape[:1]):
            raise UsageError(
                f"this prior is conditioned on labels: pass y with one label in "
                f"0..{self.num_classes - 1} per grid"
            )

    def forward(self, codes: Tensor, y: Tensor | None = None) -> Tensor:
        """Logits of p(k_i | k_<i, y) at every position: (B, H, W) → (B, K, H, W)."""
        self._check(codes, y)
        x = self.embed(codes).permute(0, 3, 1, 2)  # (B, C, H, W)
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.head(h)  # (B, K, H, W)

    def loss(self, codes: Tensor, y: Tensor | None = None, x_in: Tensor | None = None) -> Terms:
        """nll = −Σ_i log p(k_i | k_<i, y) per grid, in nats, batch mean. (`x_in`: the training
        loop's corrupted input, which codes never have.)"""
        nll = F.cross_entropy(self(codes, y), codes, reduction="none").flatten(1).sum(1)  # (B,)
        return Terms({"nll": nll.mean()}, {"nll": 1.0})

    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        """Ancestral sampling in raster order: k_i ~ softmax(logits_i / T). → (n, H, W)"""
        if temperature <= 0:
            raise UsageError(f"temperature: must be > 0, got {temperature}")
        height, width = self.config.code_shape
        device = self.embed.weight.device
        codes = torch.zeros(n, height, width, dtype=torch.long, device=device)
        for i in range(height):
            for j in range(width):
                probs = torch.softmax(self(codes, y)[:, :, i, j] / temperature, dim=1)  # (n, K)
                codes[:, i, j] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return codes
