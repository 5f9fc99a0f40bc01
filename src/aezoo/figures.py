"""The PNG figures of a run folder (figures/*.png) and their captions: what every run gets,
drawn with aezoo.viz's plain Figure functions (reconstructions, training curves, and for discrete
codes the code usage and a code-space crossfade), and the title and caption the report shows for
each figure any command writes."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from matplotlib.figure import Figure
from torch import nn

from aezoo.models.protocols import DiscreteLatent
from aezoo.prior import crossfade_codes
from aezoo.viz import code_usage_figure, image_rows, save_figure, training_curves

FIGURES_DIR = "figures"

# (pattern of the path under figures/, title, caption), in the order the panels appear.
FIGURES: tuple[tuple[str, str, str], ...] = (
    (
        "training_curves.png",
        "Training curves",
        "Each loss term per epoch: train (solid, mean over the epoch's batches) and test (dashed, "
        "after the epoch), then the test reconstruction error as MSE per {value} and BCE per "
        "{item}.",
    ),
    (
        "reconstructions.png",
        "Reconstructions",
        "Test {items} ({first}) and their reconstructions decode(encode(x)); a denoising run shows "
        "the corrupted input the encoder saw between them.",
    ),
    (
        "samples-prior.png",
        "Samples from the prior",
        "Decoded draws from the model's prior: z ~ N(0, I) for a VAE, code grids sampled from the "
        "PixelCNN prior for a VQ-VAE.",
    ),
    (
        "samples-gmm.png",
        "Samples from an ex-post Gaussian mixture",
        "Decoded draws from a 10-component Gaussian mixture fitted to the training latents "
        "(Ghosh et al. 2020): how a deterministic autoencoder can generate.",
    ),
    (
        "samples-used.png",
        "Samples from code frequencies",
        "Each code position drawn independently from the codes' training frequencies: the codebook "
        "alone, without a model of where each code goes.",
    ),
    (
        "samples-uniform.png",
        "Samples from uniform codes",
        "Every code position drawn uniformly from the codebook: the baseline that shows why a "
        "prior over code grids is needed.",
    ),
    (
        "samples-by-label-*.png",
        "Samples by label",
        "One row per class label: the conditional model's samples for each class.",
    ),
    ("samples-*.png", "Samples", "Decoded samples."),
    (
        "interpolation.png",
        "Interpolation",
        "Decoded points on the straight line between the latent codes of two test {items}.",
    ),
    (
        "interpolation-*.png",
        "Interpolation",
        "Decoded points on the straight line between the latent codes of test {items} I and J "
        "(interpolation-I-J.png, from aezoo explore RUN --interpolate I J).",
    ),
    (
        "crossfade.png",
        "Code-space crossfade",
        "Pairs of test {items}: the second one's codes replace the first's one grid position at a "
        "time, in raster order.",
    ),
    (
        "traversal-zero.png",
        "Latent traversal from the origin",
        "Each row varies one latent dimension over [−3, 3] from z = 0, the others fixed; rows are "
        "the dimensions with the most KL (or latent variance), labelled with it.",
    ),
    (
        "traversal-image.png",
        "Latent traversal from a test image",
        "As above, starting from a test {item}'s latent code instead of the origin.",
    ),
    ("traversal-*.png", "Latent traversal", "Each row varies one latent dimension."),
    (
        "latent-2d.png",
        "Latent space",
        "The test {items}' latent means, coloured by label (2-D latent).",
    ),
    (
        "manifold.png",
        "Learned manifold",
        "Decoded {items} on a regular grid over [−3, 3]² of the 2-D latent space.",
    ),
    (
        "tsne.png",
        "t-SNE of the latent codes",
        "A 2-D t-SNE embedding of test latent codes, coloured by label.",
    ),
    (
        "code-usage.png",
        "Codebook usage",
        "Each code's share of the test set's code uses, codes sorted by use: a long flat tail at "
        "zero is a dead part of the codebook.",
    ),
    (
        "*roc*.png",
        "ROC curve",
        "True against false positive rate of the anomaly score over every threshold, with its area "
        "under the curve.",
    ),
    (
        "scores_*.png",
        "Score histogram",
        "Distribution of the anomaly score for normal and anomalous test {items}, with the "
        "detector's threshold.",
    ),
    (
        "*hist*.png",
        "Score histograms",
        "Distribution of the anomaly score for normal and anomalous test {items}.",
    ),
)

# How vectors are drawn (aezoo.viz.vector_rows), said once after the caption of a figure of them.
VECTORS_NOTE = (
    " Vectors are drawn as heat-strips (one strip per vector, feature along x, value as colour), "
    "then the first few as line plots (the first entry solid, the others dashed)."
)
DRAWN_AS_DATA = ("reconstructions.png", "samples-*.png", "interpolation*.png", "crossfade.png")
DrawnAs = Literal["images", "vectors"]


def drawn_as(model_config: Mapping[str, Any]) -> DrawnAs:
    """How a model's inputs are drawn: "vectors" when they are [1, 1, D] (how data sets store
    vectors; a 1×D image would only be a hairline), else "images"."""
    shape = tuple(model_config.get("image_shape") or (1, 28, 28))
    return "vectors" if shape[:2] == (1, 1) and shape[-1] > 1 else "images"


def curve_units(model_config: Mapping[str, Any]) -> dict[str, str]:
    """Axis labels of the training curves: nats only for log-likelihood terms (a VAE's terms, or
    an AE/VQ-VAE trained with loss bce), squared error for an MSE loss."""
    item = "vector" if drawn_as(model_config) == "vectors" else "image"
    nats = model_config.get("likelihood") is not None or model_config.get("loss") == "bce"
    recon = f"nats per {item}" if nats else f"squared error per {item}"
    return {
        "recon": recon,
        # a VQ-VAE's loss adds squared distances (codebook, commitment) to its reconstruction
        "loss": f"sum of terms per {item}" if "codebook_size" in model_config else recon,
        "kl": f"nats per {item}",
        "elbo": f"nats per {item}",
        "bce": f"nats per {item}",
        "mse": "per feature" if item == "vector" else "per pixel",
        "codebook": f"squared distance per {item}",
        "commitment": f"squared distance per {item}",
    }


@torch.inference_mode()
def reconstruction_figure(model: nn.Module, batches: Any, n: int = 10) -> Figure:
    """Test images over their reconstructions (with the corrupted input between, if denoising)."""
    was_training = model.training
    model.eval()
    batch = next(iter(batches.epoch(0)))
    x, x_in = batch.x[:n], batch.x_in[:n]
    y = batch.y[:n] if batch.y is not None else None
    recon = model.decode(model.encode(x_in, y), y)
    model.train(was_training)
    if batch.x_in is batch.x:  # no corruption (the slices above are new tensors either way)
        return image_rows([x, recon], ["original", "reconstruction"])
    return image_rows([x, x_in, recon], ["original", "corrupted", "reconstruction"])


def write_run_figures(
    run_dir: Path, model: nn.Module, test_batches: Any, records: Sequence[dict[str, Any]]
) -> list[Path]:
    """The figures every run folder gets: reconstructions and training curves."""
    out = Path(run_dir) / FIGURES_DIR
    paths = [out / "reconstructions.png", out / "training_curves.png"]
    save_figure(reconstruction_figure(model, test_batches), paths[0])
    units = curve_units(dataclasses.asdict(model.config))
    save_figure(training_curves(records, units=units), paths[1])
    if isinstance(model, DiscreteLatent):  # usage histogram and code-space crossfade
        paths += write_code_figures(run_dir, model, test_batches)
    return paths


@torch.inference_mode()
def write_code_figures(
    run_dir: str | Path, model: nn.Module, test_batches: Any, pairs: int = 4, frames: int = 10
) -> list[Path]:
    """figures/code-usage.png (test-set usage of each code) and figures/crossfade.png (test
    images' code grids crossfaded position by position), for a run with discrete codes."""
    was_training = model.training
    model.eval()
    out = Path(run_dir) / FIGURES_DIR
    counts = model.code_usage(test_batches).cpu()
    paths = [out / "code-usage.png", out / "crossfade.png"]
    save_figure(code_usage_figure({"test set": counts}), paths[0])
    x = next(iter(test_batches.epoch(0))).x[: 2 * pairs]  # (2·pairs, C, H, W)
    codes = model.encode_indices(x)
    rows = [
        model.decode_indices(crossfade_codes(codes[2 * i], codes[2 * i + 1], frames))
        for i in range(len(x) // 2)
    ]
    save_figure(
        image_rows(rows, title="crossfade in code space: b's codes replace a's in raster order"),
        paths[1],
    )
    model.train(was_training)
    return paths


def figure_info(relative: str, kind: DrawnAs = "images") -> tuple[int, str, str]:
    """(order, title, caption) of a figure from its path under figures/, its caption worded for
    `kind`; unknown figures go last, titled after their file name. The title names the subfolder
    and what a trailing * matched (samples-by-label-gmm.png → "Samples by label (gmm)")."""
    name, folder = Path(relative).name, Path(relative).parent.as_posix()
    vectors = kind == "vectors"
    words = {
        "item": "vector" if vectors else "image",
        "items": "vectors" if vectors else "images",
        "value": "feature" if vectors else "pixel",
        "first": "top panel" if vectors else "top row",
    }
    for order, (pattern, title, template) in enumerate(FIGURES):
        if fnmatch.fnmatch(name, pattern):
            caption = template.format(**words)
            if vectors and any(fnmatch.fnmatch(name, p) for p in DRAWN_AS_DATA):
                caption += VECTORS_NOTE
            prefix = pattern.removesuffix("*.png")  # "samples-*.png" → "samples-"
            trailing = pattern.endswith("*.png") and "*" not in prefix
            tail = name[len(prefix) : -len(".png")] if trailing else ""
            notes = [n for n in (folder if folder != "." else "", tail) if n]
            return order, title + (f" ({', '.join(notes)})" if notes else ""), caption
    plain = Path(relative).with_suffix("").as_posix().replace("-", " ").replace("_", " ")
    return len(FIGURES), plain.capitalize(), ""


def find_figures(run_dir: Path) -> list[Path]:
    """The PNGs under figures/ (any depth), in panel order."""
    root = Path(run_dir) / FIGURES_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.rglob("*.png") if p.is_file() and not p.name.startswith(".")]
    return sorted(
        found,
        key=lambda p: (
            figure_info(p.relative_to(root).as_posix())[0],
            p.relative_to(root).as_posix(),
        ),
    )
