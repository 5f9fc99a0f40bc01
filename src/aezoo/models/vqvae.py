"""VQ-VAE (van den Oord et al. 2017): x → z_e = f(x) → z_q = nearest code → x̂ = g(z_q).

    conv:  (B, 1, 28, 28) → two stride-2 convolutions → z_e (B, D, 7, 7): 49 codes per image
    dense: (B, 784) → MLP → z_e (B, D): one code per image (the simplest form, for teaching)

    loss = recon(g(z_q), x) + ‖sg[z_e] − e‖² + β ‖z_e − sg[e]‖²   (codebook term dropped under EMA)

The quantiser's health options are on by default (EMA codebook, dead-code restarts, k-means
initialisation); `--codebook-ema 0 --dead-code-restart 0 --codebook-init uniform` gives the
original recipe, whose codebook collapses on MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from aezoo.config import option, validate
from aezoo.errors import UsageError
from aezoo.losses import reconstruction_loss
from aezoo.models.blocks import ConvEncoder, TransposedDecoder, conv_sizes, mlp
from aezoo.models.quantizer import VectorQuantizer, perplexity
from aezoo.models.terms import Terms, check_images, check_latent, check_targets


@dataclass(frozen=True)
class VQVAEConfig:
    arch: Literal["conv", "dense"] = option(
        "conv", "conv (a grid of codes per image) or dense (one code per image)"
    )
    image_shape: tuple[int, ...] = option(
        (1, 28, 28), "(C, H, W) of the images", positive=True, cli=False
    )
    codebook_size: int = option(512, "number of codes K in the codebook", positive=True)
    embedding_dim: int = option(64, "width D of each code vector", positive=True)
    channels: tuple[int, ...] = option(
        (32, 64), "conv: channels of each stride-2 stage", positive=True
    )
    residual_blocks: int = option(
        0, "conv: residual blocks at the code grid's resolution, in encoder and decoder", low=0
    )
    hidden: tuple[int, ...] = option((256, 128), "dense: hidden layer widths", positive=True)
    batchnorm: bool = option(True, "conv: BatchNorm after each strided convolution")
    commitment_weight: float = option(0.25, "β, the weight of the commitment loss", low=0.0)
    codebook_ema: float = option(
        0.99,
        "decay of the EMA codebook updates (0: learn the codes by the codebook loss)",
        low=0.0,
        high=0.9999,
    )
    dead_code_restart: int = option(
        50,
        "re-initialise codes unused for this many training steps from encoder outputs (0: never)",
        low=0,
    )
    codebook_init: Literal["uniform", "kmeans"] = option(
        "kmeans", "uniform (±1/K) or kmeans (k-means on the first training batch)"
    )
    loss: Literal["mse", "bce"] = option("mse", "reconstruction loss: mse or bce (Bernoulli NLL)")

    def __post_init__(self) -> None:
        validate(self)
        if len(self.image_shape) != 3:
            raise UsageError(f"image_shape: expected (C, H, W), got {self.image_shape}")


class ResidualBlock(nn.Module):
    """h + Conv1×1(ReLU(Conv3×3(ReLU(h)))), the VQ-VAE paper's block; shape preserved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.net(h)


class VQVAE(nn.Module):
    """A VQ-VAE; see the module docstring. `code_shape` is (7, 7) for conv and () for dense."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = 0
        c, h, w = config.image_shape
        d = config.embedding_dim
        if config.arch == "dense":
            pixels = c * h * w
            self.encoder = nn.Sequential(nn.Flatten(), mlp([pixels, *config.hidden, d]))
            self.decoder = nn.Sequential(
                mlp([d, *config.hidden[::-1], pixels]), nn.Unflatten(1, (c, h, w))
            )
            self.code_shape: tuple[int, ...] = ()
        else:
            sizes = conv_sizes(config.image_shape, len(config.channels))
            top = config.channels[-1]
            res = [ResidualBlock(top) for _ in range(config.residual_blocks)]
            self.encoder = nn.Sequential(
                ConvEncoder(c, config.channels, config.batchnorm),
                *res,
                nn.Conv2d(top, d, 1),
            )  # (B, D, 7, 7)
            res = [ResidualBlock(top) for _ in range(config.residual_blocks)]
            self.decoder = nn.Sequential(
                nn.Conv2d(d, top, 3, 1, 1),
                *res,
                nn.ReLU(),
                TransposedDecoder(config.channels[::-1], c, sizes[::-1], config.batchnorm),
            )  # (B, C, H, W) logits
            self.code_shape = sizes[-1]
        self.latent_shape = (d, *self.code_shape)
        self.quantizer = VectorQuantizer(
            config.codebook_size,
            d,
            beta=config.commitment_weight,
            ema=config.codebook_ema,
            dead_code_restart=config.dead_code_restart,
            init=config.codebook_init,
        )

    # z_e is (B, D, h, w) or (B, D); the quantiser wants channels last: (B, h, w, D) or (B, D).
    def _encode_e(self, x: Tensor) -> Tensor:
        check_images(x, self.config.image_shape)
        return self.encoder(x).movedim(1, -1)  # (B, 7, 7, D)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """z_q: each encoder vector replaced by its nearest code (straight-through gradient)."""
        z_q, _ = self.quantizer.quantize(self._encode_e(x))
        return z_q.movedim(-1, 1)  # (B, D, 7, 7)

    def encode_indices(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The code index at each grid position: (B, 7, 7) for conv, (B,) for dense."""
        return self.quantizer.nearest(self._encode_e(x))

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Logits of x̂ = g(z_q)."""
        check_latent(z, self.latent_shape)
        return self.decoder(z)  # (B, C, H, W)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Pixel values x̂ = sigmoid(g(z_q)) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, y))

    def decode_indices(self, indices: Tensor, y: Tensor | None = None) -> Tensor:
        """Pixel values from a grid of code indices (B, *code_shape)."""
        k = self.config.codebook_size
        if (
            not isinstance(indices, Tensor)
            or indices.is_floating_point()
            or tuple(indices.shape[1:]) != self.code_shape
        ):
            got = tuple(indices.shape) if isinstance(indices, Tensor) else type(indices).__name__
            raise UsageError(
                f"expected integer code indices of shape (B"
                f"{''.join(f', {s}' for s in self.code_shape)}), got {got}"
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= k):
            raise UsageError(
                f"code indices must lie in 0..{k - 1}, got "
                f"{int(indices.min())}..{int(indices.max())}"
            )
        z_q = self.quantizer.lookup(indices.long().to(self.quantizer.codebook.device))
        return self.decode(z_q.movedim(-1, 1), y)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The reconstruction x̂ of x, in pixel values."""
        return self.decode(self.encode(x, y), y)

    def loss(self, x: Tensor, y: Tensor | None = None, x_in: Tensor | None = None) -> Terms:
        """recon (Σ_pixels per image) + codebook + β·commitment (Σ over the grid per image)."""
        check_targets(self, x, x_in, bernoulli=self.config.loss == "bce")
        q = self.quantizer(self._encode_e(x if x_in is None else x_in))
        logits = self.decoder(q.z_q.movedim(-1, 1))  # (B, C, H, W)
        recon = reconstruction_loss(logits, x, self.config.loss).mean()
        outputs = {} if self.training else {"logits": logits, "codes": q.indices}
        return Terms({"recon": recon, **q.terms}, {"recon": 1.0, **q.terms.weights}, outputs)

    @property
    def code_counts(self) -> Tensor:
        """How often training chose each code (K,): the quantizer's running counts."""
        return self.quantizer.code_counts

    @torch.inference_mode()
    def code_usage(self, batches: Any) -> Tensor:
        """How often each code is chosen over every image of `batches` (K,)."""
        counts = torch.zeros_like(self.quantizer.code_counts)
        for batch in batches.epoch(0):
            idx = self.encode_indices(batch.x_in).reshape(-1)
            counts.scatter_add_(0, idx, torch.ones_like(idx, dtype=counts.dtype))
        return counts

    def test_metrics(self, batches: Any, codes: Tensor | None = None) -> dict[str, float]:
        """Codebook health on the test set: codes used (count and %) and the usage perplexity.
        `codes`: the test set's code indices when the caller already has them (evaluate)."""
        if codes is None:
            counts = self.code_usage(batches)
        else:
            counts = torch.bincount(codes.reshape(-1), minlength=self.config.codebook_size)
            counts = counts.to(self.quantizer.code_counts.dtype)
        used = int((counts > 0).sum())
        return {
            "test_codes_used": used,
            "test_codes_used_pct": 100.0 * used / self.config.codebook_size,
            "test_perplexity": float(perplexity(counts)),
        }
