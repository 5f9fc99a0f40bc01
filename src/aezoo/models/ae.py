"""Deterministic autoencoders: x → z = f(x) → x̂ = g(z), trained to make x̂ close to x.

One class covers the dense, convolutional and upsampling forms (`arch`); a denoising AE is any of
them trained with `noise` (the encoder sees a corrupted x̃, the loss compares g(f(x̃)) with x) and,
for the classic dense form, `dropout` on the encoder's input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from aezoo.config import option, validate
from aezoo.errors import UsageError
from aezoo.losses import reconstruction_loss
from aezoo.models.blocks import ConvEncoder, TransposedDecoder, UpsampleDecoder, conv_sizes, mlp
from aezoo.models.terms import Terms, check_images, check_latent, check_targets


@dataclass(frozen=True)
class AEConfig:
    arch: Literal["dense", "conv", "upsample"] = option(
        "dense",
        "dense (MLP), conv (strided convs + transposed convs) or upsample (strided convs + "
        "bilinear upsampling and convs)",
    )
    image_shape: tuple[int, ...] = option(
        (1, 28, 28), "(C, H, W) of the images", positive=True, cli=False
    )
    latent_dim: int = option(32, "width of the bottleneck z", positive=True)
    hidden: tuple[int, ...] = option((256, 128), "dense: hidden layer widths", positive=True)
    channels: tuple[int, ...] = option(
        (32, 64, 128), "conv/upsample: channels of each stride-2 stage", positive=True
    )
    batchnorm: bool = option(True, "conv/upsample: BatchNorm after each convolution")
    head: int = option(
        0,
        "conv/upsample: channels of one more 3×3 convolution at full resolution before the "
        "output (0: the last up-sampling stage emits the image)",
        low=0,
    )
    dropout: float = option(
        0.0, "dropout on the encoder's input (the classic denoising AE)", low=0.0, high=0.95
    )
    loss: Literal["mse", "bce"] = option("mse", "reconstruction loss: mse or bce (Bernoulli NLL)")

    def __post_init__(self) -> None:
        validate(self)
        if len(self.image_shape) != 3:
            raise UsageError(f"image_shape: expected (C, H, W), got {self.image_shape}")
        if self.arch != "dense" and not self.channels:
            raise UsageError(f"channels: a {self.arch} AE needs at least one stage")


class AE(nn.Module):
    """A deterministic autoencoder; see the module docstring."""

    def __init__(self, config: AEConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = 0
        c, h, w = config.image_shape
        if config.arch == "dense":
            pixels = c * h * w
            self.encoder = nn.Sequential(
                nn.Flatten(),
                mlp([pixels, *config.hidden, config.latent_dim], dropout=config.dropout),
            )
            self.decoder = nn.Sequential(
                mlp([config.latent_dim, *config.hidden[::-1], pixels]), nn.Unflatten(1, (c, h, w))
            )
        else:
            sizes = conv_sizes(config.image_shape, len(config.channels))
            feat = (config.channels[-1], *sizes[-1])  # (C', h', w'), e.g. (128, 4, 4)
            decoder = TransposedDecoder if config.arch == "conv" else UpsampleDecoder
            self.encoder = nn.Sequential(
                nn.Dropout(config.dropout) if config.dropout else nn.Identity(),
                ConvEncoder(c, config.channels, config.batchnorm),
                nn.Flatten(),
                nn.Linear(math.prod(feat), config.latent_dim),
            )
            self.decoder = nn.Sequential(
                nn.Linear(config.latent_dim, math.prod(feat)),
                nn.ReLU(),
                nn.Unflatten(1, feat),
                decoder(config.channels[::-1], c, sizes[::-1], config.batchnorm, config.head),
            )

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """z = f(x)."""
        check_images(x, self.config.image_shape)
        return self.encoder(x)  # (B, latent_dim)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Logits of x̂ = g(z); the losses take these for numerical stability."""
        check_latent(z, (self.config.latent_dim,))
        return self.decoder(z)  # (B, C, H, W)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Pixel values x̂ = sigmoid(g(z)) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, y))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The reconstruction x̂ of x, in pixel values."""
        return self.decode(self.encode(x, y), y)

    def loss(self, x: Tensor, y: Tensor | None = None, x_in: Tensor | None = None) -> Terms:
        """recon = Σ_pixels ℓ(g(f(x̃)), x) per image, batch mean; x̃ = x_in (corrupted) or x."""
        check_targets(self, x, x_in, bernoulli=self.config.loss == "bce")
        logits = self.decode_logits(self.encode(x if x_in is None else x_in))
        recon = reconstruction_loss(logits, x, self.config.loss).mean()
        outputs = {} if self.training else {"logits": logits}  # evaluation reuses them
        return Terms({"recon": recon}, weights={"recon": 1.0}, outputs=outputs)
