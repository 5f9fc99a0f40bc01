"""What every model's `loss` returns, and the input checks every model shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from aezoo.errors import UsageError


class Terms(dict[str, Tensor]):
    """Named scalar loss terms (per-image means, nats for likelihoods) and their weights.

    `total` = Σ_k weight_k · term_k over the weighted terms; a term without a weight is a
    diagnostic (reported, not optimised). A schedule rescales a weight with `reweight`.
    `outputs` holds by-products evaluation can reuse instead of running the model again:
    "logits", the deterministic reconstruction decode_logits(encode(x̃)), and "codes", a VQ-VAE's
    code indices; models attach them in eval mode only, where they are deterministic.
    """

    def __init__(
        self,
        terms: Mapping[str, Tensor],
        weights: Mapping[str, float],
        outputs: Mapping[str, Tensor] | None = None,
    ) -> None:
        super().__init__(terms)
        missing = set(weights) - set(terms)
        if missing:
            raise KeyError(f"weights for missing terms: {sorted(missing)}")
        self.weights = dict(weights)
        self.outputs = dict(outputs or {})

    @property
    def total(self) -> Tensor:
        parts = [self[k] * w for k, w in self.weights.items()]
        return sum(parts[1:], parts[0])

    def reweight(self, name: str, factor: float) -> Terms:
        """A copy with `name`'s weight times `factor` (no-op if the model has no such term)."""
        weights = dict(self.weights)
        if name in weights:
            weights[name] *= factor
        return Terms(self, weights, self.outputs)


def check_images(x: Tensor, image_shape: Sequence[int]) -> None:
    """Reject input that is not a float batch of the model's (C, H, W), saying what came."""
    if not isinstance(x, Tensor):
        raise UsageError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise UsageError(
            f"expected images of shape (B, {', '.join(map(str, image_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise UsageError(f"expected float pixel values in [0, 1], got dtype {x.dtype}")


def check_latent(z: Tensor, latent_shape: Sequence[int]) -> None:
    """Reject latents of the wrong width before they reach a matrix-multiply traceback."""
    if (
        not isinstance(z, Tensor)
        or z.dim() != 1 + len(latent_shape)
        or tuple(z.shape[1:]) != tuple(latent_shape)
    ):
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise UsageError(
            f"expected latents of shape (B, {', '.join(map(str, latent_shape))}), got {got}"
        )


@torch.compiler.disable  # host-side reads: under --compile it runs as plain Python
def check_targets(
    model: nn.Module, x: Tensor, x_in: Tensor | None = None, *, bernoulli: bool = False
) -> None:
    """On a model's first `loss` call, reject NaN or infinite pixels, and targets outside [0, 1]
    under a Bernoulli likelihood, saying what came. Only the first: the check reads the batch
    back to the host, a stall per step on an accelerator, and a wrongly scaled data set shows in
    its first batch (aezoo's own data is checked once, when loaded)."""
    if getattr(model, "_targets_checked", False):
        return
    check_images(x, model.config.image_shape)
    for name, t in (("images", x), ("input images", x_in)):
        if t is not None and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise UsageError(
                f"expected finite pixel values, got NaN or infinite {name} ({bad} of "
                f"{t.numel()} values)"
            )
    if bernoulli:
        low, high = (float(v) for v in torch.aminmax(x))
        if low < 0.0 or high > 1.0:
            raise UsageError(
                f"expected pixel values in [0, 1] for the Bernoulli likelihood (bce), got "
                f"{low:g}..{high:g} (images as floats 0..1, e.g. uint8 / 255)"
            )
    model._targets_checked = True
