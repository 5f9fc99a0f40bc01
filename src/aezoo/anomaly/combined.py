"""The image default's score, "combined": how unusual an image's code is, how much of the image
the model fails to reconstruct, and how unusual its pixels' leading principal components are,
each in robust standard units of held-out training images.

    latent part  a(x) = −log p(encode(x)): the code under a full-covariance Gaussian mixture
                 fitted to the training codes (the "latent" score's mixture), each component's
                 covariance then shrunk a tenth of the way toward the mixture's pooled one,
                 Σ_k ← (1 − λ)Σ_k + λ·Σ_j π_j Σ_j, λ = 0.1: a component holds ~100 codes of
                 a 5,000-image set, too few to trust all 528 entries of a 32-wide covariance
                 (λ = 0.05 for a mixture fitted to five codes per image: a small set's images
                 and their one-pixel nudges);
    recon part   r(x) = log((‖x − x̂‖² + ε) / (‖x‖² + ε)), x̂ = decode(encode(x)): the share of the
                 image's energy left unexplained, so that a sparse image (a thin stroke) is not
                 normal merely because it has little to get wrong;
    pixel part   p(x) = −log q(W(x − μ)): the training images' leading principal components, as
                 many as the code is wide, under a mixture fitted and shrunk as the latent one
                 (the classical detector the autoencoder is measured against, kept beside it:
                 two density models that err on different images, a product of experts);
    score        z(a) + ½·max(z(r), 0) + max(z(p), 0),  z(s) = (s − median) / IQR over the
                 reference images; for a model trained on images moved by a pixel (a small set:
                 the detector's `shift`), the lowest score of the image's nine views moved by at
                 most one pixel each way: the best-aligned view, as a model that has seen its
                 digits in every such position would judge it.

The recon and pixel parts only ever add suspicion: on images of an unseen kind that are *simpler*
than the training images both are low (a "1" among other digits), and a two-sided sum would call
them normal (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import Tensor, nn

from aezoo.anomaly import scoring
from aezoo.explore import fit_gmm

RECON_WEIGHT = 0.5  # weight of the one-sided recon part (measured: docs/benchmarks.md)
PIXEL_WEIGHT = 1.0  # weight of the one-sided pixel part (measured: docs/benchmarks.md)
SHRINKAGE = 0.1  # λ, the covariances' step toward the pooled one (measured: docs/benchmarks.md)
NUDGED_SHRINKAGE = 0.05  # λ for a mixture fitted to five codes per image (the image and its nudges)
EPS = 1e-3  # ε of the relative error: an empty image is neither 0/0 nor infinitely anomalous


def relative_error(model: nn.Module, x: Tensor) -> np.ndarray:
    """log((‖x − x̂‖² + ε) / (‖x‖² + ε)) per row."""
    return log_share(scoring.codes_and_errors(model, x)[1], x)


def log_share(error: np.ndarray, x: Tensor) -> np.ndarray:
    """log((error + ε) / (‖x‖² + ε)) per row, for errors ‖x − x̂‖² already computed."""
    energy = x.flatten(1).double().square().sum(1).numpy()
    return np.log(error + EPS) - np.log(energy + EPS)


def robust_scale(values: np.ndarray) -> tuple[float, float]:
    """(median, interquartile range) of `values`; an IQR of 0 (constant values) counts as 1."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(median), float(q3 - q1) if q3 > q1 else 1.0


NUDGES = ((1, 0), (-1, 0), (0, 1), (0, -1))  # (dy, dx): down, up, right, left
VIEWS = ((0, 0), *NUDGES, (1, 1), (1, -1), (-1, 1), (-1, -1))  # every move of at most one pixel


def moved(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images x (N, C, H, W) moved dy pixels down and dx right (negative: up, left), zeros
    shifted in where the image left its frame."""
    out = np.roll(x, (dy, dx), axis=(-2, -1))
    out[..., : max(dy, 0), :] = 0  # rows that wrapped around from the bottom
    out[..., out.shape[-2] + min(dy, 0) :, :] = 0  # … from the top
    out[..., :, : max(dx, 0)] = 0
    out[..., :, out.shape[-1] + min(dx, 0) :] = 0
    return out


def lowest_over_views(score: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Per image of x (N, C, H, W), the lowest score(view) over its VIEWS: the best-aligned one."""
    return np.min([score(moved(x, dy, dx)) for dy, dx in VIEWS], axis=0)


def nudged(x: np.ndarray) -> list[np.ndarray]:
    """Images x (N, C, H, W) moved one pixel down, up, right and left: four more codes per
    training image for the mixture of a small image set, from a model trained on such moves
    (the detector's `shift`)."""
    return [moved(x, dy, dx) for dy, dx in NUDGES]


def mixture_copies(x: np.ndarray, nudge: bool) -> tuple[list[np.ndarray], float]:
    """The training images the mixtures are fitted to, and their shrinkage λ: x and its four
    nudges with NUDGED_SHRINKAGE (a small set, from a model trained on moves), else x alone with
    SHRINKAGE."""
    return ([x, *nudged(x)], NUDGED_SHRINKAGE) if nudge else ([x], SHRINKAGE)


def shrink_covariances(mixture: Any, amount: float) -> Any:
    """The fitted full-covariance mixture with Σ_k ← (1 − λ)Σ_k + λΣ̄, Σ̄ = Σ_j π_j Σ_j the
    weighted mean (pooled) covariance, in place: each component keeps its own shape where its
    codes pin it down and borrows the others' elsewhere (regularised discriminant analysis's
    step toward the common covariance, Friedman 1989). The precisions follow from the new Σ_k."""
    if amount == 0.0:
        return mixture
    pooled = np.einsum("k,kij->ij", mixture.weights_, mixture.covariances_)
    covariances = (1.0 - amount) * mixture.covariances_ + amount * pooled
    eye = np.eye(covariances.shape[1])
    # sklearn keeps U_k = (L_k⁻¹)ᵀ, Σ_k = L_k L_kᵀ, so that Σ_k⁻¹ = U_k U_kᵀ
    lower = np.linalg.cholesky(covariances)
    precisions_cholesky = np.linalg.solve(lower, eye).transpose(0, 2, 1)
    mixture.covariances_ = covariances
    mixture.precisions_cholesky_ = precisions_cholesky
    mixture.precisions_ = precisions_cholesky @ precisions_cholesky.transpose(0, 2, 1)
    return mixture


@dataclass
class PixelDensity:
    """The pixel part: a mixture on the training images' leading principal components."""

    pca: Any  # a fitted sklearn PCA on the flattened training images
    density: Any  # a fitted (shrunk) sklearn GaussianMixture on their projections

    def anomaly(self, x: np.ndarray) -> np.ndarray:
        """−log q(W(x − μ)) per image of x (N, C, H, W)."""
        return -self.density.score_samples(self.pca.transform(x.reshape(len(x), -1)))


def fit_pixel_density(
    copies: list[np.ndarray], width: int, components: int, seed: int, shrinkage: float
) -> PixelDensity:
    """The principal axes of the training images copies[0] (N, C, H, W), at most `width` of them,
    and a mixture of `components` fitted to the projections of every copy (the images and, for a
    small set, their nudges), shrunk by `shrinkage` (shrink_covariances)."""
    flat = copies[0].reshape(len(copies[0]), -1)
    pca = PCA(min(width, *flat.shape), random_state=seed).fit(flat)
    points = np.concatenate([pca.transform(c.reshape(len(c), -1)) for c in copies])
    density = shrink_covariances(fit_gmm(points, components, seed=seed), shrinkage)
    return PixelDensity(pca, density)


@dataclass
class CombinedScore:
    """The fitted parts of the combined score: the two mixtures and the parts' scales."""

    density: Any  # a fitted sklearn GaussianMixture on the codes
    pixels: PixelDensity
    scales: dict[str, tuple[float, float]]  # part -> (median, IQR) on the reference images
    aligned: bool = False  # score the best-aligned of VIEWS (a model trained on moved images)

    def raw_parts(self, model: nn.Module, x: Tensor) -> dict[str, np.ndarray]:
        """The three parts in their own units: {"latent": a, "recon": r, "pixels": p}."""
        codes, error = scoring.codes_and_errors(model, x)  # one pass through the model
        return {
            "latent": -self.density.score_samples(codes),
            "recon": log_share(error, x),
            "pixels": self.pixels.anomaly(x.numpy()),
        }

    def parts(self, model: nn.Module, x: Tensor) -> dict[str, np.ndarray]:
        """The three parts in robust standard units: z(a), z(r) and z(p) by name."""
        return scaled(self.raw_parts(model, x), self.scales)

    def anomaly(self, model: nn.Module, x: Tensor) -> np.ndarray:
        """z(a) + ½·max(z(r), 0) + max(z(p), 0) per row, the lowest over the image's VIEWS when
        `aligned`: higher is more anomalous."""
        if not self.aligned:
            return combine(self.parts(model, x))
        return lowest_over_views(
            lambda view: combine(self.parts(model, torch.from_numpy(view))), x.numpy()
        )


def scaled(
    parts: dict[str, np.ndarray], scales: dict[str, tuple[float, float]]
) -> dict[str, np.ndarray]:
    """Each part in robust standard units, (value − median) / IQR."""
    return {part: (v - scales[part][0]) / scales[part][1] for part, v in parts.items()}


def combine(parts: dict[str, np.ndarray]) -> np.ndarray:
    """z(a) + ½·max(z(r), 0) + max(z(p), 0) from the parts in robust units."""
    return (
        parts["latent"]
        + RECON_WEIGHT * np.maximum(parts["recon"], 0.0)
        + PIXEL_WEIGHT * np.maximum(parts["pixels"], 0.0)
    )


def fit_combined(
    model: nn.Module,
    codes: np.ndarray,
    copies: list[np.ndarray],
    reference: Tensor,
    components: int,
    seed: int,
    aligned: bool = False,
    shrinkage: float = SHRINKAGE,
) -> tuple[CombinedScore, np.ndarray]:
    """Fit the code mixture on the training codes (N, width), the pixel part on the training
    images `copies` (the images those codes are of, and any nudges of them, in that order), the
    part scales on `reference` images (held out of training when there are enough, as they are);
    also the reference images' anomaly, scored as new images will be (`aligned` or not), for the
    threshold."""
    density = shrink_covariances(fit_gmm(codes, components, seed=seed), shrinkage)
    pixels = fit_pixel_density(copies, codes.shape[1], components, seed, shrinkage)
    unscaled = CombinedScore(density, pixels, {}).raw_parts(model, reference)
    scales = {part: robust_scale(values) for part, values in unscaled.items()}
    fitted = CombinedScore(density, pixels, scales, aligned)
    if aligned:  # the other eight views need passes of their own
        return fitted, fitted.anomaly(model, reference)
    return fitted, combine(scaled(unscaled, scales))  # from the one pass already made
