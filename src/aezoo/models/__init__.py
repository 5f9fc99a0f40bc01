"""The model registry: the one place where a model's name maps to its class and preset config.

Every model is an nn.Module with `encode(x, y=None)`, `decode_logits(z, y=None)`,
`decode(z, y=None)` (pixel values), `forward(x, y=None)` (the reconstruction) and
`loss(x, y=None, x_in=None) -> Terms`; generative models add `sample(n, y=None, generator=None)`.
Conditional models set `num_classes > 0`. Anything more (a Gaussian posterior, discrete codes, ...)
is a Protocol in aezoo.models.protocols that callers check with isinstance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from aezoo.config import from_dict
from aezoo.errors import UsageError
from aezoo.models.ae import AE, AEConfig
from aezoo.models.protocols import (
    Autoencoder,
    DiscreteLatent,
    GaussianLatent,
    Generative,
    HasTestMetrics,
)
from aezoo.models.terms import Terms
from aezoo.models.vae import VAE, VAEConfig
from aezoo.models.vqvae import VQVAE, VQVAEConfig
from aezoo.models.words import shape_words


@dataclass(frozen=True)
class Preset:
    """A registered name: a model class, its config class and the options that make it this one."""

    model: type[nn.Module]
    config: type
    summary: str  # a template: its {words} come from the config (aezoo.models.words)
    options: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig defaults for it

    def make_config(self, **overrides: Any) -> Any:
        """The preset's config with `overrides`; options the config lacks are errors naming them."""
        known = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(
                f"option {unknown[0]!r} does not apply to this model "
                f"({self.config.__name__} has: {', '.join(sorted(known))})"
            )
        return from_dict(self.config, {**self.options, **overrides})

    def describe(self, config: Any = None) -> str:
        """The summary with the shapes of `config` (default: the preset's, for 1×28×28 images)."""
        return self.summary.format(**shape_words(config or self.make_config()))


MODELS: dict[str, Preset] = {
    "dense-ae": Preset(
        AE,
        AEConfig,
        "MLP autoencoder {dense} (the classic vanilla AE)",
        {"arch": "dense", "latent_dim": 32},
        training={"lr": 5e-3},
    ),
    "conv-ae": Preset(
        AE,
        AEConfig,
        "strided-conv encoder {conv} + BatchNorm, {latent_dim}-d linear "
        "bottleneck, transposed-conv decoder",
        {"arch": "conv", "latent_dim": 128},
        training={"lr": 2e-3, "lr_schedule": "warmdown", "warmdown": 0.2},
    ),
    "upsample-ae": Preset(
        AE,
        AEConfig,
        "conv-ae's encoder ({conv}); decoder of bilinear upsampling + convolutions, "
        "{head}-channel head",
        {"arch": "upsample", "latent_dim": 128, "head": 16},
        training={"lr": 2e-3, "lr_schedule": "warmdown"},
    ),
    "dense-vae": Preset(
        VAE,
        VAEConfig,
        "VAE, MLP {trunk}, μ and log σ² heads, latent {latent_dim}, {likelihood} likelihood",
        {"arch": "dense", "latent_dim": 20},
    ),
    "conv-vae": Preset(
        VAE,
        VAEConfig,
        "VAE, strided convs {conv}, linear heads, latent {latent_dim}, transposed-conv decoder",
        {"arch": "conv", "latent_dim": 20},
    ),
    "cvae": Preset(
        VAE,
        VAEConfig,
        "conditional dense-vae (MLP {trunk}): one-hot label joins encoder and decoder inputs",
        {"arch": "dense", "latent_dim": 20, "num_classes": 10},
    ),
    "conv-cvae": Preset(
        VAE,
        VAEConfig,
        "conditional conv-vae (convs {conv}): one-hot label joins the heads' and the decoder's "
        "inputs",
        {"arch": "conv", "latent_dim": 20, "num_classes": 10},
    ),
    "conv-vqvae": Preset(
        VQVAE,
        VQVAEConfig,
        "VQ-VAE, stride-2 convs {conv}, a grid of {grid} {embedding_dim}-d "
        "vectors, {codebook_size} codes (EMA, restarts, k-means init), transposed convs",
        {"arch": "conv"},
        training={"lr": 2e-3},
    ),
    "dense-vqvae": Preset(
        VQVAE,
        VQVAEConfig,
        "VQ-VAE with one code per input: MLP {dense}, {codebook_size} codes, MLP decoder",
        {"arch": "dense"},
        training={"lr": 2e-3},
    ),
}


def preset(name: str) -> Preset:
    """The registered preset called `name`, or an error listing the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def build(name: str, **options: Any) -> nn.Module:
    """A fresh model from the registry, e.g. build("dense-ae", latent_dim=16)."""
    p = preset(name)
    return p.model(p.make_config(**options))


def build_from_config(name: str, config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from the `model_config` saved in a run's config.json."""
    p = preset(name)
    return p.model(from_dict(p.config, config, where="model_config"))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "AE",
    "MODELS",
    "AEConfig",
    "Autoencoder",
    "DiscreteLatent",
    "GaussianLatent",
    "Generative",
    "HasTestMetrics",
    "Preset",
    "Terms",
    "build",
    "build_from_config",
    "count_parameters",
    "preset",
]
__all__ += ["VAE", "VAEConfig"]
__all__ += ["VQVAE", "VQVAEConfig"]
