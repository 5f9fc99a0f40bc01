"""What callers may rely on, as `typing.Protocol`s checked with `isinstance`: every model is an
`Autoencoder`; a capability (sampling, a Gaussian posterior, discrete codes, extra test metrics) is
a protocol of its own, never an attribute probe or a chain over classes."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from aezoo.models.terms import Terms


@runtime_checkable
class Autoencoder(Protocol):
    """encode, decode (pixel values) and the training loss as named terms; `num_classes` > 0
    for a model conditioned on labels 0..num_classes-1."""

    num_classes: int

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor: ...

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor: ...

    def loss(self, x: Tensor, y: Tensor | None = None, x_in: Tensor | None = None) -> Terms: ...


@runtime_checkable
class Generative(Protocol):
    """Draws new images: (n, C, H, W) pixel values."""

    def sample(self, n: int, y: Any = None, generator: torch.Generator | None = None) -> Tensor: ...


@runtime_checkable
class GaussianLatent(Protocol):
    """A Gaussian posterior q(z|x) = N(μ, diag σ²), the likelihood −log p(x|z) per image, and
    importance weights log w = log p(x|z) + log p(z) − log q(z|x)."""

    def posterior(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]: ...

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor: ...

    def nll(self, logits: Tensor, x: Tensor) -> Tensor: ...

    def log_importance_weights(
        self,
        x: Tensor,
        y: Tensor | None = None,
        samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor: ...

    def log_weights_at(
        self, x: Tensor, y: Tensor | None, z: Tensor, mu: Tensor, log_var: Tensor
    ) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class DiscreteLatent(Protocol):
    """Codes from a codebook: indices on a `code_shape` grid ((H, W), or () for one per image),
    how often training chose each, and their usage over a data set."""

    code_shape: tuple[int, ...]
    code_counts: Tensor  # (K,) how often training chose each code

    def encode_indices(self, x: Tensor, y: Tensor | None = None) -> Tensor: ...

    def decode_indices(self, indices: Tensor, y: Tensor | None = None) -> Tensor: ...

    def code_usage(self, batches: Any) -> Tensor: ...


@runtime_checkable
class HasTestMetrics(Protocol):
    """Metrics beyond the loss terms, computed over every test image."""

    def test_metrics(self, batches: Any) -> dict[str, Any]: ...
